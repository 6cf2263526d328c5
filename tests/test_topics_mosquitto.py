"""gridmesh.topics agrees with a real Mosquitto broker, pair by pair.

A Mosquitto broker runs on a free loopback port with a generated
configuration. One MQTT 5 client subscribes to every filter of a seeded corpus,
each subscription with its own *subscription identifier*, then publishes every
topic name of the corpus once at QoS 1. A delivered PUBLISH carries the
identifiers of the subscriptions it matched (Mosquitto sends one copy per
matching subscription; the identifiers of all copies are united), so one
publish per name reveals the broker's whole matching relation, and a last
publish on a sentinel topic says that everything before it has arrived. The
relation must equal ``gridmesh.topics.matches`` on every pair.

The corpus holds ``+``, ``#``, names that start with ``$`` (not ``$SYS``,
which Mosquitto refuses from clients), empty levels and non-ASCII text. It
has no filter whose last level is ``*``: there gridmesh reads LinkSmart's
multi-level wildcard and MQTT an ordinary character, by design.

Needs the ``mosquitto`` binary (``apt-get install -y mosquitto``; ``make test``
installs it). Without it the tests fail; they are never skipped.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gridmesh.errors import InvalidTopic
from gridmesh.topics import matches, validate_topic_filter, validate_topic_name

pytestmark = pytest.mark.processes

SEED = 20_240_601
FILTER_COUNT = 300
NAME_COUNT = 120
WAIT_S = 30.0
SENTINEL = "gridmesh-test/sentinel"
INSTALL_HINT = (
    "the mosquitto broker is not installed, and this test needs it: install it with "
    "`apt-get install -y mosquitto` (Debian/Ubuntu; `make test` does this) or your "
    "system's package manager, so that `mosquitto` is on PATH or in /usr/sbin"
)

# Level texts: a few common ones, so that filters and names share levels often,
# and rarer ones: grid words, non-ASCII text, "*" (ordinary in a name), "$"
# texts below the first level (where "$" means nothing).
COMMON_LEVELS = ["a", "b", ""]
RARE_LEVELS = ["MEASUREMENT", "SENSOR", "1234", "é", "日本", "😀", "*", "x y", "$grid", "$"]
DOLLAR_FIRST_LEVELS = ["$grid", "$meter", "$", "$DR"]
DEPTHS = [1, 2, 2, 3, 3, 4, 5]
FIXED_NAMES = ["/", "//", "a//b", "a/", "/a", "$grid", "$grid/a", "$", "$/", "a/$grid", "é/日本/😀"]
FIXED_FILTERS = ["#", "+", "+/#", "+/+", "/#", "/+", "$grid/#", "$grid/+", "+/$grid", "$/#", "a/#"]


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto")
    if found is None:
        found = next(
            (
                str(p)
                for p in (Path("/usr/sbin/mosquitto"), Path("/usr/local/sbin/mosquitto"))
                if p.exists()
            ),
            None,
        )
    if found is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    return found


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def broker_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A Mosquitto broker on a free loopback port; yields the port."""
    binary = mosquitto_binary()
    directory = tmp_path_factory.mktemp("mosquitto")
    port = free_loopback_port()
    config = directory / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        "persistence false\n"
        "log_dest stderr\n"
        "max_queued_messages 1000000\n",
        encoding="utf-8",
    )
    log_path = directory / "mosquitto.log"
    with log_path.open("wb") as log:
        broker = subprocess.Popen([binary, "-c", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 10.0
        while True:
            if broker.poll() is not None:
                log_text = log_path.read_text(errors="replace")
                pytest.fail(f"mosquitto exited with {broker.returncode}:\n{log_text}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"mosquitto did not listen on port {port} within 10 s")
                time.sleep(0.05)
        yield port
    finally:
        broker.terminate()
        try:
            broker.wait(timeout=10)
        except subprocess.TimeoutExpired:
            broker.kill()
            broker.wait()


class Session:
    """One MQTT 5 client driven by hand (no thread): ``pump`` until a condition holds."""

    def __init__(self, port: int, client_id: str) -> None:
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.connected = False
        self.lost = False
        self.subacks: dict[int, list[ReasonCode]] = {}
        self.pubacks: set[int] = set()
        self.messages: list[mqtt.MQTTMessage] = []
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, clean_start=True)
        self.pump(lambda: self.connected, "CONNACK")

    def _on_connect(self, _c: object, _u: object, _f: object, code: ReasonCode, _p: object) -> None:
        assert not code.is_failure, f"connection refused: {code}"
        self.connected = True

    def _on_disconnect(self, _c: object, _u: object, _f: object, _code: object, _p: object) -> None:
        self.lost = True

    def _on_subscribe(
        self, _c: object, _u: object, mid: int, codes: list[ReasonCode], _p: object
    ) -> None:
        self.subacks[mid] = codes

    def _on_publish(self, _c: object, _u: object, mid: int, _code: object, _p: object) -> None:
        self.pubacks.add(mid)

    def _on_message(self, _c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        self.messages.append(message)

    def pump(self, done: Callable[[], bool], what: str, *, lost_ok: bool = False) -> None:
        deadline = time.monotonic() + WAIT_S
        while not done():
            if self.lost:
                if lost_ok:
                    return
                raise AssertionError(f"the broker closed the connection while waiting for {what}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {WAIT_S} s")
            self.client.loop(timeout=0.05)

    def close(self) -> None:
        if not self.lost:
            self.client.disconnect()
            self.pump(lambda: False, "DISCONNECT", lost_ok=True)


def generate_corpus(seed: int) -> tuple[list[str], list[str]]:
    """``(filters, names)``: distinct, valid, deterministic in ``seed``.

    Names are random, or made from a filter (each wildcard filled in), so
    that a fair share of the pairs match.
    """
    rng = random.Random(seed)

    def level() -> str:
        return rng.choice(COMMON_LEVELS) if rng.random() < 0.75 else rng.choice(RARE_LEVELS)

    def random_levels() -> list[str]:
        levels = [level() for _ in range(rng.choice(DEPTHS))]
        if rng.random() < 0.2:
            levels[0] = rng.choice(DOLLAR_FIRST_LEVELS)
        return levels

    names = list(FIXED_NAMES)
    while len(names) < NAME_COUNT // 3:
        name = "/".join(random_levels())
        if name and name not in names:
            names.append(validate_topic_name(name))
    filters = list(FIXED_FILTERS)
    while len(filters) < FILTER_COUNT:
        levels = rng.choice(names).split("/") if rng.random() < 0.7 else random_levels()
        levels = ["+" if rng.random() < 0.3 else text for text in levels]
        shape = rng.random()
        if shape < 0.35:
            levels = [*levels[: rng.randint(0, len(levels))], "#"]
        elif shape < 0.45 and len(levels) > 1:
            levels = levels[:-1]
        elif shape < 0.55:
            levels = [*levels, level()]
        if levels[-1] == "*":
            levels[-1] = "x"  # a last "*" is LinkSmart's "#" in gridmesh, by design
        topic_filter = "/".join(levels)
        if topic_filter and topic_filter not in filters:
            assert validate_topic_filter(topic_filter) == topic_filter
            filters.append(topic_filter)
    while len(names) < NAME_COUNT:
        filled: list[str] = []
        for text in rng.choice(filters).split("/"):
            if text == "#":
                filled += [level() for _ in range(rng.randint(0, 2))]
            else:
                filled.append(level() if text == "+" else text)
        name = "/".join(filled)
        if name and name not in names:
            names.append(validate_topic_name(name))
    return filters, names


def broker_matches(port: int, filters: list[str], names: list[str]) -> list[set[int]]:
    """For each name, the indices of the filters the broker matched it with."""
    session = Session(port, "gridmesh-topics-agreement")
    try:
        subscribe_mids: dict[int, str] = {}
        for identifier, topic_filter in enumerate([*filters, SENTINEL], start=1):
            properties = Properties(PacketTypes.SUBSCRIBE)  # type: ignore[no-untyped-call]
            properties.SubscriptionIdentifier = identifier
            _, mid = session.client.subscribe(topic_filter, qos=1, properties=properties)
            assert mid is not None
            subscribe_mids[mid] = topic_filter
        session.pump(lambda: len(session.subacks) == len(subscribe_mids), "every SUBACK")
        refused = [
            (subscribe_mids[mid], str(codes[0]))
            for mid, codes in session.subacks.items()
            if codes[0].is_failure
        ]
        assert refused == [], f"the broker refused filters gridmesh accepts: {refused}"

        publish_mids = {
            session.client.publish(name, str(i), qos=1).mid for i, name in enumerate(names)
        }
        session.pump(lambda: publish_mids <= session.pubacks, "every PUBACK")
        session.client.publish(SENTINEL, b"", qos=1)
        session.pump(lambda: any(m.topic == SENTINEL for m in session.messages), "the sentinel")

        matched: list[set[int]] = [set() for _ in names]
        for message in session.messages:
            if message.topic == SENTINEL:
                continue
            index = int(message.payload)
            assert message.topic == names[index]
            identifiers = getattr(message.properties, "SubscriptionIdentifier", [])
            matched[index].update(identifier - 1 for identifier in identifiers)
        return matched
    finally:
        session.close()


def test_gridmesh_matches_exactly_as_mosquitto_on_a_seeded_corpus(broker_port: int) -> None:
    filters, names = generate_corpus(SEED)
    pairs = len(filters) * len(names)
    assert pairs >= 10_000
    by_broker = broker_matches(broker_port, filters, names)
    disagreements = []
    matching = 0
    for n, name in enumerate(names):
        for f, topic_filter in enumerate(filters):
            ours = matches(topic_filter, name)
            matching += ours
            if ours != (f in by_broker[n]):
                disagreements.append((topic_filter, name, f"gridmesh {ours}"))
    print(f"seed {SEED}: {len(filters)} filters x {len(names)} names: {matching}/{pairs} match")
    assert not disagreements, (
        f"seed {SEED}: {len(disagreements)} of {pairs} pairs disagree with Mosquitto "
        f"(filter, name, gridmesh's answer):\n" + "\n".join(map(repr, disagreements[:100]))
    )
    # a corpus worth the name: hundreds of pairs of either answer
    assert 500 <= matching <= pairs - 500


# Characters at the edges of gridmesh's rules: refused ones first, then accepted
# ones. Lone surrogates are missing: no client can even encode them.
EDGE_CHARACTERS = [
    "\x00",
    "\x01",
    "\x1b",
    "\x1f",
    "\x7f",
    "\x85",
    "\x9f",
    "\ufdd0",
    "\ufffe",
    "\U0010ffff",
    "\x20",
    "\x7e",
    "\xa0",
    "\ufeff",
    "\U0010fffd",
]


def test_mosquitto_refuses_exactly_the_characters_gridmesh_refuses(broker_port: int) -> None:
    verdicts = {}
    for n, char in enumerate(EDGE_CHARACTERS):
        name = f"grid/edge{char}case"
        session = Session(broker_port, f"gridmesh-edge-{n}")
        try:
            mid = session.client.publish(name, b"", qos=1).mid
            session.pump(lambda: mid in session.pubacks, "the PUBACK", lost_ok=True)  # noqa: B023
            broker_accepts = mid in session.pubacks
        finally:
            session.close()
        try:
            validate_topic_name(name)
            gridmesh_accepts = True
        except InvalidTopic:
            gridmesh_accepts = False
        verdicts[f"U+{ord(char):04X}"] = (gridmesh_accepts, broker_accepts)
    disagree = {code: v for code, v in verdicts.items() if v[0] != v[1]}
    assert not disagree, f"(gridmesh accepts, Mosquitto accepts) differ: {disagree}"
