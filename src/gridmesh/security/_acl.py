"""Role-based authorization: who may publish, subscribe, call and expose what.

Theory of operation
-------------------
Seed 001's Trust Manager lets no unauthorized peer call a service or receive
data; seed 004 separates *commandable* signals (a DR command, a tariff) from
*informational* ones (a reading). Every receiving node decides, for a
message whose origin it has authenticated (a certificate of the grid's CA
names the origin's ``role`` and ``node_id`` and carries its permissions),
whether that origin may do what the message does. Four actions are checked:

* ``publish`` a topic name (an event, a DR command, a tariff);
* ``subscribe`` a topic filter (what a node asks an Event Manager for);
* ``call`` a service by name (seed 001's service calls);
* ``expose`` a service (offer it to callers).

**Rules.** An ``AccessPolicy`` holds one ``AclRule`` per role: four lists of
MQTT topic filters (``gridmesh.topics``). Service names are matched as topic
names, split into levels by ``/`` (the PKI's convention), so ``meter/#``
allows ``meter/last_voltage`` and ``#`` (or LinkSmart's ``*``) every
service. A whole level ``{node_id}`` stands for the checked identity's node
id in decimal: ``MEASUREMENT/SENSOR/{node_id}/#`` lets meter 1234 publish
``MEASUREMENT/SENSOR/1234/PowerConsumption`` and nothing of meter 1235.

**Certificate grants.** A certificate carries its identity's permissions
(a ``Grant``: ``gridmesh.security._roles.Permissions`` is one), stored
expanded. *The role's rule is the ceiling*: with a grant, the identity may
do what the grant allows **and** the rule allows (the intersection; for a
subscription, both must cover the filter). A certificate can therefore
narrow what its role may do, never widen it: a CA that issues a meter a
certificate granting ``DR/COMMAND/#`` grants nothing, and a node's operator
can forbid what the CA allowed. Without a grant (an identity known some
other way) the rule alone decides, unless the rule says ``require_grant``.
The default rules are the CA's default permissions, so a certificate issued
with the defaults gets exactly them.

**Default deny.** An unknown role, an invalid topic, filter, service name,
node id or grant, and anything no rule allows are refused.

**Coverage.** Publishing checks a name: it must match a filter of the rule
and one of the grant. Subscribing checks a *filter* F, and F is allowed iff
every topic name F matches is matched by some allowed filter; we say the
allowed set *covers* F. ``covers`` decides this exactly for MQTT ``+``,
``#`` (which also matches its parent level) and the ``$`` rule (a filter
whose first level is a wildcard matches no name starting with ``$``), for a
*set* of filters, not only filter by filter: ``{"a", "a/+/#"}`` covers
``a/#`` though neither does alone (``_acl_filters`` has the walk). A filter
covered by the grant and by the rule is covered by their intersection (X ⊆
A ∩ B iff X ⊆ A and X ⊆ B), so no intersection is ever computed.

**Speed.** A rule is compiled once into a small trie whose ``{node_id}``
levels are matched against the identity's id at check time, so nothing is
compiled per node. A grant names its node's own id (``METER/1234/#``); it is
turned back into a template (levels equal to the node id become
``{node_id}``, which for that node means the same) and compiled once per
distinct template: the million meters of a DSO with default certificates
share one. The ``(node id, grant) -> compiled`` map holds at most
``grants_cached_max`` entries and the templates ``grant_templates_cached_max``,
each in two generations like ``protocols._seen.SeenCache``.

This module does no I/O and keeps no clock.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gridmesh.errors import InvalidTopic
from gridmesh.security._acl_filters import (
    NODE_ID_PLACEHOLDER,
    FilterSet,
    covers,
    name_levels,
    template_filter,
    template_text,
)
from gridmesh.security._errors import Unauthorized
from gridmesh.topics import validate_topic_filter
from gridmesh.wire import UINT64_MAX

__all__ = [
    "DEFAULT_ACL_RULES",
    "GRANT_ENTRIES_MAX",
    "NODE_ID_PLACEHOLDER",
    "ROLE_BYTES_MAX",
    "RULES_MAX",
    "RULE_ENTRIES_MAX",
    "SERVICE_NAME_BYTES_MAX",
    "AccessDenied",
    "AccessPolicy",
    "AclConfig",
    "AclRule",
    "Action",
    "Grant",
    "covers",
]

#: The longest role name: roles are short words (``dso``, ``meter``).
ROLE_BYTES_MAX = 32
#: Rules in one policy (one per role).
RULES_MAX = 64
#: Filters in one list of a rule.
RULE_ENTRIES_MAX = 64
#: Filters in one list of a certificate's grant (the PKI's PERMISSION_FILTERS_MAX).
GRANT_ENTRIES_MAX = 64
#: The longest service name; the same rule as ``gridmesh.protocols.rpc`` (kept
#: here so that ``security`` does not import ``protocols``).
SERVICE_NAME_BYTES_MAX = 255

_SERVICE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.:/-]*")
_ROLE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")
_ACTIONS = ("publish", "subscribe", "call", "expose")


class Action(StrEnum):
    """What an identity wants to do."""

    PUBLISH = "publish"
    SUBSCRIBE = "subscribe"
    CALL = "call"
    EXPOSE = "expose"


class Grant(Protocol):
    """The permissions a certificate carries: four lists of filters, hashable.

    ``gridmesh.security._roles.Permissions`` is one.
    """

    @property
    def publish(self) -> Sequence[str]: ...
    @property
    def subscribe(self) -> Sequence[str]: ...
    @property
    def call(self) -> Sequence[str]: ...
    @property
    def expose(self) -> Sequence[str]: ...


class AccessDenied(Unauthorized):
    """An identity may not do ``action`` on ``subject`` (a topic, filter or service).

    Structured fields: ``action``, ``role``, ``node_id``, ``subject``; ``reason``
    is ``"unauthorized"`` like every ``Unauthorized``.
    """

    def __init__(self, action: Action, role: str, node_id: int, subject: str) -> None:
        self.action = action
        self.role = role
        self.node_id = node_id
        self.subject = subject
        shown = subject if len(subject) <= 80 else subject[:77] + "..."
        kind = "service" if action in (Action.CALL, Action.EXPOSE) else "topic"
        super().__init__(f"{role} {node_id} may not {action} {shown!r}", field=kind)


# --- compiled rules and grants -------------------------------------------------------


def _check_filters(entries: Sequence[str]) -> tuple[str, ...]:
    """Rule entries validated and normalized (``a/*`` is ``a/#``), duplicates dropped."""
    if len(entries) > RULE_ENTRIES_MAX:
        raise ValueError(f"more than RULE_ENTRIES_MAX ({RULE_ENTRIES_MAX}) topic filters")
    return tuple(dict.fromkeys(template_text(template_filter(entry)) for entry in entries))


@dataclass(frozen=True, slots=True)
class _Permissions:
    """One rule or grant, compiled."""

    publish: FilterSet
    subscribe: FilterSet
    call: FilterSet
    expose: FilterSet


def _compile(lists: Sequence[Sequence[str]]) -> _Permissions:
    """The four lists (publish, subscribe, call, expose) compiled; ``ValueError`` if invalid."""
    publish, subscribe, call, expose = (FilterSet(map(template_filter, one)) for one in lists)
    return _Permissions(publish, subscribe, call, expose)


_DENY_ALL = _compile(((), (), (), ()))


# --- rules and the configuration ------------------------------------------------------


class AclRule(BaseModel):
    """What one role may do: a ``[[security.acl.rules]]`` table (see docs/ACCESS.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: str = Field(min_length=1, max_length=ROLE_BYTES_MAX, description="e.g. dso, meter")
    publish: tuple[str, ...] = Field(default=(), description="topic filters it may publish to")
    subscribe: tuple[str, ...] = Field(default=(), description="topic filters it may subscribe")
    call: tuple[str, ...] = Field(default=(), description="service filters it may call")
    expose: tuple[str, ...] = Field(default=(), description="service filters it may offer")
    require_grant: bool = Field(
        default=False,
        description="refuse an identity whose certificate carries no permissions",
    )

    @field_validator("role")
    @classmethod
    def _role_is_a_word(cls, role: str) -> str:
        if _ROLE.fullmatch(role) is None:
            raise ValueError('a role is a letter, then letters, digits or "_.-"')
        return str.__str__(role)

    @field_validator("publish", "subscribe", "call", "expose")
    @classmethod
    def _filters(cls, entries: tuple[str, ...]) -> tuple[str, ...]:
        return _check_filters(entries)


_OWN_MEASUREMENTS = "MEASUREMENT/SENSOR/{node_id}/#"
_SIGNALS = ("TARIFF/#", "DR/COMMAND/#")  # what every field device listens to

#: The default policy: each role's ceiling is the CA's default permissions for
#: it (``_roles.DEFAULT_PERMISSIONS``; a test keeps the two equal). Tariffs and
#: DR commands come only from DSOs and aggregators; every other node publishes
#: only under its own id. docs/ACCESS.md has it as a table.
DEFAULT_ACL_RULES: tuple[AclRule, ...] = (
    AclRule(
        role="dso",
        publish=("TARIFF/#", "DR/COMMAND/#", "DSO/{node_id}/#"),
        subscribe=("#",),
        call=("#",),
        expose=("dso/#",),
    ),
    AclRule(
        role="aggregator",
        publish=("TARIFF/#", "DR/COMMAND/#", "AGGREGATE/{node_id}/#", "AGGREGATOR/{node_id}/#"),
        subscribe=("TARIFF/#", "DR/#", "MEASUREMENT/#", "METER/#", "EMD/#", "AGGREGATE/#"),
        call=("substation/#", "dtc/#", "meter/#", "emd/#"),
        expose=("aggregator/#",),
    ),
    AclRule(
        role="substation",
        publish=(_OWN_MEASUREMENTS, "SUBSTATION/{node_id}/#", "AGGREGATE/{node_id}/#"),
        subscribe=(*_SIGNALS, "MEASUREMENT/#", "DTC/#", "AGGREGATE/#"),
        call=("dtc/#", "meter/#"),
        expose=("substation/#",),
    ),
    AclRule(
        role="dtc",
        publish=(_OWN_MEASUREMENTS, "DTC/{node_id}/#", "AGGREGATE/{node_id}/#"),
        subscribe=(*_SIGNALS, "MEASUREMENT/#", "METER/#"),
        call=("meter/#",),
        expose=("dtc/#",),
    ),
    AclRule(
        role="meter",
        publish=(_OWN_MEASUREMENTS, "METER/{node_id}/#", "DR/REPORT/{node_id}/#"),
        subscribe=_SIGNALS,
        expose=("meter/#",),
    ),
    AclRule(
        role="emd",
        publish=(_OWN_MEASUREMENTS, "EMD/{node_id}/#", "DR/REPORT/{node_id}/#"),
        subscribe=_SIGNALS,
        call=("device/#", "meter/#", "emd/#"),  # ReDy governance units ask each other
        expose=("emd/#",),
    ),
    AclRule(
        role="device",
        publish=(_OWN_MEASUREMENTS, "DEVICE/{node_id}/#"),
        subscribe=_SIGNALS,
        expose=("device/#",),
    ),
)


class AclConfig(BaseModel):
    """The access policy: one rule per role (``[[security.acl.rules]]``); see docs/ACCESS.md."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rules: tuple[AclRule, ...] = Field(
        default=DEFAULT_ACL_RULES,
        max_length=RULES_MAX,
        description="replaces the default table whole; a role without a rule may do nothing",
    )
    grants_cached_max: int = Field(
        default=65_536,
        ge=2,
        le=100_000_000,
        description="(node id, certificate grant) pairs kept compiled: the identities in use",
    )
    grant_templates_cached_max: int = Field(
        default=1024,
        ge=2,
        le=1_000_000,
        description="distinct grants, node ids taken out, kept compiled",
    )

    @model_validator(mode="after")
    def _one_rule_per_role(self) -> AclConfig:
        roles = [rule.role for rule in self.rules]
        twice = sorted({role for role in roles if roles.count(role) > 1})
        if twice:
            raise ValueError(f"role {twice[0]!r} has two rules: merge them into one")
        return self


# --- the policy -----------------------------------------------------------------------

_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


class _Generations(Generic[_K, _V]):
    """A map of at most ``capacity`` entries in two generations (as SeenCache): O(1)."""

    __slots__ = ("_current", "_generation_max", "_previous")

    def __init__(self, capacity: int) -> None:
        self._generation_max = max(1, capacity // 2)
        self._current: dict[_K, _V] = {}
        self._previous: dict[_K, _V] = {}

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)

    def get(self, key: _K) -> _V | None:
        value = self._current.get(key)
        if value is None:
            value = self._previous.get(key)
            if value is not None:
                self.put(key, value)
        return value

    def put(self, key: _K, value: _V) -> None:
        if len(self._current) >= self._generation_max:
            self._previous = self._current
            self._current = {}
        self._current[key] = value


@dataclass(frozen=True, slots=True)
class _Rule:
    permissions: _Permissions
    require_grant: bool


def _templatized(entries: object, node_text: str) -> tuple[str, ...] | None:
    """A grant's list with levels equal to the node id made ``{node_id}``; None if not a list."""
    if type(entries) is not tuple and type(entries) is not list:
        return None
    if len(entries) > GRANT_ENTRIES_MAX:
        return None
    out = []
    for entry in entries:
        if type(entry) is not str:
            return None
        if node_text in entry:
            levels = entry.split("/")
            out.append("/".join(NODE_ID_PLACEHOLDER if one == node_text else one for one in levels))
        else:
            out.append(entry)
    return tuple(out)


class AccessPolicy:
    """Decides what an authenticated identity (role, node id, certificate grant) may do."""

    __slots__ = ("_grants", "_rules", "_templates", "grants_refused")

    def __init__(self, config: AclConfig | None = None) -> None:
        config = AclConfig() if config is None else config
        self._rules: dict[str, _Rule] = {
            rule.role: _Rule(
                _compile((rule.publish, rule.subscribe, rule.call, rule.expose)),
                rule.require_grant,
            )
            for rule in config.rules
        }
        self._grants: _Generations[tuple[int, Grant], _Permissions] = _Generations(
            config.grants_cached_max
        )
        self._templates: _Generations[tuple[tuple[str, ...], ...], _Permissions] = _Generations(
            config.grant_templates_cached_max
        )
        #: Grants that were not four lists of at most GRANT_ENTRIES_MAX valid filters
        #: (counted when compiled; such an identity may do nothing).
        self.grants_refused = 0

    @property
    def roles(self) -> frozenset[str]:
        """The roles that have a rule."""
        return frozenset(self._rules)

    def _granted(self, node_id: int, node_text: str, grant: Grant) -> _Permissions:
        key = (node_id, grant)
        try:
            compiled = self._grants.get(key)
        except TypeError:  # an unhashable grant
            self.grants_refused += 1
            return _DENY_ALL
        if compiled is None:
            compiled = self._compile_grant(grant, node_text)
            self._grants.put(key, compiled)
        return compiled

    def _compile_grant(self, grant: Grant, node_text: str) -> _Permissions:
        lists = []
        for action in _ACTIONS:
            entries = _templatized(getattr(grant, action, None), node_text)
            if entries is None:
                self.grants_refused += 1
                return _DENY_ALL
            lists.append(entries)
        template = tuple(lists)
        compiled = self._templates.get(template)
        if compiled is None:
            try:
                compiled = _compile(template)
            except ValueError:
                self.grants_refused += 1
                compiled = _DENY_ALL
            self._templates.put(template, compiled)
        return compiled

    def _parts(
        self, role: str, node_id: int, grant: Grant | None
    ) -> tuple[_Permissions, _Permissions | None, str] | None:
        """The rule, the compiled grant and the node id as text; None: deny."""
        rule = self._rules.get(role) if isinstance(role, str) else None
        if rule is None or type(node_id) is not int or not 0 < node_id <= UINT64_MAX:
            return None
        node_text = str(node_id)
        if grant is None:
            return None if rule.require_grant else (rule.permissions, None, node_text)
        return rule.permissions, self._granted(node_id, node_text, grant), node_text

    def may_publish(self, role: str, node_id: int, topic: str, grant: Grant | None = None) -> bool:
        """Whether the identity may publish to the topic name ``topic``."""
        parts = self._parts(role, node_id, grant)
        if parts is None or type(topic) is not str:
            return False
        levels = name_levels(topic)
        if levels is None:
            return False
        rule, granted, node_text = parts
        return rule.publish.matches(levels, node_text) and (
            granted is None or granted.publish.matches(levels, node_text)
        )

    def may_subscribe(
        self, role: str, node_id: int, topic_filter: str, grant: Grant | None = None
    ) -> bool:
        """Whether the identity may subscribe to ``topic_filter``: the allowed filters cover it."""
        parts = self._parts(role, node_id, grant)
        if parts is None:
            return False
        try:
            levels = tuple(validate_topic_filter(topic_filter).split("/"))
        except InvalidTopic:
            return False
        rule, granted, node_text = parts
        return rule.subscribe.covers(levels, node_text) and (
            granted is None or granted.subscribe.covers(levels, node_text)
        )

    def _may_service(
        self, action: Action, role: str, node_id: int, service: str, grant: Grant | None
    ) -> bool:
        parts = self._parts(role, node_id, grant)
        if (
            parts is None
            or type(service) is not str
            or len(service) > SERVICE_NAME_BYTES_MAX
            or _SERVICE_NAME.fullmatch(service) is None
        ):
            return False
        levels = name_levels(service)
        assert levels is not None  # a service name is a valid topic name
        rule, granted, node_text = parts
        if action is Action.CALL:
            return rule.call.matches(levels, node_text) and (
                granted is None or granted.call.matches(levels, node_text)
            )
        return rule.expose.matches(levels, node_text) and (
            granted is None or granted.expose.matches(levels, node_text)
        )

    def may_call(self, role: str, node_id: int, service: str, grant: Grant | None = None) -> bool:
        """Whether the identity may call the service named ``service``."""
        return self._may_service(Action.CALL, role, node_id, service, grant)

    def may_expose(self, role: str, node_id: int, service: str, grant: Grant | None = None) -> bool:
        """Whether the identity may offer the service named ``service``."""
        return self._may_service(Action.EXPOSE, role, node_id, service, grant)

    def check_publish(
        self, role: str, node_id: int, topic: str, grant: Grant | None = None
    ) -> None:
        """``AccessDenied`` (an ``Unauthorized``) unless ``may_publish``."""
        if not self.may_publish(role, node_id, topic, grant):
            raise AccessDenied(Action.PUBLISH, _plain(role), node_id, _shown(topic))

    def check_subscribe(
        self, role: str, node_id: int, topic_filter: str, grant: Grant | None = None
    ) -> None:
        """``AccessDenied`` (an ``Unauthorized``) unless ``may_subscribe``."""
        if not self.may_subscribe(role, node_id, topic_filter, grant):
            raise AccessDenied(Action.SUBSCRIBE, _plain(role), node_id, _shown(topic_filter))

    def check_call(self, role: str, node_id: int, service: str, grant: Grant | None = None) -> None:
        """``AccessDenied`` (an ``Unauthorized``) unless ``may_call``."""
        if not self.may_call(role, node_id, service, grant):
            raise AccessDenied(Action.CALL, _plain(role), node_id, _shown(service))

    def check_expose(
        self, role: str, node_id: int, service: str, grant: Grant | None = None
    ) -> None:
        """``AccessDenied`` (an ``Unauthorized``) unless ``may_expose``."""
        if not self.may_expose(role, node_id, service, grant):
            raise AccessDenied(Action.EXPOSE, _plain(role), node_id, _shown(service))


def _plain(role: object) -> str:
    """A role as plain text for an error (a StrEnum member's value)."""
    return str.__str__(role) if isinstance(role, str) else repr(role)[:ROLE_BYTES_MAX]


def _shown(subject: object) -> str:
    """A subject for an error: text as given (bounded), anything else as its repr."""
    text = subject if type(subject) is str else repr(subject)
    return text[:1024]
