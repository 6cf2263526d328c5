"""Gossip dissemination: push, pull, push-pull and lazy push; anti-entropy repair.

Theory of operation
-------------------
Seed 000 (WS-Gossip, II.3 and IV.A) names the variants; all share one state:
a bounded ``SeenCache`` of ``(origin, message_id)`` keys (deliver once) and,
for every mode but plain push, a bounded ``MessageStore`` of what this node
delivered, to answer requests.

* **push** (eager): on first receipt a node delivers and relays to a mean of
  ``f`` random peers (randomized rounding, ``copies_for``) while hops remain.
  *Infect-and-die* relays once; *infect-forever* (balls-and-bins) relays every
  copy that arrives, duplicates included, while its hops last, so relaying
  needs no memory at all (delivery still happens once).
* **pull**: every ``pull_interval_s`` a node sends a *digest* (the ids it
  holds from a recent window) to ``pull_fanout`` random peers; a peer answers
  with the messages of that window the digest lacks. Nothing is pushed.
* **push-pull**: both; the pull rounds catch what push missed.
* **lazy** (seed 000 II.3): instead of the payload a node sends ``IHAVE``
  (ids only) to ``f`` peers; a peer that lacks a message asks the announcer
  with ``IWANT`` and gets the payload, which it then announces in turn. If
  the payload does not come within ``request_timeout_s``, it asks the next
  peer that announced it.
* **anti-entropy** (any mode, ``anti_entropy_interval_s > 0``): the same
  digest exchange over the whole store, slower, so a node that was crashed or
  partitioned when a message went by gets it after it comes back.

The message header carries the origin's choices, so every relay follows them
(seed 000 IV.A): ``hops_left`` in the envelope; fanout, group and infection in
the body. Body of ``GOSSIP``: ``[fanout, payload, group, forever]``; fanout is
a number in ``[1, FANOUT_MAX]`` (a mean, so it may be fractional), group ""
means every node, ``forever`` is a bool. ``GOSSIP_IHAVE`` and ``GOSSIP_IWANT``
carry ``[[origin, message_id], ...]``; ``GOSSIP_DIGEST`` carries ``[since_us,
[[origin, message_id], ...]]``. Messages answered to a request travel with
``hops_left`` the answering node still had for them (0 for digest replies:
a repair is not relayed further).

**Groups** (seed 002): a message for a group is delivered only by nodes whose
configuration lists the group; relays pick peers of the group first and fill
up with other peers, which carry the message on without delivering it, so a
group too sparse in a partial view is still reached.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

from gridmesh.errors import LocalProtocolError, MalformedMessage
from gridmesh.protocols._host import Host, Peer, PeerSampling, Scope, new_envelope
from gridmesh.protocols._seen import SeenCache
from gridmesh.protocols.dissemination._config import FANOUT_MAX, GossipConfig
from gridmesh.protocols.dissemination._reliability import copies_for, fanout_for
from gridmesh.protocols.dissemination._store import MessageKey, MessageStore
from gridmesh.protocols.membership._descriptors import GROUP_BYTES_MAX
from gridmesh.wire import UINT64_MAX, Envelope, Kind, check_plain

__all__ = [
    "GROUP_BYTES_MAX",
    "Gossip",
    "SizeEstimate",
    "as_relayed",
    "check_group",
    "gossip_body",
    "parse_gossip_body",
    "parse_keys",
]

#: Keys in one IHAVE / IWANT / digest, whatever the sender's configuration.
KEYS_MAX = 4096
#: Requests for missing payloads in flight, and announcers remembered per message.
PENDING_MAX = 4096
ANNOUNCERS_MAX = 4
#: Requests per missing message, cycling over its announcers: a request or its
#: answer may be lost, so asking each announcer once leaves ~0.19^4 of the
#: misses unrepaired under 10% loss.
REQUESTS_MAX = 6

SizeEstimate = Callable[[], "int | None"]
_NEVER_PENDING: dict[MessageKey, list[Peer]] = {}


class Gossip:
    """One node's gossip dissemination (every mode but ``tree``)."""

    KINDS: ClassVar[frozenset[Kind]] = frozenset(
        {Kind.GOSSIP, Kind.GOSSIP_IHAVE, Kind.GOSSIP_IWANT, Kind.GOSSIP_DIGEST}
    )

    __slots__ = (
        "_config",
        "_host",
        "_peers",
        "_pending",
        "_seen",
        "_size_estimate",
        "_store",
        "carried",
        "delivered",
        "duplicates",
        "relayed",
        "repaired",
        "requested",
    )

    def __init__(
        self,
        host: Host,
        config: GossipConfig,
        peers: PeerSampling,
        size_estimate: SizeEstimate = lambda: None,
    ) -> None:
        self._host = host
        self._config = config
        self._peers = peers
        self._size_estimate = size_estimate
        self._seen = SeenCache(config.seen_cache_max)
        self._store = (
            MessageStore(config.store_max, config.store_ttl_s) if config.keeps_messages else None
        )
        # lazy: missing message -> announcers not asked yet (the first was asked at once)
        # (a node that never asks for payloads shares one empty dict it never writes)
        self._pending: dict[MessageKey, list[Peer]] = (
            {} if config.mode in ("lazy", "tree") else _NEVER_PENDING
        )
        self.delivered = 0  # handed to the application
        self.carried = 0  # first copies of another group's message, relayed without delivery
        self.duplicates = 0  # payload copies that came after the first
        self.relayed = 0  # times this node relayed a message on
        self.repaired = 0  # messages first received as an answer to a digest (no hops left)
        self.requested = 0  # payloads asked for after an IHAVE

    # -- life cycle and API --------------------------------------------------

    def start(self, now: float) -> None:
        config, rng = self._config, self._host.rng
        if config.mode in ("pull", "push-pull"):
            self._host.call_at(now + rng.random() * config.pull_interval_s, self._pull)
        if config.anti_entropy_interval_s > 0:
            interval = config.anti_entropy_interval_s
            self._host.call_at(now + rng.random() * interval, self._anti_entropy)

    def on_neighbors(self, now: float) -> None:
        """The membership may have changed the neighbours; only a tree cares."""

    def broadcast(
        self,
        payload: object,
        *,
        topic: str,
        now: float,
        fanout: float | None = None,
        hops: int | None = None,
        group: str = "",
        reliability: float | None = None,
    ) -> Envelope:
        """Start disseminating ``payload``; returns the message as sent."""
        config = self._config
        fanout = self.choose_fanout(fanout, reliability)
        hops = self._default_hops() if hops is None else hops
        if not 1 <= hops <= config.hops_max:
            raise LocalProtocolError(f"hops must be in 1..{config.hops_max}, got {hops}")
        check_group(group)
        check_plain(payload)
        host = self._host
        forever = config.infection == "forever"
        message = host.authenticate(
            new_envelope(
                host,
                Kind.GOSSIP,
                gossip_body(fanout, payload, group=group, forever=forever),
                now,
                topic=topic,
                hops_left=hops,
            )
        )
        key = (message.origin, message.message_id)
        self._seen.add(key)
        if self._store is not None:
            self._store.add(key, message, hops, now)
        self._spread(message, key, fanout=fanout, group=group, hops_left=hops, came_from=0, now=now)
        return message

    def _default_hops(self) -> int:
        return self._config.hops

    def choose_fanout(self, fanout: float | None, reliability: float | None) -> float:
        """The mean fanout a broadcast uses: given, from a reliability, or the default."""
        config = self._config
        if fanout is not None and reliability is not None:
            raise LocalProtocolError("give a fanout or a reliability, not both")
        reliability = config.reliability if reliability is None and fanout is None else reliability
        if reliability is not None:
            nodes = config.network_size or self._size_estimate()
            if nodes is None:
                raise LocalProtocolError(
                    "a reliability needs a network size: set gossip.network_size "
                    "(this membership keeps no estimate)"
                )
            fanout = fanout_for(
                reliability, nodes, loss=config.expected_loss, crashed=config.expected_crashed
            )
            return min(fanout, float(FANOUT_MAX))
        fanout = config.fanout if fanout is None else fanout
        if not 1 <= fanout <= FANOUT_MAX or math.isnan(fanout):
            raise LocalProtocolError(f"fanout must be in 1..{FANOUT_MAX}, got {fanout}")
        return fanout

    def stats(self) -> dict[str, int]:
        return {
            "delivered": self.delivered,
            "duplicates": self.duplicates,
            "relayed": self.relayed,
            "carried": self.carried,
            "repaired": self.repaired,
            "requested": self.requested,
            "stored": len(self._store) if self._store is not None else 0,
        }

    # -- input ---------------------------------------------------------------

    def on_message(self, message: Envelope, source: str, now: float) -> None:
        kind = message.kind
        if kind is Kind.GOSSIP:
            self.on_gossip(message, now)
        elif kind is Kind.GOSSIP_IHAVE:
            self._on_ihave(message, source, now)
        elif kind is Kind.GOSSIP_IWANT:
            self._on_iwant(message, source, now)
        elif kind is Kind.GOSSIP_DIGEST:
            self._on_digest(message, source, now)

    def on_gossip(self, message: Envelope, now: float) -> None:
        key = (message.origin, message.message_id)
        if key in self._seen:  # most copies are duplicates: drop them before parsing
            self.duplicates += 1
            body = message.body
            if type(body) is list and len(body) == 4 and body[3] is True:
                self._relay_forever(message, now)
            return
        fanout, payload, group, _ = parse_gossip_body(message.body)
        self._seen.add(key)  # only now: a malformed copy must not hide a genuine one
        self._pending.pop(key, None)
        if message.hops_left == 0:  # only answers to digests come with no hops left
            self.repaired += 1
        hops_left = min(message.hops_left, self._config.hops_max) - 1
        if self._store is not None:
            self._store.add(key, message, max(hops_left, 0), now)
        self._take(message, payload, group, now)
        if self._config.mode != "pull":
            self._spread(
                message,
                key,
                fanout=fanout,
                group=group,
                hops_left=hops_left,
                came_from=message.sender,
                now=now,
            )

    # -- dissemination -------------------------------------------------------

    def _take(self, message: Envelope, payload: object, group: str, now: float) -> None:
        if not group or group in self._host.me.groups:
            self.delivered += 1
            self._host.deliver(message, payload, now)
        else:
            self.carried += 1

    def _spread(
        self,
        message: Envelope,
        key: MessageKey,
        *,
        fanout: float,
        group: str,
        hops_left: int,
        came_from: int,
        now: float,
    ) -> None:
        """Pass a message on as the mode says: payload (push) or ids (lazy)."""
        if hops_left <= 0:
            return
        mode = self._config.mode
        if mode == "pull":
            return
        host = self._host
        targets = self._targets(copies_for(fanout, host.rng), came_from, group)
        if not targets:
            return
        if came_from:
            self.relayed += 1
        if mode == "lazy":
            host.send(targets, new_envelope(host, Kind.GOSSIP_IHAVE, [list(key)], now))
        elif came_from:
            host.send(targets, message.relayed(host.node_id, hops_left))
        else:
            host.send(targets, message)

    def _relay_forever(self, message: Envelope, now: float) -> None:
        """Infect-forever: a duplicate is relayed too, while its own hops last."""
        hops_left = min(message.hops_left, self._config.hops_max) - 1
        if hops_left <= 0 or self._config.mode == "pull":
            return
        fanout, _, group, _ = parse_gossip_body(message.body)
        targets = self._targets(copies_for(fanout, self._host.rng), message.sender, group)
        if targets:
            self.relayed += 1
            self._host.send(targets, message.relayed(self._host.node_id, hops_left))

    def _targets(self, count: int, came_from: int, group: str) -> list[Peer]:
        if count <= 0:
            return []
        peers = self._peers
        if not group:
            return peers.sample(count, came_from)
        chosen = peers.sample(count, came_from, Scope(group=group))
        if len(chosen) < count:  # too few of the group in sight: others carry it
            taken = {peer.node_id for peer in chosen}
            for peer in peers.sample(count, came_from):
                if len(chosen) >= count:
                    break
                if peer.node_id not in taken:
                    chosen.append(peer)
        return chosen

    # -- lazy push -----------------------------------------------------------

    def _on_ihave(self, message: Envelope, source: str, now: float) -> None:
        keys = parse_keys(message.body, "GOSSIP_IHAVE")
        if self._config.mode != "lazy":
            return  # announcements mean nothing to a node that does not ask
        announcer = Peer(message.sender, source)
        wanted = self._announced(keys, announcer, now)
        if wanted:  # the first announcer is asked at once, the others on timeouts
            for key in wanted:
                waiting = self._pending[key]
                waiting.append(waiting.pop(0))  # asked now; asked again after the others
            self.requested += len(wanted)
            body = [list(key) for key in wanted]
            self._host.send([announcer], new_envelope(self._host, Kind.GOSSIP_IWANT, body, now))

    def _on_iwant(self, message: Envelope, source: str, now: float) -> None:
        self._answer(parse_keys(message.body, "GOSSIP_IWANT"), Peer(message.sender, source), now)

    # -- missing payloads: announcements, requests, answers (lazy and tree) --

    #: After the first request, the next announcer is asked this share of the timeout later.
    _RETRY_SHARE = 1.0

    def _announced(self, keys: list[MessageKey], announcer: Peer, now: float) -> list[MessageKey]:
        """Note who announced which missing messages; returns the newly missing ones.

        A newly missing message gets a timer; each time it fires with the
        message still missing, ``_request`` asks the next announcer, round the
        list again until ``REQUESTS_MAX`` requests went out.
        """
        fresh: list[MessageKey] = []
        pending = self._pending
        for key in keys:
            if key in self._seen:
                continue
            waiting = pending.get(key)
            if waiting is not None:
                if len(waiting) < ANNOUNCERS_MAX:
                    waiting.append(announcer)
                continue
            if len(pending) >= PENDING_MAX:
                continue
            pending[key] = [announcer]
            fresh.append(key)
            self._host.call_at(now + self._config.request_timeout_s, self._request_timer(key))
        return fresh

    def _request_timer(self, key: MessageKey) -> Callable[[float], None]:
        requests = 0

        def expire(now: float) -> None:
            nonlocal requests
            waiting = self._pending.get(key)
            if waiting is None or key in self._seen:
                self._pending.pop(key, None)
                return
            if not waiting or requests >= REQUESTS_MAX:
                del self._pending[key]  # asked often enough: anti-entropy may still
                return
            announcer = waiting.pop(0)
            waiting.append(announcer)
            requests += 1
            self._request(key, announcer, now)
            self._host.call_at(now + self._config.request_timeout_s * self._RETRY_SHARE, expire)

        return expire

    def _request(self, key: MessageKey, announcer: Peer, now: float) -> None:
        """Ask ``announcer`` for the payload of ``key`` (lazy push: ``IWANT``)."""
        self.requested += 1
        self._host.send([announcer], new_envelope(self._host, Kind.GOSSIP_IWANT, [list(key)], now))

    def _answer(self, keys: list[MessageKey], requester: Peer, now: float) -> None:
        """Send ``requester`` the stored messages it asked for, with the hops they have left."""
        store = self._store
        if store is None:
            return
        host = self._host
        for key in keys[: self._config.reply_messages_max]:
            found = store.get(key, now)
            if found is not None:
                stored, hops_left = found
                host.send([requester], as_relayed(stored, host.node_id, hops_left))

    # -- pull and anti-entropy -----------------------------------------------

    def _pull(self, now: float) -> None:
        config = self._config
        try:
            since_us = max(0, int((now - config.pull_window_s) * 1e6))
            self._send_digest(config.pull_fanout, since_us, now)
        finally:
            self._host.call_at(now + config.pull_interval_s, self._pull)

    def _anti_entropy(self, now: float) -> None:
        config = self._config
        try:
            self._send_digest(1, 0, now)
        finally:
            self._host.call_at(now + config.anti_entropy_interval_s, self._anti_entropy)

    def _send_digest(self, count: int, since_us: int, now: float) -> None:
        peers = self._peers.sample(count)
        if not peers:
            return
        store = self._store
        assert store is not None  # every mode with a pull or repair timer keeps messages
        since_us, keys = store.newest_keys_since(since_us, self._config.digest_max, now)
        body = [since_us, [list(key) for key in keys]]
        self._host.send(peers, new_envelope(self._host, Kind.GOSSIP_DIGEST, body, now))

    def _on_digest(self, message: Envelope, source: str, now: float) -> None:
        body = message.body
        if type(body) is not list or len(body) != 2 or type(body[0]) is not int:
            raise MalformedMessage("GOSSIP_DIGEST body must be [since_us, keys]", field="body")
        since_us = body[0]
        if not 0 <= since_us <= UINT64_MAX:
            raise MalformedMessage("since_us out of range", field="body")
        known = set(parse_keys(body[1], "GOSSIP_DIGEST"))
        store = self._store
        if store is None:
            return
        missing = store.missing_from(known, since_us, self._config.reply_messages_max, now)
        if not missing:
            return
        requester = Peer(message.sender, source)
        host = self._host
        for stored, _ in missing:
            host.send([requester], as_relayed(stored, host.node_id, 0))


