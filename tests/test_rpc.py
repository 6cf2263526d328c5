"""Service calls (seed 001's SOA services): the state machines by hand, then simulations."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from pydantic import ValidationError

from gridmesh.errors import LocalProtocolError
from gridmesh.node import Node, NodeConfig
from gridmesh.protocols import Peer
from gridmesh.protocols.membership import FullMembershipConfig, PeerDirectory
from gridmesh.protocols.rpc import (
    DETAIL_BYTES_MAX,
    CallResult,
    CallTimeout,
    ResultTooLarge,
    ServiceBusy,
    ServiceCallsConfig,
    ServiceCrashed,
    ServiceFailed,
    UnknownService,
)
from gridmesh.sim import ConstantLatency, LinkClass, NetworkConfig, Simulator
from gridmesh.wire import Envelope, Kind
from tests.helpers import RecordingTransport, mesh, sent

CALLER = 2
CALL_ID = 77

# -- one node, driven by hand ------------------------------------------------------------


def lone_node(
    *, message_bytes_max: int = 65_000, **limits: object
) -> tuple[Node, RecordingTransport]:
    """Node 1, knowing nodes 1..3, with ``config.services`` made of ``limits``."""
    transport = RecordingTransport()
    config = NodeConfig(
        membership=FullMembershipConfig(exchange_interval_s=0),
        services=ServiceCallsConfig(**limits),
        message_bytes_max=message_bytes_max,
    )
    directory = PeerDirectory(Peer(i, str(i)) for i in range(1, 4))
    node = Node(1, transport=transport, rng=random.Random(1), config=config, directory=directory)
    return node, transport


def rpc_call(
    service: object = "last_voltage",
    args: object = None,
    *,
    call_id: int = CALL_ID,
    caller: int = CALLER,
    body: object = None,
) -> Envelope:
    body = [service, args] if body is None else body
    return Envelope(Kind.RPC_CALL, call_id, caller, caller, "", 0, 0, body)


def rpc_result(body: object, *, origin: int = CALLER) -> Envelope:
    return Envelope(Kind.RPC_RESULT, 9000, origin, origin, "", 0, 0, body)


def results_sent(transport: RecordingTransport) -> list[tuple[int, list[object]]]:
    found = []
    for destination, message in sent(transport, Kind.RPC_RESULT):
        assert type(message.body) is list
        found.append((destination, message.body))
    return found


def test_a_call_runs_the_handler_and_the_result_goes_to_where_the_call_came_from() -> None:
    node, transport = lone_node()
    node.expose("last_voltage", lambda args, now: {"volts": 231.5, "asked": args, "at": now})
    node.receive(rpc_call(args=["phase", 1]), "10.0.0.7:4000", 3.0)
    [(_, peer, message)] = transport.sent
    assert (peer.node_id, peer.address) == (CALLER, "10.0.0.7:4000")  # not the view's "2"
    assert message.kind is Kind.RPC_RESULT
    assert message.body == [CALL_ID, 0, {"volts": 231.5, "asked": ["phase", 1], "at": 3.0}]
    assert node.stats()["rpc_calls_served"] == 1
    assert node.rejected is None


def test_a_copy_of_a_call_is_answered_from_the_cache_and_the_handler_runs_once() -> None:
    node, transport = lone_node()
    runs: list[object] = []

    def handler(args: object, now: float) -> object:
        runs.append(args)
        return len(runs)

    node.expose("last_voltage", handler)
    node.receive(rpc_call(args=1), "2", 1.0)
    node.receive(rpc_call(args=1), "2", 1.5)
    first, second = (m for _, _, m in transport.sent)
    assert runs == [1]
    assert second is first  # the very reply kept, same message id
    stats = node.stats()
    assert (stats["rpc_calls_served"], stats["rpc_duplicates_answered"]) == (1, 1)


def test_the_same_call_id_from_another_caller_is_another_call() -> None:
    node, _ = lone_node()
    runs: list[float] = []
    node.expose("last_voltage", lambda args, now: runs.append(now))
    node.receive(rpc_call(caller=2), "2", 1.0)
    node.receive(rpc_call(caller=3), "3", 1.1)
    assert runs == [1.0, 1.1]


def test_a_call_id_reused_for_another_service_is_refused() -> None:
    node, transport = lone_node()
    node.expose("a", lambda args, now: 1)
    node.expose("b", lambda args, now: 2)
    node.receive(rpc_call("a"), "2", 1.0)
    transport.sent.clear()
    node.receive(rpc_call("b"), "2", 1.1)
    assert transport.sent == []
    assert node.rejected == {"unexpected": 1}


def test_an_unknown_service_is_answered_status_1_and_not_kept() -> None:
    node, transport = lone_node()
    node.receive(rpc_call("nothing_here"), "2", 1.0)
    assert results_sent(transport) == [(CALLER, [CALL_ID, 1, None])]
    node.expose("nothing_here", lambda args, now: "now there is")
    node.receive(rpc_call("nothing_here"), "2", 1.2)  # a copy: the handler never ran, so run
    assert results_sent(transport) == [(CALLER, [CALL_ID, 0, "now there is"])]
    assert node.stats()["rpc_unknown_service"] == 1


def test_a_withdrawn_service_is_unknown() -> None:
    node, transport = lone_node()
    node.expose("last_voltage", lambda args, now: 230)
    node.services.withdraw("last_voltage")
    node.services.withdraw("never_there")  # no-op
    node.receive(rpc_call(), "2", 1.0)
    assert results_sent(transport) == [(CALLER, [CALL_ID, 1, None])]
    assert node.services.exposed() == []


def test_service_failed_travels_with_its_code_and_a_bounded_detail() -> None:
    node, transport = lone_node()

    def handler(args: object, now: float) -> object:
        raise ServiceFailed(404, "é" * DETAIL_BYTES_MAX)  # two bytes each

    node.expose("last_voltage", handler)
    node.receive(rpc_call(), "2", 1.0)
    [(_, [call_id, status, detail])] = results_sent(transport)
    assert (call_id, status) == (CALL_ID, 2)
    assert detail == [404, "é" * (DETAIL_BYTES_MAX // 2)]
    assert node.stats()["rpc_service_failed"] == 1


def test_a_crashing_handler_is_counted_the_caller_learns_nothing_more_and_serving_goes_on() -> None:
    node, transport = lone_node()

    def handler(args: object, now: float) -> object:
        if args == "boom":
            raise KeyError("secret internals")
        if args == "unsendable":
            return {1, 2}  # a set is not plain data
        return "fine"

    node.expose("last_voltage", handler)
    node.receive(rpc_call(args="boom", call_id=1), "2", 1.0)
    node.receive(rpc_call(args="unsendable", call_id=2), "2", 1.0)
    node.receive(rpc_call(args="ok", call_id=3), "2", 1.0)
    assert [body for _, body in results_sent(transport)] == [
        [1, 3, None],
        [2, 3, None],
        [3, 0, "fine"],
    ]
    assert node.stats()["rpc_crashed"] == 2
    assert node.rejected is None


def test_a_result_too_large_for_one_message_is_answered_status_4() -> None:
    node, transport = lone_node(message_bytes_max=1024)
    node.expose("last_voltage", lambda args, now: "x" * 2000)
    node.receive(rpc_call(), "2", 1.0)
    [(_, [call_id, status, detail])] = results_sent(transport)
    assert type(detail) is list
    size_bytes, limit_bytes = detail
    assert (call_id, status, limit_bytes) == (CALL_ID, 4, 1024)
    assert size_bytes > 2000
    assert node.stats()["rpc_oversized"] == 1


def test_a_caller_past_calls_inflight_max_hears_busy_until_its_results_expire() -> None:
    node, transport = lone_node(calls_inflight_max=2, timeout_s_max=10, results_ttl_s=10)
    node.expose("last_voltage", lambda args, now: 230)
    for call_id in (1, 2, 3):
        node.receive(rpc_call(call_id=call_id), "2", 1.0)
    node.receive(rpc_call(call_id=4, caller=3), "3", 1.0)  # another caller is not held up
    assert [body[1] for _, body in results_sent(transport)] == [0, 0, 5, 0]
    node.receive(rpc_call(call_id=3), "2", 11.0)  # the first two expired: served now
    assert [body[1] for _, body in results_sent(transport)] == [0]
    stats = node.stats()
    assert (stats["rpc_busy"], stats["rpc_calls_served"], stats["rpc_results_cached"]) == (1, 4, 1)


def test_a_copy_whose_result_was_pushed_out_is_dropped_never_run_twice() -> None:
    node, transport = lone_node(results_cached_max=1)
    runs = Counter[object]()
    node.expose("last_voltage", lambda args, now: runs.update([args]))
    node.receive(rpc_call(args="a", call_id=1), "2", 1.0)
    node.receive(rpc_call(args="b", call_id=2), "2", 1.0)  # pushes the result of call 1 out
    transport.sent.clear()
    node.receive(rpc_call(args="a", call_id=1), "2", 1.1)
    assert transport.sent == []
    assert runs == {"a": 1, "b": 1}
    stats = node.stats()
    assert (stats["rpc_duplicates_dropped"], stats["rpc_results_evicted"]) == (1, 1)


def test_results_are_kept_for_results_ttl_s_then_forgotten() -> None:
    node, _ = lone_node(timeout_s_max=5, results_ttl_s=5)
    runs: list[float] = []
    node.expose("last_voltage", lambda args, now: runs.append(now))
    node.receive(rpc_call(call_id=1), "2", 1.0)
    node.receive(rpc_call(call_id=1), "2", 5.9)  # still kept: answered again
    node.receive(rpc_call(call_id=2), "2", 6.0)  # call 1's time is up
    assert node.stats()["rpc_results_cached"] == 1
    node.receive(rpc_call(call_id=1), "2", 6.1)
    assert runs == [1.0, 6.0]
    assert node.stats()["rpc_duplicates_dropped"] == 1


@pytest.mark.parametrize(
    "body",
    [
        "not a list",
        [],
        ["last_voltage"],
        ["last_voltage", None, "extra"],
        [7, None],
        [None, None],
        ["", None],
        ["1st", None],
        ["has space", None],
        ["trailing\n", None],
        ["volt€", None],
        ["x" * 65, None],
    ],
)
def test_a_malformed_call_is_counted_and_dropped(body: object) -> None:
    node, transport = lone_node()
    node.expose("last_voltage", lambda args, now: 230)
    node.receive(rpc_call(body=body), "2", 1.0)
    assert transport.sent == []
    assert node.rejected == {"malformed": 1}
    assert node.stats()["rpc_calls_served"] == 0


def test_service_names_follow_the_syntax_and_the_configured_length() -> None:
    node, _ = lone_node(service_name_bytes_max=8)
    with pytest.raises(LocalProtocolError, match="at most 8 bytes"):
        node.expose("dtc.v:1/a", lambda args, now: 1)
    node.expose("dtc.v1-a", lambda args, now: 1)
    node.expose("A_b", lambda args, now: 1)
    for name in ("", "9lives", "a b", "a\n", None):
        with pytest.raises(LocalProtocolError, match="service name"):
            node.expose(name, lambda args, now: 1)  # type: ignore[arg-type]
    node.receive(rpc_call("dtc.v:1/a"), "2", 1.0)  # longer than this node accepts
    assert node.rejected == {"malformed": 1}


# -- the caller's side, by hand ---------------------------------------------------------


def start_call(
    node: Node, target: Peer | int = 2, **arguments: object
) -> tuple[int, list[CallResult]]:
    results: list[CallResult] = []
    call_id = node.call(
        target,
        "last_voltage",
        arguments.pop("args", None),
        now=arguments.pop("now", 0.0),  # type: ignore[arg-type]
        on_result=results.append,
        **arguments,  # type: ignore[arg-type]
    )
    return call_id, results


def test_a_call_is_sent_again_every_retry_interval_until_the_timeout() -> None:
    node, transport = lone_node(retry_interval_s=0.5)
    call_id, results = start_call(node, timeout_s=1.6)
    for now in (0.5, 1.0, 1.5):
        node.handle_timer(now)
    copies = sent(transport, Kind.RPC_CALL)
    assert [d for d, _ in copies] == [2, 2, 2, 2]
    assert {m.message_id for _, m in copies} == {call_id}  # the same call, the same id
    assert results == []
    node.handle_timer(1.6)
    [result] = results
    assert isinstance(result.error, CallTimeout)
    assert (result.ok, result.attempts, result.elapsed_s, result.target) == (False, 4, 1.6, 2)
    assert sent(transport, Kind.RPC_CALL) == []
    node.receive(rpc_result([call_id, 0, 1], origin=2), "2", 2.0)  # late: counted, not shown
    assert len(results) == 1
    stats = node.stats()
    assert (stats["rpc_timeouts"], stats["rpc_retransmits"], stats["rpc_results_late"]) == (1, 3, 1)
    assert stats["rpc_pending"] == 0


def test_a_result_ends_the_call_once_and_a_second_one_is_a_counted_duplicate() -> None:
    node, _ = lone_node()
    call_id, results = start_call(node, args={"phase": 2}, now=1.0)
    node.receive(rpc_result([call_id, 0, 230.1], origin=2), "2", 1.25)
    node.receive(rpc_result([call_id, 0, 230.1], origin=2), "2", 1.3)
    assert results == [CallResult(call_id, 2, "last_voltage", True, 230.1, None, 0.25, 1)]
    node.handle_timer(100.0)  # no timeout after a result
    assert len(results) == 1
    stats = node.stats()
    assert (stats["rpc_results_ok"], stats["rpc_results_duplicate"]) == (1, 1)
    assert node.rejected is None


@pytest.mark.parametrize(
    ("status", "detail", "error_type"),
    [
        (1, None, UnknownService),
        (2, [7, "no reading yet"], ServiceFailed),
        (3, None, ServiceCrashed),
        (4, [70_000, 65_000], ResultTooLarge),
        (5, None, ServiceBusy),
    ],
)
def test_every_failure_status_becomes_its_typed_error(
    status: int, detail: object, error_type: type[Exception]
) -> None:
    node, _ = lone_node()
    call_id, results = start_call(node)
    node.receive(rpc_result([call_id, status, detail], origin=2), "2", 0.1)
    [result] = results
    assert not result.ok and result.value is None
    assert type(result.error) is error_type
    assert result.error.service == "last_voltage"
    if isinstance(result.error, ServiceFailed):
        assert (result.error.code, result.error.detail) == (7, "no reading yet")
    if isinstance(result.error, ResultTooLarge):
        assert (result.error.size_bytes, result.error.limit_bytes) == (70_000, 65_000)
    assert node.stats()["rpc_results_failed"] == 1


@pytest.mark.parametrize(
    "body",
    [
        None,
        [1, 0],
        [-1, 0, None],
        [True, 0, None],
        ["id", 0, None],
        [CALL_ID, 7, None],  # no such status
        [CALL_ID, False, None],
        [CALL_ID, 1, "detail where null belongs"],
        [CALL_ID, 2, None],
        [CALL_ID, 2, [7]],
        [CALL_ID, 2, ["7", "text"]],
        [CALL_ID, 2, [-1, "text"]],
        [CALL_ID, 2, [7, "x" * (DETAIL_BYTES_MAX + 1)]],
        [CALL_ID, 4, [1]],
        [CALL_ID, 4, [-5, 10]],
        [CALL_ID, 5, 0],
    ],
)
def test_a_malformed_result_is_counted_and_the_call_goes_on(body: object) -> None:
    node, _ = lone_node()
    call_id, results = start_call(node, timeout_s=1.0)
    if type(body) is list and body and body[0] == CALL_ID:
        body[0] = call_id
    node.receive(rpc_result(body, origin=2), "2", 0.1)
    assert node.rejected == {"malformed": 1}
    assert results == []
    assert node.stats()["rpc_pending"] == 1


def test_a_result_for_no_call_or_from_another_node_is_unexpected() -> None:
    node, _ = lone_node()
    call_id, results = start_call(node)
    node.receive(rpc_result([call_id + 1, 0, 1], origin=2), "2", 0.1)
    node.receive(rpc_result([call_id, 0, 1], origin=3), "3", 0.1)  # the call went to 2
    assert node.rejected == {"unexpected": 2}
    assert results == []


def test_a_call_by_node_id_goes_to_the_peer_in_the_view_and_an_unknown_id_is_refused() -> None:
    node, transport = lone_node()
    start_call(node, 3)
    [(destination, message)] = sent(transport, Kind.RPC_CALL)
    assert destination == 3
    assert message.body == ["last_voltage", None]
    with pytest.raises(LocalProtocolError, match="pass a Peer"):
        start_call(node, 99)


def test_a_target_known_only_by_address_is_answered_under_its_own_id() -> None:
    node, _ = lone_node()
    call_id, results = start_call(node, Peer(0, "10.0.0.9:4000"))
    node.receive(rpc_result([call_id, 0, "hi"], origin=9), "10.0.0.9:4000", 0.1)
    assert [(r.target, r.value) for r in results] == [(9, "hi")]


def test_the_caller_refuses_what_breaks_its_limits() -> None:
    node, _ = lone_node(calls_pending_max=2, timeout_s_max=10, message_bytes_max=1024)
    with pytest.raises(LocalProtocolError, match="timeout_s"):
        start_call(node, timeout_s=11)
    for bad in (0, -1, float("nan"), float("inf"), True):
        with pytest.raises(LocalProtocolError, match="timeout_s"):
            start_call(node, timeout_s=bad)
    with pytest.raises(LocalProtocolError, match="message_bytes_max"):
        start_call(node, args="x" * 2000)
    with pytest.raises(LocalProtocolError, match="plain data"):
        start_call(node, args={1, 2})
    with pytest.raises(LocalProtocolError, match="service name"):
        node.call(2, "no spaces please", now=0.0, on_result=print)
    start_call(node)
    start_call(node)
    with pytest.raises(LocalProtocolError, match="2 calls are waiting"):
        start_call(node)
    assert node.stats()["rpc_calls_sent"] == 2


def test_services_max_bounds_the_services_a_node_exposes() -> None:
    node, _ = lone_node(services_max=2)
    node.expose("a", lambda args, now: 1)
    node.expose("b", lambda args, now: 1)
    node.expose("a", lambda args, now: 2)  # replacing one is fine
    with pytest.raises(LocalProtocolError, match="at most 2 services"):
        node.expose("c", lambda args, now: 1)
    with pytest.raises(LocalProtocolError, match="not callable"):
        node.expose("a", "not a handler")  # type: ignore[arg-type]
    assert node.services.exposed() == ["a", "b"]


def test_the_configuration_is_consistent_and_closed() -> None:
    with pytest.raises(ValidationError, match="timeout_s_max"):
        ServiceCallsConfig(timeout_s=20, timeout_s_max=10)
    with pytest.raises(ValidationError, match="results_ttl_s"):
        ServiceCallsConfig(timeout_s_max=30, results_ttl_s=10)
    with pytest.raises(ValidationError, match="extra"):
        ServiceCallsConfig(retries=3)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        ServiceCallsConfig(results_cached_bytes_max=1000)  # less than one message
    assert NodeConfig(services={"timeout_s": 2}).services.timeout_s == 2


def test_a_node_that_never_called_reports_zero_counters_and_builds_nothing() -> None:
    node, _ = lone_node()
    stats = node.stats()
    assert stats["rpc_calls_sent"] == stats["rpc_calls_served"] == 0
    assert node._services is None  # built on first use only


def test_service_failed_refuses_a_code_that_cannot_travel() -> None:
    for code in (-1, 2**32, "404", True):
        with pytest.raises(LocalProtocolError, match="code"):
            ServiceFailed(code)  # type: ignore[arg-type]
    assert str(ServiceFailed(7, "no reading")) == "service_failed: error 7: no reading"


# -- simulations ------------------------------------------------------------------------


def simulated(
    count: int = 4,
    *,
    seed: int = 1,
    loss: float = 0.0,
    delay_s: float = 0.01,
    wire_fidelity: bool = False,
    **limits: object,
) -> Simulator:
    link = LinkClass(latency=ConstantLatency(delay_s=delay_s), loss=loss)
    config = NodeConfig(
        membership=FullMembershipConfig(exchange_interval_s=0),
        services=ServiceCallsConfig(**limits),
    )
    sim, _ = mesh(
        count, config, NetworkConfig(lan=link, wan=link), seed=seed, wire_fidelity=wire_fidelity
    )
    sim.run(0.0)  # start every node
    return sim


def node_of(sim: Simulator, node_id: int) -> Node:
    node = sim.node(node_id)
    assert node is not None
    return node


def call_later(
    sim: Simulator,
    at: float,
    caller: int,
    target: int,
    service: str,
    *,
    args: object = None,
    timeout_s: float | None = None,
) -> list[CallResult]:
    """Make the call at virtual time ``at``; the list fills with its result."""
    results: list[CallResult] = []

    def make_call(now: float) -> None:
        node = node_of(sim, caller)
        node.call(target, service, args, now=now, on_result=results.append, timeout_s=timeout_s)

    sim.schedule(at, make_call)
    return results


@pytest.mark.parametrize("wire_fidelity", [False, True])
def test_a_call_returns_the_value_across_the_network(wire_fidelity: bool) -> None:
    sim = simulated(wire_fidelity=wire_fidelity)
    voltages = {"L1": 231.2, "L2": 229.8}
    node_of(sim, 3).expose(
        "last_voltage", lambda args, now: {"phase": args, "v": voltages[str(args)]}
    )
    results = call_later(sim, 1.0, 1, 3, "last_voltage", args="L2")
    sim.run(2.0)
    [result] = results
    assert result.ok and result.error is None
    assert result.value == {"phase": "L2", "v": 229.8}
    assert (result.target, result.attempts) == (3, 1)
    assert result.elapsed_s == pytest.approx(0.02)  # one round trip of 10 ms links


def test_typed_errors_arrive_across_the_network_and_the_callee_keeps_serving() -> None:
    sim = simulated()
    callee = node_of(sim, 2)

    def dr_activate(args: object, now: float) -> object:
        if args == "crash":
            raise RuntimeError("stack trace material")
        if type(args) is not int:
            raise ServiceFailed(22, "kW must be an integer")
        return {"activated_kw": args}

    callee.expose("dr.activate", dr_activate)
    unknown = call_later(sim, 1.0, 1, 2, "no_such_service")
    failed = call_later(sim, 1.0, 1, 2, "dr.activate", args="lots")
    crashed = call_later(sim, 1.0, 3, 2, "dr.activate", args="crash")
    fine = call_later(sim, 1.5, 4, 2, "dr.activate", args=150)
    sim.run(3.0)
    assert isinstance(unknown[0].error, UnknownService)
    assert isinstance(failed[0].error, ServiceFailed)
    assert (failed[0].error.code, failed[0].error.detail) == (22, "kW must be an integer")
    assert isinstance(crashed[0].error, ServiceCrashed)
    assert "stack trace" not in str(crashed[0].error)
    assert fine[0].value == {"activated_kw": 150}
    stats = callee.stats()
    assert (stats["rpc_unknown_service"], stats["rpc_service_failed"], stats["rpc_crashed"]) == (
        1,
        1,
        1,
    )


def test_a_call_to_a_crashed_node_times_out_exactly_once() -> None:
    sim = simulated(retry_interval_s=0.25)
    node_of(sim, 2).expose("last_voltage", lambda args, now: 230)
    sim.crash(2, 0.5)
    results = call_later(sim, 1.0, 1, 2, "last_voltage", timeout_s=2.0)
    sim.run(10.0)
    [result] = results
    assert isinstance(result.error, CallTimeout)
    assert (result.elapsed_s, result.attempts) == (2.0, 8)  # at 0, 0.25, ..., 1.75
    assert isinstance(result.error, CallTimeout) and result.error.attempts == 8
    assert node_of(sim, 1).stats()["rpc_timeouts"] == 1


def test_a_result_slower_than_the_timeout_is_counted_late_not_shown() -> None:
    sim = simulated(delay_s=0.04)
    node_of(sim, 2).expose("last_voltage", lambda args, now: 230)
    results = call_later(sim, 1.0, 1, 2, "last_voltage", timeout_s=0.05)
    sim.run(2.0)
    [result] = results
    assert isinstance(result.error, CallTimeout)
    assert node_of(sim, 1).stats()["rpc_results_late"] == 1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_under_30_percent_loss_every_call_succeeds_and_each_handler_runs_once(seed: int) -> None:
    sim = simulated(8, seed=seed, loss=0.3, retry_interval_s=0.1, wire_fidelity=True)
    runs: Counter[tuple[int, int]] = Counter()

    def meter_reading(args: object, now: float) -> object:
        assert type(args) is list
        caller, number = args
        runs[(caller, number)] += 1
        return number * 10

    for callee in range(1, 9):
        node_of(sim, callee).expose("meter_reading", meter_reading)
    rng = random.Random(seed)
    calls = []
    for number in range(200):
        caller, target = rng.sample(range(1, 9), 2)
        at = 1.0 + number * 0.01
        results = call_later(
            sim, at, caller, target, "meter_reading", args=[caller, number], timeout_s=5.0
        )
        calls.append((number, results))
    sim.run(20.0)
    for number, results in calls:
        assert len(results) == 1, f"seed {seed}: call {number} ended {len(results)} times"
        assert results[0].ok, f"seed {seed}: call {number}: {results[0].error}"
        assert results[0].value == number * 10, f"seed {seed}"
    assert set(runs.values()) == {1}, f"seed {seed}: a handler ran twice"
    assert len(runs) == 200, f"seed {seed}"
    totals = Counter[str]()
    for node_id in range(1, 9):
        totals.update(node_of(sim, node_id).stats())
    assert totals["rpc_retransmits"] > 0, f"seed {seed}"
    assert totals["rpc_duplicates_answered"] > 0, f"seed {seed}: lost results were resent"
    assert totals["rpc_calls_served"] == 200, f"seed {seed}"
    assert totals["rpc_results_ok"] == 200, f"seed {seed}"
    assert sum(node_of(sim, i).rejected is not None for i in range(1, 9)) == 0, f"seed {seed}"


# -- fuzzing the two bodies ---------------------------------------------------------------

FUZZ_SEED = 20260401
PLAIN_SCALARS: list[object] = [
    None,
    True,
    False,
    0,
    1,
    5,
    6,
    -1,
    2**32,
    2**64 - 1,
    -(2**64),
    0.5,
    float("nan"),
    "",
    "last_voltage",
    "1x",
    "é",
    "x" * 300,
    b"\x00",
]


def plain(rng: random.Random, depth: int = 0) -> object:
    """A random plain-data value, mostly small."""
    roll = rng.random()
    if depth >= 3 or roll < 0.6:
        return rng.choice(PLAIN_SCALARS)
    if roll < 0.85:
        return [plain(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(["a", "code", ""]): plain(rng, depth + 1) for _ in range(rng.randrange(3))}


def near_valid_body(rng: random.Random, kind: Kind, call_id: int) -> object:
    """A valid body of ``kind`` with some items replaced by random plain data."""
    if kind is Kind.RPC_CALL:
        body: list[object] = [rng.choice(["last_voltage", "crash", "big", "fail"]), plain(rng)]
    else:
        status = rng.randrange(7)
        detail = {2: [rng.randrange(10), "text"], 4: [70_000, 65_000]}.get(status)
        body = [rng.choice([call_id, call_id + 1]), status, detail]
    for index in range(len(body)):
        if rng.random() < 0.3:
            body[index] = plain(rng)
    roll = rng.random()
    if roll < 0.05:
        return plain(rng)
    if roll < 0.1:
        return [*body, plain(rng)]
    if roll < 0.15:
        return body[:-1]
    return body


def test_random_call_and_result_bodies_never_escape_as_anything_but_counted_refusals() -> None:
    rng = random.Random(FUZZ_SEED)
    node, transport = lone_node(message_bytes_max=4096)

    def handler(args: object, now: float) -> object:
        if args == 5:
            raise ServiceFailed(5, "five")
        if args == 6:
            raise ValueError("six")
        return "x" * 5000 if args == "é" else args

    for name in ("last_voltage", "crash", "big", "fail"):
        node.expose(name, handler)
    outcomes: list[CallResult] = []
    for index in range(3000):
        if not node.services.stats()["rpc_pending"]:
            call_id = node.call(2, "last_voltage", now=float(index), on_result=outcomes.append)
        kind = rng.choice([Kind.RPC_CALL, Kind.RPC_RESULT])
        body = near_valid_body(rng, kind, call_id)
        message_id = rng.randrange(50) if rng.random() < 0.3 else rng.getrandbits(64)  # copies too
        message = Envelope(kind, message_id, 2, 2, "", 0, 0, body)
        try:
            node.receive(message, "2", float(index))
        except Exception as error:  # pragma: no cover - the failure message is the point
            raise AssertionError(f"seed {FUZZ_SEED}, input {index}: {body!r}: {error!r}") from None
        transport.sent.clear()
    assert set(node.rejected or {}) <= {"malformed", "unexpected"}, f"seed {FUZZ_SEED}"
    stats = node.stats()
    assert stats["rpc_calls_served"] > 100, f"seed {FUZZ_SEED}"
    assert stats["rpc_results_ok"] + stats["rpc_results_failed"] > 100, f"seed {FUZZ_SEED}"
    assert all(r.ok == (r.error is None) for r in outcomes), f"seed {FUZZ_SEED}"
