"""Grid roles and the permissions a node certificate grants.

Theory of operation
-------------------
Seed 001's Trust Manager admits only peers holding a certificate of the
grid's authority, and seed 004 asks for modular services that a device can
filter cheaply. A gridmesh certificate therefore says not only *who* a node
is (its node id) but *what it is* (its ``Role``, one of the actors of seeds
000, 001 and 003) and *what it may do* (its ``Permissions``): the topics it
may publish to and subscribe to, and the services it may call and expose.

Every permission is an MQTT topic filter (``gridmesh.topics``): ``+`` is one
level, ``#`` the parent level and all below, a last level ``*`` reads as
``#``. Service names (``meter/last_voltage``, ``dtc.setpoint``) are split
into levels by ``/`` like topics, so ``meter/#`` grants every ``meter/...``
service. A level of a filter may be the placeholder ``{node_id}``, which
``expand`` replaces by the certificate's node id in decimal: one table of
defaults (``DEFAULT_PERMISSIONS``) serves every meter, and each meter may
publish only under its own id. The placeholder is always a whole level (as
in ``gridmesh.security._acl``'s rules) and no other ``{`` or ``}`` is
allowed, so a typo such as ``{nodeid}`` is refused instead of becoming a
literal level.

Rules that never bend:

* a permission list holds at most ``PERMISSION_FILTERS_MAX`` filters, each a
  valid filter once expanded; duplicates are dropped, order is kept;
* a request is allowed only if one granted filter covers it: a topic name
  is matched (``topics.matches``), a requested *filter* must be covered
  whole (every name it matches is matched by the grant), so a meter granted
  ``TARIFF/#`` may subscribe to ``TARIFF/RTP/+`` but not to ``#``.

This module does no I/O and keeps no clock.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from gridmesh.errors import InvalidTopic, LocalProtocolError
from gridmesh.topics import matches, validate_topic_filter, validate_topic_name

__all__ = [
    "DEFAULT_PERMISSIONS",
    "NODE_ID_MAX",
    "NODE_ID_PLACEHOLDER",
    "PERMISSION_FILTERS_MAX",
    "Permissions",
    "Role",
    "default_permissions",
]

#: Node ids are unsigned 64-bit integers; 0 means "no node" on the wire.
NODE_ID_MAX = 2**64 - 1
#: Replaced by the certificate's node id (decimal) in every permission filter.
NODE_ID_PLACEHOLDER = "{node_id}"
#: Most filters in one permission list (publish, subscribe, call or expose).
PERMISSION_FILTERS_MAX = 64

_KINDS = ("publish", "subscribe", "call", "expose")


class Role(enum.StrEnum):
    """What a node is in the grid (seeds 000, 001 and 003)."""

    DSO = "dso"  # the utility / DSO information system
    AGGREGATOR = "aggregator"  # a demand-response aggregator
    SUBSTATION = "substation"
    DTC = "dtc"  # a distribution transformer controller
    METER = "meter"  # a smart meter
    EMD = "emd"  # a home energy management device
    DEVICE = "device"  # an appliance or sensor behind an EMD


def _checked_node_id(node_id: object) -> int:
    if type(node_id) is not int or not 1 <= node_id <= NODE_ID_MAX:
        raise LocalProtocolError(f"a node id is an integer in 1..2**64-1; got {node_id!r}")
    return node_id


def _checked_filter(text: object, kind: str) -> str:
    """``text`` normalized as a filter that may hold ``{node_id}``; else ``InvalidTopic``."""
    normalized = validate_topic_filter(text)
    if ("{" in normalized or "}" in normalized) and any(
        ("{" in level or "}" in level) and level != NODE_ID_PLACEHOLDER
        for level in normalized.split("/")
    ):
        raise InvalidTopic(
            normalized,
            f"'{{' and '}}' only in a whole level {NODE_ID_PLACEHOLDER} (the placeholder)",
            kind=kind,
        )
    return normalized


def _checked_list(kind: str, filters: object) -> tuple[str, ...]:
    if isinstance(filters, str) or not isinstance(filters, Iterable):
        raise LocalProtocolError(f"{kind} permissions are a list of topic filters; got {filters!r}")
    items = list(filters)
    if len(items) > PERMISSION_FILTERS_MAX:
        raise LocalProtocolError(
            f"{kind} permissions hold {len(items)} filters; at most "
            f"PERMISSION_FILTERS_MAX ({PERMISSION_FILTERS_MAX})"
        )
    return tuple(dict.fromkeys(_checked_filter(item, "filter") for item in items))


def _levels(text: str) -> list[str]:
    return text.split("/")


def _covers(granted: list[str], requested: list[str]) -> bool:
    """Whether every name the filter ``requested`` matches is matched by ``granted``.

    Both are valid, normalized filters split into levels.
    """
    for depth, level in enumerate(granted):
        if level == "#":
            # A first-level wildcard never matches '$' names (MQTT 4.7.2).
            return not (depth == 0 and requested[0].startswith("$"))
        if depth == len(requested):
            return False  # requested ends here; granted needs more levels
        wanted = requested[depth]
        if wanted == "#":
            return False  # only '#' covers '#'
        if level == "+":
            if depth == 0 and wanted.startswith("$"):
                return False
            continue
        if level != wanted:
            return False
    return len(requested) == len(granted)


@dataclass(frozen=True, slots=True)
class Permissions:
    """Topic and service filters a certificate allows, validated and normalized.

    ``publish`` and ``subscribe`` are topic filters; ``call`` and ``expose``
    filter service names. Lists are tuples; duplicates are dropped.
    """

    publish: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()
    call: tuple[str, ...] = ()
    expose: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for kind in _KINDS:
            object.__setattr__(self, kind, _checked_list(kind, getattr(self, kind)))

    @property
    def has_placeholder(self) -> bool:
        """Whether a filter still holds ``{node_id}`` (a template, not one node's grant)."""
        return any(NODE_ID_PLACEHOLDER in item for kind in _KINDS for item in getattr(self, kind))

    def expand(self, node_id: int) -> Permissions:
        """These permissions with ``{node_id}`` replaced by ``node_id`` in decimal."""
        text = str(_checked_node_id(node_id))
        if not self.has_placeholder:
            return self
        return Permissions(
            *(
                tuple(item.replace(NODE_ID_PLACEHOLDER, text) for item in getattr(self, kind))
                for kind in _KINDS
            )
        )

    def allows_publish(self, topic: str) -> bool:
        """Whether an event on ``topic`` may be published; ``InvalidTopic`` if not a name."""
        name = validate_topic_name(topic)
        return any(matches(granted, name) for granted in self.publish)

    def allows_subscribe(self, topic_filter: str) -> bool:
        """Whether a subscription to ``topic_filter`` is covered by one granted filter.

        ``InvalidTopic`` if ``topic_filter`` is not a valid filter.
        """
        requested = _levels(validate_topic_filter(topic_filter))
        return any(_covers(_levels(granted), requested) for granted in self.subscribe)

    def allows_call(self, service: str) -> bool:
        """Whether the service ``service`` may be called."""
        return any(matches(granted, validate_topic_name(service)) for granted in self.call)

    def allows_expose(self, service: str) -> bool:
        """Whether the service ``service`` may be exposed."""
        return any(matches(granted, validate_topic_name(service)) for granted in self.expose)

    def to_plain(self) -> dict[str, list[str]]:
        """``{"publish": [...], "subscribe": [...], "call": [...], "expose": [...]}``."""
        return {kind: list(getattr(self, kind)) for kind in _KINDS}

    @classmethod
    def from_plain(cls, value: object) -> Permissions:
        """The inverse of ``to_plain``: exactly the four keys, each a list of text.

        Raises ``LocalProtocolError`` (``InvalidTopic`` for a bad filter).
        """
        if type(value) is not dict or set(value) != set(_KINDS):
            raise LocalProtocolError(f"permissions are a map with exactly the keys {_KINDS}")
        lists = [value[kind] for kind in _KINDS]
        if any(type(items) is not list for items in lists):
            raise LocalProtocolError("each permission is a list of topic filters")
        return cls(*lists)

    def replaced(self, **lists: Iterable[str] | None) -> Permissions:
        """A copy with the lists given (not ``None``) replaced, e.g. ``publish=[...]``."""
        unknown = set(lists) - set(_KINDS)
        if unknown:
            raise LocalProtocolError(f"no permission list named {sorted(unknown)}")
        chosen: list[Any] = [  # checked (a str refused, not split) by the constructor
            getattr(self, kind) if lists.get(kind) is None else lists[kind] for kind in _KINDS
        ]
        return Permissions(*chosen)


def _template(
    publish: tuple[str, ...],
    subscribe: tuple[str, ...],
    call: tuple[str, ...] = (),
    expose: tuple[str, ...] = (),
) -> Permissions:
    return Permissions(publish, subscribe, call, expose)


_OWN_MEASUREMENTS = "MEASUREMENT/SENSOR/{node_id}/#"
_SIGNALS = ("TARIFF/#", "DR/COMMAND/#")  # what every field device listens to

#: Each role's permissions before ``{node_id}`` is expanded (docs/PKI.md).
#: Commandable signals (tariffs, DR commands) come only from the DSO and the
#: aggregators; every other node publishes only under its own id.
DEFAULT_PERMISSIONS: Mapping[Role, Permissions] = MappingProxyType(
    {
        Role.DSO: _template(
            publish=("TARIFF/#", "DR/COMMAND/#", "DSO/{node_id}/#"),
            subscribe=("#",),
            call=("#",),
            expose=("dso/#",),
        ),
        Role.AGGREGATOR: _template(
            publish=("TARIFF/#", "DR/COMMAND/#", "AGGREGATE/{node_id}/#", "AGGREGATOR/{node_id}/#"),
            subscribe=("TARIFF/#", "DR/#", "MEASUREMENT/#", "METER/#", "EMD/#", "AGGREGATE/#"),
            call=("substation/#", "dtc/#", "meter/#", "emd/#"),
            expose=("aggregator/#",),
        ),
        Role.SUBSTATION: _template(
            publish=(_OWN_MEASUREMENTS, "SUBSTATION/{node_id}/#", "AGGREGATE/{node_id}/#"),
            subscribe=(*_SIGNALS, "MEASUREMENT/#", "DTC/#", "AGGREGATE/#"),
            call=("dtc/#", "meter/#"),
            expose=("substation/#",),
        ),
        Role.DTC: _template(
            publish=(_OWN_MEASUREMENTS, "DTC/{node_id}/#", "AGGREGATE/{node_id}/#"),
            subscribe=(*_SIGNALS, "MEASUREMENT/#", "METER/#"),
            call=("meter/#",),
            expose=("dtc/#",),
        ),
        Role.METER: _template(
            publish=(_OWN_MEASUREMENTS, "METER/{node_id}/#", "DR/REPORT/{node_id}/#"),
            subscribe=_SIGNALS,
            expose=("meter/#",),
        ),
        Role.EMD: _template(
            publish=(_OWN_MEASUREMENTS, "EMD/{node_id}/#", "DR/REPORT/{node_id}/#"),
            subscribe=_SIGNALS,
            call=("device/#", "meter/#", "emd/#"),  # ReDy governance units ask each other
            expose=("emd/#",),
        ),
        Role.DEVICE: _template(
            publish=(_OWN_MEASUREMENTS, "DEVICE/{node_id}/#"),
            subscribe=_SIGNALS,
            expose=("device/#",),
        ),
    }
)


def default_permissions(role: Role, node_id: int) -> Permissions:
    """``role``'s default permissions with ``{node_id}`` expanded to ``node_id``."""
    return DEFAULT_PERMISSIONS[Role(role)].expand(node_id)
