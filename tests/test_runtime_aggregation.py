"""Aggregation on the asyncio runtime: three real UdpNodes in one event loop on loopback.

The awaitable API (``UdpNode.aggregate``, ``collect``, ``start_estimate``,
``estimate``), segments, the control requests that drive it in a ``gridmesh
node`` process, and the ``[readings]`` table of the node's configuration file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from gridmesh.cli import main
from gridmesh.errors import ConfigError, LocalProtocolError
from gridmesh.node import NodeConfig
from gridmesh.protocols import Peer, Scope
from gridmesh.protocols.aggregation import (
    COLLECT_BYTES_MAX,
    AggregateResult,
    Collect,
    Collection,
    CollectResult,
    PushSumConfig,
)
from gridmesh.protocols.membership import FullMembershipConfig
from gridmesh.runtime import (
    CONTROL_AGGREGATES_MAX,
    ControlClient,
    UdpNode,
    constant_reading,
    free_udp_ports,
)
from gridmesh.runtime._control_requests import (
    CONTROL_ANSWER_OVERHEAD_BYTES,
    PLAIN_ITEMS_MAX,
    aggregate_answer,
    parse_aggregate_request,
    plain_value,
)
from gridmesh.runtime.cli import NodeSettings, load_node_settings
from gridmesh.wire import MESSAGE_BYTES_MAX, UINT64_MAX, Envelope, Kind, decode, encode

T = TypeVar("T")
FAST = NodeConfig(
    membership=FullMembershipConfig(exchange_interval_s=0.05, member_timeout_s=5),
    pushsum=PushSumConfig(round_s=0.02),
)
# Summed left to right in floats these give 0.6000000000000001; exactly, 0.6.
DEMAND_KW = {1: 0.1, 2: 0.2, 3: 0.3}
NIGHT_KWH = {1: [1.5, 0.1, 7], 2: [2.25, 0.2, 11]}  # node 3 has no night reading
# Nodes 1 and 3 are on feeder 7, node 2 on feeder 9: segments of one and two nodes.
GROUPS = {1: ("feeder-7",), 2: ("feeder-9",), 3: ("feeder-7",)}


async def eventually(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def with_three_nodes(body: Callable[[list[UdpNode]], Awaitable[T]]) -> T:
    """Nodes 1-3, joined through node 1, in GROUPS, holding DEMAND_KW and NIGHT_KWH."""

    async def run() -> T:
        ports = free_udp_ports("127.0.0.1", 3)
        nodes: list[UdpNode] = []
        for node_id, port in enumerate(ports, start=1):
            seeds = (Peer(0, nodes[0].advertise),) if nodes else ()
            node = UdpNode(
                node_id=node_id,
                listen=("127.0.0.1", port),
                config=FAST.model_copy(update={"groups": GROUPS[node_id]}),
                seeds=seeds,
                rng=random.Random(node_id),
            )
            node.set_reading("demand_kw", constant_reading(DEMAND_KW[node_id]))
            if node_id in NIGHT_KWH:
                node.set_reading("night_kwh", constant_reading(tuple(NIGHT_KWH[node_id])))
            nodes.append(node)
        try:
            for node in nodes:
                await node.start()
            for node in nodes:
                await eventually(lambda n=node: len(n.node.membership.neighbors()) == 2)
            return await body(nodes)
        finally:
            for node in nodes:
                node.close()

    return asyncio.run(run())


def test_awaiting_aggregate_returns_exact_results_and_their_coverage() -> None:
    async def body(nodes: list[UdpNode]) -> None:
        a = nodes[0]
        total = await a.aggregate("sum", "demand_kw", timeout_s=5.0)
        assert total.value == math.fsum(DEMAND_KW.values()) == 0.6
        assert (total.contributors, total.missing, total.declined) == (3, 0, 0)
        assert total.complete

        night = await nodes[2].aggregate("vector_sum", "night_kwh", params={"length": 3})
        assert night.value == tuple(map(math.fsum, zip(*NIGHT_KWH.values(), strict=True)))
        assert night.value == (3.75, 0.30000000000000004, 18)  # 0.1 + 0.2 is exact here
        assert night.contributors == 2  # node 3 asked, but has no night reading

        count, peak = await asyncio.gather(
            nodes[1].aggregate("count", "demand_kw"), a.aggregate("max", "demand_kw")
        )
        assert (count.value, peak.value) == (3, 0.3)
        assert count.query_id != peak.query_id

        a.set_reading("demand_kw", None)  # removed: node 1 relays, but adds nothing
        without = await a.aggregate("sum", "demand_kw")
        assert without.value == 0.5 and without.contributors == 2

    with_three_nodes(body)


def test_aggregate_refuses_bad_arguments_and_a_node_not_started() -> None:
    async def body(nodes: list[UdpNode]) -> None:
        a = nodes[0]
        with pytest.raises(LocalProtocolError, match="unknown aggregation function"):
            await a.aggregate("median", "demand_kw")
        with pytest.raises(LocalProtocolError, match="hops"):
            await a.aggregate("sum", "demand_kw", hops=0)
        idle = UdpNode(node_id=9, listen=("127.0.0.1", 0))
        with pytest.raises(LocalProtocolError, match="start"):
            await idle.aggregate("sum", "demand_kw")
        assert a.node.aggregation.queries == 0

    with_three_nodes(body)


def test_a_segment_sum_adds_only_the_readings_of_its_group() -> None:
    async def body(nodes: list[UdpNode]) -> None:
        # Node 2 asks for feeder 7 (nodes 1 and 3): it relays but adds nothing itself.
        feeder_7 = await nodes[1].aggregate("sum", "demand_kw", segment="feeder-7")
        assert feeder_7.value == 0.1 + 0.3 == 0.4
        assert (feeder_7.contributors, feeder_7.missing, feeder_7.declined) == (2, 0, 0)
        assert feeder_7.segment == Scope(group="feeder-7")
        by_scope = await nodes[0].aggregate(
            "count", "demand_kw", segment=Scope(service="node", group="feeder-9")
        )
        assert (by_scope.value, by_scope.contributors) == (1, 1)
        nobody = await nodes[0].aggregate("sum", "demand_kw", segment=Scope(service="meter"))
        assert (nobody.value, nobody.contributors, nobody.complete) == (0, 0, True)
        with pytest.raises(LocalProtocolError, match="segment"):
            await nodes[0].aggregate("sum", "demand_kw", segment="")

    with_three_nodes(body)


def test_collect_returns_every_reading_with_its_node_id() -> None:
    async def body(nodes: list[UdpNode]) -> None:
        everyone = await nodes[1].collect("demand_kw", timeout_s=5.0)
        assert isinstance(everyone, CollectResult)
        assert everyone.values == ((1, 0.1), (2, 0.2), (3, 0.3))
        assert (everyone.dropped, everyone.cut, everyone.truncated) == (0, None, False)
        assert everyone.contributors == 3 and everyone.complete

        feeder_7 = await nodes[1].collect("night_kwh", segment="feeder-7")
        assert feeder_7.values == ((1, tuple(NIGHT_KWH[1])),)  # node 3 has no night reading
        assert feeder_7.segment == Scope(group="feeder-7") and feeder_7.contributors == 1

        cut = await nodes[2].collect("demand_kw", limit=2)
        assert cut.values == ((1, 0.1), (2, 0.2))  # the lowest node ids are kept
        assert (cut.dropped, cut.cut, cut.truncated) == (1, 3, True)
        assert cut.contributors == len(cut.values) + cut.dropped == 3

        with pytest.raises(LocalProtocolError, match="limit"):
            await nodes[0].collect("demand_kw", limit=0)
        idle = UdpNode(node_id=9, listen=("127.0.0.1", 0))
        with pytest.raises(LocalProtocolError, match="start"):
            await idle.collect("demand_kw")

    with_three_nodes(body)


def test_push_sum_estimates_run_over_udp_and_every_node_reads_its_own() -> None:
    async def body(nodes: list[UdpNode]) -> None:
        total = nodes[0].start_estimate("sum", "demand_kw", rounds=30)
        size = nodes[1].start_estimate("size", rounds=30)

        def finished(estimate_id: int) -> bool:
            views = [node.estimate(estimate_id) for node in nodes]
            return all(v is not None and v.finished and not v.unsettled for v in views)

        await eventually(lambda: finished(total) and finished(size))
        for node in nodes:
            got_sum, got_size = node.estimate(total), node.estimate(size)
            assert got_sum is not None and got_sum.value is not None
            assert got_size is not None and got_size.value is not None
            assert got_sum.value == pytest.approx(0.6, rel=0.01)
            assert got_size.value == pytest.approx(3.0, rel=0.01)
        nodes[0].restart_estimate(total)
        await eventually(lambda: all((n.estimate(total) or _no).epoch == 2 for n in nodes))
        with pytest.raises(LocalProtocolError):
            nodes[0].restart_estimate(size)  # node 2 started it, not node 1

    with_three_nodes(body)


class _NoEstimate:
    epoch = 0


_no = _NoEstimate()


def test_the_control_channel_aggregates_and_answers_with_plain_data() -> None:
    async def body(nodes: list[UdpNode]) -> None:
        b = nodes[1]
        async with await ControlClient.open() as client:
            answer = await client.request(
                b.advertise,
                {
                    "op": "aggregate",
                    "function": "vector_sum",
                    "reading": "night_kwh",
                    "params": {"length": 3},
                    "timeout_s": 5.0,
                },
                timeout_s=10.0,
            )
            assert answer["ok"] is True
            assert answer["value"] == [3.75, 0.30000000000000004, 18]
            assert (answer["contributors"], answer["missing"], answer["declined"]) == (2, 0, 0)
            assert answer["complete"] is True and answer["function"] == "vector_sum"
            json.dumps(answer)  # JSON-safe
            histogram = await client.request(
                b.advertise,
                {
                    "op": "aggregate",
                    "function": "histogram",
                    "reading": "demand_kw",
                    "params": {"edges": [0, 0.15, 1]},
                },
                timeout_s=10.0,
            )
            assert histogram["value"] == {
                "edges": [0.0, 0.15, 1.0],
                "counts": [1, 2],
                "underflow": 0,
                "overflow": 0,
            }

            started = await client.request(
                b.advertise, {"op": "start_estimate", "function": "mean", "reading": "demand_kw"}
            )
            estimate_id = started["estimate_id"]
            assert started["ok"] is True and isinstance(estimate_id, int)
            view = await client.request(
                nodes[2].advertise, {"op": "estimate", "estimate_id": estimate_id}
            )
            assert view["ok"] is True and view["running"] is True
            assert view["initiator"] == 2 and view["function"] == "mean"
            unknown = await client.request(b.advertise, {"op": "estimate", "estimate_id": 12345})
            assert unknown == {"ok": True, "running": False}
            restarted = await client.request(
                b.advertise, {"op": "restart_estimate", "estimate_id": estimate_id}
            )
            assert restarted == {"ok": True}

    with_three_nodes(body)


def test_the_control_channel_aggregates_a_segment_and_collects_its_readings() -> None:
    async def body(nodes: list[UdpNode]) -> None:
        b = nodes[1]
        async with await ControlClient.open() as client:

            async def ask(**fields: object) -> dict[str, object]:
                request = {"op": "aggregate", "reading": "demand_kw", "timeout_s": 5.0, **fields}
                return await client.request(b.advertise, request, timeout_s=10.0)

            feeder_7 = await ask(function="sum", segment="feeder-7")
            assert feeder_7["ok"] is True and feeder_7["value"] == 0.4
            assert feeder_7["contributors"] == 2 and feeder_7["complete"] is True
            assert feeder_7["segment"] == {"service": None, "group": "feeder-7"}
            scoped = await ask(function="sum", segment={"service": "node", "group": "feeder-9"})
            assert (scoped["value"], scoped["contributors"]) == (0.2, 1)
            everyone = await ask(function="sum")
            assert everyone["segment"] is None and everyone["value"] == 0.6

            pairs = await ask(function="collect", segment="feeder-7")
            assert pairs["ok"] is True and pairs["function"] == "collect"
            assert pairs["value"] == {
                "values": [[1, 0.1], [3, 0.3]],
                "dropped": 0,
                "cut": None,
                "truncated": False,
            }
            assert pairs["contributors"] == 2
            json.dumps(pairs)  # JSON-safe
            cut = await ask(function="collect", params={"limit": 1})
            assert cut["value"] == {
                "values": [[1, 0.1]],
                "dropped": 2,
                "cut": 2,
                "truncated": True,
            }
            assert cut["contributors"] == 3

    with_three_nodes(body)


def test_a_collection_becomes_plain_pairs_within_the_item_budget() -> None:
    collection = Collection(((1, 0.5), (7, (1, 2.5))), dropped=3, cut=9)
    plain = {"values": [[1, 0.5], [7, [1, 2.5]]], "dropped": 3, "cut": 9, "truncated": True}
    assert plain_value(collection) == plain
    result = CollectResult(7, "volts", None, collection.values, 3, 9, 5, 0, 0, 1.0, 2.0)
    assert plain_value(result) == plain
    # Three items per pair, one for the list, one for the collection; one pair more
    # than that budget holds gets the clear error.
    fits = (PLAIN_ITEMS_MAX - 2) // 3
    pairs = tuple((node_id, 1.0) for node_id in range(1, fits + 2))
    with pytest.raises(LocalProtocolError, match="more than 100,000 items"):
        plain_value(Collection(pairs, 0))
    assert len(plain_value(Collection(pairs[:-1], 0))["values"]) == fits  # type: ignore[index]


def test_a_control_collect_gets_a_bytes_max_its_answer_fits_in() -> None:
    request: dict[str, object] = {"function": "collect", "reading": "volts"}
    fitted = parse_aggregate_request(request, message_bytes_max=4000)
    assert fitted.params == {"bytes_max": 4000 - CONTROL_ANSWER_OVERHEAD_BYTES}
    asked = parse_aggregate_request(
        {**request, "params": {"limit": 5, "bytes_max": 100}}, message_bytes_max=4000
    )
    assert asked.params == {"limit": 5, "bytes_max": 100}
    with pytest.raises(LocalProtocolError, match="message_bytes_max of at least 576"):
        parse_aggregate_request(request, message_bytes_max=575)
    summed = parse_aggregate_request({**request, "function": "sum"}, message_bytes_max=4000)
    assert summed.params is None  # other functions' params are left as given


def test_the_largest_collect_answer_fits_one_control_reply() -> None:
    # The worst case the overhead allows for: 64-bit everything, 64-byte names,
    # entries filling the bytes_max the control channel gives collect at most.
    bytes_max = MESSAGE_BYTES_MAX - CONTROL_ANSWER_OVERHEAD_BYTES
    collect = Collect(limit=4096, bytes_max=bytes_max)
    partial = collect.identity()
    for node_id in range(UINT64_MAX - 9000, UINT64_MAX + 1):
        partial = collect.combine(partial, collect.lift_from(node_id, -1.5))
    collection = collect.finish(partial)
    assert collection.truncated and len(collection.values) > 3000
    biggest = AggregateResult(
        query_id=UINT64_MAX,
        function="collect",
        reading="r" * 64,
        value=collection,
        contributors=UINT64_MAX,
        missing=UINT64_MAX,
        declined=UINT64_MAX,
        started_at=0.0,
        finished_at=86_400.123456789,
        segment=Scope(service="s" * 64, group="g" * 64),
    )
    answer = aggregate_answer(biggest)
    reply = Envelope(Kind.CONTROL_REPLY, UINT64_MAX, UINT64_MAX, UINT64_MAX, "", 2**62, 0, answer)
    assert MESSAGE_BYTES_MAX - 200 < len(encode(reply)) <= MESSAGE_BYTES_MAX
    assert bytes_max < COLLECT_BYTES_MAX


@pytest.mark.parametrize(
    ("request_body", "error"),
    [
        ({"op": "aggregate", "reading": "demand_kw"}, "'function' is required"),
        ({"op": "aggregate", "function": "sum"}, "'reading' is required"),
        ({"op": "aggregate", "function": 7, "reading": "demand_kw"}, "'function'"),
        ({"op": "aggregate", "function": "median", "reading": "x"}, "unknown aggregation"),
        ({"op": "aggregate", "function": "sum", "reading": "x" * 65}, "reading name"),
        ({"op": "aggregate", "function": "sum", "reading": "x", "params": [1]}, "'params'"),
        (
            {"op": "aggregate", "function": "vector_sum", "reading": "x", "params": {"length": 0}},
            "length",
        ),
        (
            {"op": "aggregate", "function": "vector_sum", "reading": "x", "params": {"l": 1}},
            "vector_sum",
        ),
        ({"op": "aggregate", "function": "sum", "reading": "x", "fanout": "8"}, "'fanout'"),
        ({"op": "aggregate", "function": "sum", "reading": "x", "fanout": 65}, "fanout"),
        ({"op": "aggregate", "function": "sum", "reading": "x", "hops": 1.5}, "'hops'"),
        ({"op": "aggregate", "function": "sum", "reading": "x", "timeout_s": -1}, "timeout_s"),
        (
            {"op": "aggregate", "function": "sum", "reading": "x", "timeout_s": math.inf},
            "'timeout_s'",
        ),
        ({"op": "aggregate", "function": "sum", "reading": "x", "replies_min": -1}, "replies_min"),
        ({"op": "aggregate", "function": "sum", "reading": "x", "segment": 7}, "'segment'"),
        ({"op": "aggregate", "function": "sum", "reading": "x", "segment": {}}, "or both"),
        (
            {"op": "aggregate", "function": "sum", "reading": "x", "segment": {"grp": "f"}},
            "'service' and 'group' only",
        ),
        (
            {"op": "aggregate", "function": "sum", "reading": "x", "segment": {"group": 7}},
            "must be text",
        ),
        ({"op": "aggregate", "function": "sum", "reading": "x", "segment": ""}, "segment's group"),
        (
            {"op": "aggregate", "function": "collect", "reading": "x", "params": {"limit": 0}},
            "limit",
        ),
        (
            {
                "op": "aggregate",
                "function": "collect",
                "reading": "x",
                "params": {"bytes_max": MESSAGE_BYTES_MAX - CONTROL_ANSWER_OVERHEAD_BYTES + 1},
            },
            "bytes_max must be at most",
        ),
        ({"op": "start_estimate", "function": "median"}, "push-sum computes"),
        ({"op": "start_estimate", "function": "sum"}, "size takes no reading"),
        ({"op": "start_estimate", "function": "size", "rounds": 0}, "rounds"),
        ({"op": "start_estimate", "function": "size", "continuous": 1}, "'continuous'"),
        ({"op": "estimate"}, "'estimate_id' is required"),
        ({"op": "estimate", "estimate_id": "1"}, "'estimate_id'"),
        ({"op": "restart_estimate", "estimate_id": 1}, "no estimate"),
    ],
)
def test_bad_aggregation_control_requests_are_answered_with_an_error(
    request_body: dict[str, object], error: str
) -> None:
    async def body(nodes: list[UdpNode]) -> None:
        async with await ControlClient.open() as client:
            answer = await client.request(nodes[0].advertise, request_body)
        assert answer["ok"] is False
        assert error in str(answer["error"])
        stats = nodes[0].stats()
        assert stats["aggregation_queries"] == 0 and stats["pushsum_started"] == 0

    with_three_nodes(body)


class _Replies(asyncio.DatagramProtocol):
    """A bare control client: sends what it is given, keeps every reply."""

    def __init__(self) -> None:
        self.replies: list[Envelope] = []

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.replies.append(decode(data))


def test_a_resent_control_request_is_answered_again_without_acting_twice() -> None:
    async def body(nodes: list[UdpNode]) -> None:
        a = nodes[0]
        loop = asyncio.get_running_loop()
        transport, client = await loop.create_datagram_endpoint(
            _Replies, local_addr=("127.0.0.1", 0)
        )
        try:

            def send(message_id: int, request: dict[str, object]) -> None:
                envelope = Envelope(Kind.CONTROL, message_id, 0, 0, "", 0, 0, request)
                transport.sendto(encode(envelope), a.listen)

            aggregate = {"op": "aggregate", "function": "sum", "reading": "demand_kw"}
            send(41, aggregate)
            send(41, aggregate)  # a copy while the query runs: ignored
            await eventually(lambda: len(client.replies) == 1)
            send(41, aggregate)  # a copy after the answer: the same answer again
            broadcast = {"op": "broadcast", "payload": "tariff"}
            send(42, broadcast)
            send(42, broadcast)
            await eventually(lambda: len(client.replies) == 4)
            await asyncio.sleep(0.1)
            assert len(client.replies) == 4
            by_id: dict[int, list[object]] = {}
            for reply in client.replies:
                by_id.setdefault(reply.message_id, []).append(reply.body)
            first, again = by_id[41]
            assert first == again and isinstance(first, dict) and first["value"] == 0.6
            assert by_id[42][0] == by_id[42][1]
            assert a.stats()["aggregation_queries"] == 1
            await eventually(lambda: len(nodes[1].deliveries) == 1)
            await asyncio.sleep(0.1)
            assert len(nodes[1].deliveries) == 1  # broadcast once
            send(43, {"op": "status"})
            send(43, {"op": "status"})  # a read is answered afresh each time
            await eventually(lambda: len(client.replies) == 6)
        finally:
            transport.close()

    with_three_nodes(body)


def test_aggregate_requests_waiting_at_once_are_bounded() -> None:
    async def body(nodes: list[UdpNode]) -> None:
        a = nodes[0]
        # Peers that never answer keep each query waiting for its whole timeout.
        for peer_id in (2, 3):
            nodes[peer_id - 1].close()
        loop = asyncio.get_running_loop()
        transport, client = await loop.create_datagram_endpoint(
            _Replies, local_addr=("127.0.0.1", 0)
        )
        try:
            request = {"op": "aggregate", "function": "sum", "reading": "demand_kw"}
            for message_id in range(1, CONTROL_AGGREGATES_MAX + 2):
                body = {**request, "timeout_s": 30.0}
                transport.sendto(
                    encode(Envelope(Kind.CONTROL, message_id, 0, 0, "", 0, 0, body)), a.listen
                )
            await eventually(lambda: len(client.replies) == 1)
            refused = client.replies[0]
            assert refused.message_id == CONTROL_AGGREGATES_MAX + 1
            assert isinstance(refused.body, dict) and refused.body["ok"] is False
            assert "waiting" in str(refused.body["error"])
            assert a.stats()["aggregation_pending"] == CONTROL_AGGREGATES_MAX
        finally:
            transport.close()

    with_three_nodes(body)


def _settings(tmp_path: Path, text: str) -> NodeSettings:
    path = tmp_path / "node.toml"
    path.write_text(text, encoding="utf-8")
    unset = dict.fromkeys(["fanout", "hops", "exchange_interval", "member_timeout", "membership"])
    return load_node_settings(path, argparse.Namespace(**unset))


def test_the_node_file_holds_readings_beside_the_configuration(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        "[gossip]\nfanout = 9\n\n"
        '[readings]\ndemand_kw = 3.75\nmeters = 12\n"night kwh" = [1, 2.5, 3]\n',
    )
    assert settings.config.gossip.fanout == 9
    assert settings.readings == {
        "demand_kw": 3.75,
        "meters": 12,
        "night kwh": (1, 2.5, 3),
    }
    assert _settings(tmp_path, "").readings == {}


@pytest.mark.parametrize(
    ("text", "field", "expected"),
    [
        ("[readings]\ndemand_kw = true", "readings.demand_kw", "not a boolean"),
        ('[readings]\ndemand_kw = "3.75"', "readings.demand_kw", "a number"),
        ("[readings]\ndemand_kw = nan", "readings.demand_kw", "finite"),
        ("[readings]\ndemand_kw = -inf", "readings.demand_kw", "finite"),
        ("[readings]\nnight = []", "readings.night", "1..1,024 numbers"),
        ("[readings]\nnight = [1, 2, 'x']", "readings.night", "numbers"),
        ("[readings]\nnight = [[1, 2]]", "readings.night", "numbers"),
        ("[readings]\nnight = {kwh = 1}", "readings.night", "numbers"),
        (f"[readings]\nnight = [{', '.join(['1'] * 1025)}]", "readings.night", "1..1,024"),
        (f"[readings]\n{'x' * 65} = 1", "readings", "64 UTF-8 bytes"),
        ('[readings]\n"" = 1', "readings", "64 UTF-8 bytes"),
        ("readings = 5", "readings", "a table"),
        (
            "[aggregation]\nreadings_max = 1\n[readings]\na = 1\nb = 2",
            "readings",
            "at most 1 readings",
        ),
    ],
)
def test_bad_readings_name_the_file_and_the_field(
    tmp_path: Path, text: str, field: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _settings(tmp_path, text)
    assert caught.value.field == field
    assert expected in caught.value.expected
    assert caught.value.source == str(tmp_path / "node.toml")


def test_a_node_with_bad_readings_exits_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "node.toml"
    path.write_text("[readings]\ndemand_kw = true\n", encoding="utf-8")
    (port,) = free_udp_ports("127.0.0.1", 1)
    assert main(["node", "--listen", f"127.0.0.1:{port}", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "readings.demand_kw" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["--params", "[1]"], 2, "--params"),
        (["--params", "{length"], 2, "--params"),
        (["--timeout", "0"], 2, "--timeout"),
        ([], 1, "did not answer"),
    ],
)
def test_the_aggregate_command_refuses_bad_arguments_and_unreachable_nodes(
    argv: list[str], status: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (port,) = free_udp_ports("127.0.0.1", 1)
    command = ["aggregate", "sum", "demand_kw", "--via", f"127.0.0.1:{port}", "--timeout", "0.3"]
    assert main([*command, *argv]) == status
    assert message in capsys.readouterr().err


def test_the_aggregate_command_asks_for_a_segment(capsys: pytest.CaptureFixture[str]) -> None:
    async def body(nodes: list[UdpNode]) -> list[dict[str, object]]:
        answers = []
        for function in ("sum", "collect"):
            argv = ["aggregate", function, "demand_kw", "--via", nodes[1].advertise]
            argv += ["--segment", "feeder-7", "--timeout", "5"]
            assert await asyncio.to_thread(main, argv) == 0  # its own loop, in a thread
            answers.append(json.loads(capsys.readouterr().out))
        return answers

    total, pairs = with_three_nodes(body)
    assert total["value"] == 0.4 and total["contributors"] == 2
    assert total["segment"] == {"service": None, "group": "feeder-7"}
    assert pairs["value"] == {
        "values": [[1, 0.1], [3, 0.3]],
        "dropped": 0,
        "cut": None,
        "truncated": False,
    }


def test_the_example_readings_are_valid_once_uncommented(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "node.toml"
    lines = example.read_text(encoding="utf-8").splitlines()
    start = lines.index("# [readings]")
    uncommented = [line.removeprefix("# ") for line in lines[start:]]
    settings = _settings(tmp_path, "\n".join(lines[:start] + uncommented))
    assert settings.readings == {"demand_kw": 3.75, "night_kwh": (1.5, 0.25, 3)}