# -- body parsing --------------------------------------------------------------


def parse_gossip_body(body: object) -> tuple[float, object, str, bool]:
    """``[fanout, payload, group, forever]``, checked; raises ``MalformedMessage``."""
    if type(body) is not list or len(body) != 4:
        raise MalformedMessage(
            "GOSSIP body must be [fanout, payload, group, forever]", field="body"
        )
    fanout, payload, group, forever = body
    if not _is_fanout(fanout):
        raise MalformedMessage(f"fanout must be a number in 1..{FANOUT_MAX}", field="body")
    if type(group) is not str or len(group.encode()) > GROUP_BYTES_MAX:
        raise MalformedMessage(
            f"group must be text of at most {GROUP_BYTES_MAX} bytes", field="body"
        )
    if type(forever) is not bool:
        raise MalformedMessage("forever must be a bool", field="body")
    return float(fanout), payload, group, forever


def parse_keys(body: object, kind: str) -> list[MessageKey]:
    """A list of ``[origin, message_id]`` pairs; raises ``MalformedMessage``."""
    if type(body) is not list or len(body) > KEYS_MAX:
        raise MalformedMessage(f"{kind} must list at most {KEYS_MAX} message keys", field="body")
    keys: list[MessageKey] = []
    for item in body:
        if (
            type(item) is not list
            or len(item) != 2
            or type(item[0]) is not int
            or type(item[1]) is not int
            or not 0 < item[0] <= UINT64_MAX
            or not 0 <= item[1] <= UINT64_MAX
        ):
            raise MalformedMessage(f"{kind} keys must be [origin, message_id]", field="body")
        keys.append((item[0], item[1]))
    return keys


def check_group(group: str) -> None:
    if type(group) is not str or len(group.encode()) > GROUP_BYTES_MAX:
        raise LocalProtocolError(f"group must be text of at most {GROUP_BYTES_MAX} bytes")


def _is_fanout(value: object) -> bool:
    kind = type(value)
    return (kind is int or kind is float) and 1 <= value <= FANOUT_MAX  # type: ignore[operator]


def gossip_body(
    fanout: float, payload: object, *, group: str = "", forever: bool = False
) -> list[object]:
    """The ``GOSSIP`` body; an integral fanout travels as an integer (shorter, exact)."""
    return [int(fanout) if fanout == int(fanout) else fanout, payload, group, forever]


def as_relayed(message: Envelope, sender: int, hops_left: int) -> Envelope:
    """``message`` as this node passes it on, with at most the hops it had."""
    hops_left = min(hops_left, message.hops_left)
    if message.sender == sender and message.hops_left == hops_left:
        return message  # our own broadcast, as sent
    return message.relayed(sender, hops_left)
