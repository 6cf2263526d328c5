"""The MQTT bridge's mapping: topics and payloads, both ways. No I/O, no clock.

A topic maps by rule: the topic must start with the rule's ``strip`` (else it
is *unmapped*), which is cut off, and the rule's ``prefix`` is put in front.
The result is then checked as a topic name (gridmesh's rules are MQTT's, so
one check serves both sides). When several rules' filters match a topic, the
first rule in the configuration maps it and the others do not: one message
in, at most one message out.

Payloads: see ``decode_inbound`` and ``encode_outbound``, and docs/BRIDGES.md.
A payload that cannot be mapped raises ``Unmappable`` with a reason, which the
bridge counts; nothing here raises anything else for bad input.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from gridmesh.bridges._mqtt_config import InboundRule, OutboundRule
from gridmesh.errors import InvalidTopic
from gridmesh.protocols.pubsub import Event
from gridmesh.topics import TopicTrie, validate_topic_name

__all__ = [
    "Inbound",
    "RuleMatcher",
    "Unmappable",
    "decode_inbound",
    "encode_outbound",
    "map_topic",
]


class Unmappable(Exception):
    """A message the bridge drops; ``reason`` is the counter it goes to."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Inbound:
    """What an MQTT payload becomes: an event's value, unit and (maybe) time."""

    value: object
    unit: str
    time_us: int | None = None


class RuleMatcher:
    """Which rule, first in configuration order, a topic name falls under."""

    def __init__(self, filters: Sequence[str]) -> None:
        self._trie: TopicTrie[int] = TopicTrie()
        for index, text in enumerate(filters):
            self._trie.add(text, index)

    def first(self, topic: str) -> int | None:
        """The index of the first rule whose filter matches ``topic``; ``None`` if none.

        Raises ``Unmappable("invalid_topic")`` for a name gridmesh refuses.
        """
        try:
            indices = self._trie.match(topic)
        except InvalidTopic:
            raise Unmappable("invalid_topic") from None
        return min(indices) if indices else None


def map_topic(topic: str, *, strip: str, prefix: str) -> str:
    """``prefix`` + ``topic`` less ``strip``, a valid topic name; else ``Unmappable``."""
    if not topic.startswith(strip):
        raise Unmappable("unmapped")
    mapped = prefix + topic[len(strip) :]
    try:
        return validate_topic_name(mapped)
    except InvalidTopic:
        raise Unmappable("invalid_topic") from None


def decode_inbound(payload: bytes, rule: InboundRule) -> Inbound:
    """An MQTT payload as an event's value, by the rule's ``payload`` format.

    * ``json``: the payload parsed as JSON. A JSON object with a ``"value"``
      member gives that value; its ``"unit"`` (text) replaces the rule's unit
      and its ``"time_us"`` (a non-negative integer) becomes the event's time.
      Any other JSON (a number, a list, an object without ``"value"``) is the
      value whole. Not JSON, or not UTF-8: ``Unmappable("bad_payload")``.
    * ``text``: the payload as UTF-8 text; ``Unmappable("bad_payload")`` if not.
    * ``bytes``: the payload as it is.

    Whether the value fits an event (64-bit integers, ``event_bytes_max``) is
    the publisher's check, which the bridge counts as ``bad_value``.
    """
    if rule.payload == "bytes":
        return Inbound(bytes(payload), rule.unit)
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise Unmappable("bad_payload") from None
    if rule.payload == "text":
        return Inbound(text, rule.unit)
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
        raise Unmappable("bad_payload") from None
    if isinstance(document, dict) and "value" in document:
        unit = document.get("unit", rule.unit)
        time_us = document.get("time_us")
        if not isinstance(unit, str):
            raise Unmappable("bad_payload")
        if time_us is not None and not (type(time_us) is int and time_us >= 0):
            raise Unmappable("bad_payload")
        return Inbound(document["value"], unit, time_us)
    return Inbound(document, rule.unit)


def encode_outbound(event: Event, rule: OutboundRule) -> bytes:
    """An event as an MQTT payload, by the rule's ``payload`` format.

    * ``json``: ``{"value", "unit", "time_us", "source", "seq", "event_id"}``;
    * ``value``: the value alone as JSON, except a ``bytes`` value, which goes
      as it is (the counterpart of an inbound ``bytes`` rule).

    A value JSON cannot carry (bytes inside ``json``, NaN or infinity) raises
    ``Unmappable("unencodable")``.
    """
    if rule.payload == "value":
        if isinstance(event.value, bytes):
            return event.value
        document: object = event.value
    else:
        document = {
            "value": event.value,
            "unit": event.unit,
            "time_us": event.time_us,
            "source": event.source,
            "seq": event.seq,
            "event_id": event.event_id,
        }
    try:
        return json.dumps(document, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError, RecursionError):
        raise Unmappable("unencodable") from None
