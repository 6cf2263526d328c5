"""Role-based authorization (gridmesh.security._acl): rules, grants, filter coverage."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gridmesh.config import parse_toml, validate_model
from gridmesh.errors import ConfigError, InvalidTopic, RemoteProtocolError
from gridmesh.security._acl import (
    DEFAULT_ACL_RULES,
    GRANT_ENTRIES_MAX,
    AccessDenied,
    AccessPolicy,
    AclConfig,
    AclRule,
    Action,
    covers,
)
from gridmesh.security._errors import Unauthorized
from gridmesh.security._roles import DEFAULT_PERMISSIONS, Role, default_permissions
from gridmesh.topics import TopicTrie, matches

DEFAULT = AccessPolicy()
ROLES = ("dso", "aggregator", "substation", "dtc", "meter", "emd", "device")


@dataclass(frozen=True)
class Perms:
    """A certificate's permissions, as the PKI hands them over (already expanded)."""

    publish: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()
    call: tuple[str, ...] = ()
    expose: tuple[str, ...] = ()


# --- the default policy ------------------------------------------------------------------

PUBLISH_TABLE = [
    # (role, node_id, topic, allowed)
    ("dso", 1, "TARIFF/RTP/price", True),
    ("dso", 1, "DR/COMMAND/region-7/EV", True),
    ("dso", 1, "DSO/1/status", True),
    ("aggregator", 2, "DR/COMMAND/region-7/EV", True),
    ("aggregator", 2, "AGGREGATE/2/night-demand", True),
    ("aggregator", 2, "AGGREGATE/3/night-demand", False),
    ("substation", 3, "DR/COMMAND/region-7/EV", False),
    ("substation", 3, "TARIFF/RTP/price", False),
    ("dtc", 4, "DR/COMMAND/region-7/EV", False),
    ("meter", 1234, "DR/COMMAND/region-7/EV", False),
    ("emd", 5, "DR/COMMAND/x", False),
    ("device", 6, "TARIFF/RTP/price", False),
    ("meter", 1234, "MEASUREMENT/SENSOR/1234/PowerConsumption", True),
    ("meter", 1234, "MEASUREMENT/SENSOR/1234", True),  # "#" matches its parent level
    ("meter", 1234, "MEASUREMENT/SENSOR/1235/PowerConsumption", False),
    ("meter", 1234, "MEASUREMENT/SENSOR/12345/PowerConsumption", False),
    ("meter", 1234, "MEASUREMENT/SENSOR/{node_id}/PowerConsumption", False),
    ("meter", 1234, "MEASUREMENT/SMARTMETER/1234/DemandResponse", False),
    ("meter", 1234, "METER/1234/tamper", True),
    ("meter", 1234, "DR/REPORT/1234/opt-out", True),
    ("meter", 1234, "DR/REPORT/99/opt-out", False),
    ("substation", 3, "MEASUREMENT/SENSOR/3/load", True),
    ("substation", 3, "SUBSTATION/3/breaker", True),
    ("substation", 3, "SUBSTATION/4/breaker", False),
    ("dtc", 4, "DTC/4/voltage", True),
    ("emd", 5, "EMD/5/mode", True),
    ("device", 6, "DEVICE/6/on", True),
    ("device", 6, "DR/REPORT/6/done", False),
    ("dso", 1, "MEASUREMENT/SENSOR/1234/PowerConsumption", False),  # no forged readings
    ("nobody", 1, "TARIFF/RTP/price", False),  # a role without a rule may do nothing
    ("dso", 1, "$SYS/uptime", False),
]


@pytest.mark.parametrize(("role", "node_id", "topic", "allowed"), PUBLISH_TABLE)
def test_default_policy_publish(role: str, node_id: int, topic: str, allowed: bool) -> None:
    assert DEFAULT.may_publish(role, node_id, topic) is allowed


SUBSCRIBE_TABLE = [
    ("dso", 1, "#", True),
    ("dso", 1, "MEASUREMENT/+/+/PowerConsumption", True),
    ("dso", 1, "$SYS/#", False),  # "#" does not cover names starting with "$"
    ("aggregator", 2, "MEASUREMENT/#", True),
    ("aggregator", 2, "#", False),
    ("aggregator", 2, "DTC/#", False),
    ("substation", 3, "DTC/+/voltage", True),
    *[(role, 9, "TARIFF/#", True) for role in ROLES],
    *[(role, 9, "TARIFF/RTP/+", True) for role in ROLES],
    *[(role, 9, "DR/COMMAND/#", True) for role in ROLES],
    ("meter", 9, "MEASUREMENT/#", False),  # privacy: a meter reads no one's readings
    ("meter", 9, "MEASUREMENT/SENSOR/9/#", False),
    ("meter", 9, "+/RTP/price", False),  # "+" also reaches MEASUREMENT/RTP/price
    ("meter", 9, "DR/#", False),  # DR/REPORT is not the meter's to read
    ("emd", 9, "#", False),
    ("device", 9, "TARIFF/*", True),  # LinkSmart's "*" is "#"
]


@pytest.mark.parametrize(("role", "node_id", "topic_filter", "allowed"), SUBSCRIBE_TABLE)
def test_default_policy_subscribe(
    role: str, node_id: int, topic_filter: str, allowed: bool
) -> None:
    assert DEFAULT.may_subscribe(role, node_id, topic_filter) is allowed


SERVICE_TABLE = [
    # (role, action, service, allowed)
    ("dso", Action.CALL, "meter/dr_activate", True),
    ("dso", Action.CALL, "dtc.setpoint", True),  # "#" matches any service
    ("aggregator", Action.CALL, "meter/dr_activate", True),
    ("aggregator", Action.CALL, "dso/tariff_table", False),
    ("substation", Action.CALL, "dtc/last_voltage", True),
    ("dtc", Action.CALL, "meter/last_voltage", True),
    ("dtc", Action.CALL, "substation/breaker", False),
    ("meter", Action.CALL, "meter/last_voltage", False),
    ("emd", Action.CALL, "device/on", True),
    ("device", Action.CALL, "device/on", False),
    ("meter", Action.EXPOSE, "meter/last_voltage", True),
    ("meter", Action.EXPOSE, "dso/anything", False),
    ("substation", Action.EXPOSE, "substation/load", True),
    ("dso", Action.EXPOSE, "dso/tariffs", True),
    ("dso", Action.EXPOSE, "meter/x", False),
    ("dso", Action.CALL, "9bad", False),  # not a service name
    ("dso", Action.CALL, "", False),
    ("dso", Action.CALL, "a+b", False),
]


@pytest.mark.parametrize(("role", "action", "service", "allowed"), SERVICE_TABLE)
def test_default_policy_services(role: str, action: Action, service: str, allowed: bool) -> None:
    check = DEFAULT.may_call if action is Action.CALL else DEFAULT.may_expose
    assert check(role, 7, service) is allowed


def test_the_default_table_has_the_seven_roles_and_only_dso_and_aggregators_command() -> None:
    assert DEFAULT.roles == frozenset(ROLES)
    commanders = {role for role in ROLES if DEFAULT.may_publish(role, 1, "DR/COMMAND/all")}
    assert commanders == {"dso", "aggregator"}
    tariff_setters = {role for role in ROLES if DEFAULT.may_publish(role, 1, "TARIFF/RTP/price")}
    assert tariff_setters == {"dso", "aggregator"}
    assert {rule.role for rule in DEFAULT_ACL_RULES} == set(ROLES)


def test_the_default_rules_are_the_pki_default_permissions() -> None:
    """The ceiling equals what the CA issues by default: neither cuts the other."""
    for rule in DEFAULT_ACL_RULES:
        defaults = DEFAULT_PERMISSIONS[Role(rule.role)]
        for action in ("publish", "subscribe", "call", "expose"):
            assert set(getattr(rule, action)) == set(getattr(defaults, action)), (rule.role, action)


def test_certificates_issued_with_the_defaults_get_exactly_the_defaults() -> None:
    for role in ROLES:
        permissions = default_permissions(Role(role), 1234)
        for topic in ("MEASUREMENT/SENSOR/1234/x", "DR/COMMAND/all", "TARIFF/a", "METER/1234/x"):
            assert DEFAULT.may_publish(role, 1234, topic, permissions) is DEFAULT.may_publish(
                role, 1234, topic
            )


# --- bad input is denied, never raised ------------------------------------------------------

DENIED_INPUTS = [
    ("meter", 0, "MEASUREMENT/SENSOR/0/x"),  # node ids start at 1
    ("meter", 2**64, "MEASUREMENT/SENSOR/18446744073709551616/x"),
    ("meter", True, "MEASUREMENT/SENSOR/True/x"),
    ("meter", "12", "MEASUREMENT/SENSOR/12/x"),
    ("meter", 12, "MEASUREMENT/SENSOR/12/x\x00"),
    ("meter", 12, ""),
    ("meter", 12, "MEASUREMENT/SENSOR/12/+"),  # a filter is not a name
    ("meter", 12, 12),
    ("meter", 12, None),
    (None, 12, "MEASUREMENT/SENSOR/12/x"),
    ("", 12, "MEASUREMENT/SENSOR/12/x"),
]


@pytest.mark.parametrize(("role", "node_id", "subject"), DENIED_INPUTS)
def test_invalid_identities_and_subjects_are_denied(
    role: object, node_id: object, subject: object
) -> None:
    assert DEFAULT.may_publish(role, node_id, subject) is False  # type: ignore[arg-type]
    assert DEFAULT.may_subscribe(role, node_id, subject) is False  # type: ignore[arg-type]
    assert DEFAULT.may_call(role, node_id, subject) is False  # type: ignore[arg-type]
    assert DEFAULT.may_expose(role, node_id, subject) is False  # type: ignore[arg-type]
    with pytest.raises(AccessDenied):
        DEFAULT.check_publish(role, node_id, subject)  # type: ignore[arg-type]


def test_an_unhashable_role_is_denied() -> None:
    assert DEFAULT.may_publish(["dso"], 1, "TARIFF/x") is False  # type: ignore[arg-type]


def test_a_role_strenum_member_works_as_its_text() -> None:
    class Role(StrEnum):
        DSO = "dso"
        METER = "meter"

    assert DEFAULT.may_publish(Role.DSO, 1, "TARIFF/RTP/price")
    assert not DEFAULT.may_publish(Role.METER, 1, "TARIFF/RTP/price")
    with pytest.raises(AccessDenied) as caught:
        DEFAULT.check_publish(Role.METER, 1, "TARIFF/RTP/price")
    assert type(caught.value.role) is str and caught.value.role == "meter"


# --- refusals are typed and structured ------------------------------------------------------


def test_check_publish_raises_unauthorized_with_structured_fields() -> None:
    with pytest.raises(Unauthorized) as caught:
        DEFAULT.check_publish("meter", 1234, "DR/COMMAND/region-7/EV")
    error = caught.value
    assert isinstance(error, AccessDenied) and isinstance(error, RemoteProtocolError)
    assert error.reason == "unauthorized"
    assert (error.action, error.role, error.node_id, error.subject) == (
        Action.PUBLISH,
        "meter",
        1234,
        "DR/COMMAND/region-7/EV",
    )
    assert error.field == "topic"
    assert "meter 1234 may not publish 'DR/COMMAND/region-7/EV'" in str(error)


@pytest.mark.parametrize(
    ("check", "subject", "action", "field"),
    [
        ("check_subscribe", "MEASUREMENT/#", Action.SUBSCRIBE, "topic"),
        ("check_call", "meter/dr_activate", Action.CALL, "service"),
        ("check_expose", "dso/tariffs", Action.EXPOSE, "service"),
    ],
)
def test_every_check_raises_access_denied_naming_its_action(
    check: str, subject: str, action: Action, field: str
) -> None:
    with pytest.raises(AccessDenied) as caught:
        getattr(DEFAULT, check)("meter", 5, subject)
    assert caught.value.action is action
    assert caught.value.field == field


def test_checks_pass_silently_when_allowed() -> None:
    DEFAULT.check_publish("dso", 1, "TARIFF/RTP/price")
    DEFAULT.check_subscribe("meter", 5, "TARIFF/#")
    DEFAULT.check_call("dso", 1, "meter/dr_activate")
    DEFAULT.check_expose("meter", 5, "meter/last_voltage")


def test_a_huge_subject_is_bounded_in_the_error() -> None:
    with pytest.raises(AccessDenied) as caught:
        DEFAULT.check_publish("meter", 5, "x" * 100_000)
    assert len(caught.value.subject) <= 1024
    assert len(str(caught.value)) < 200


# --- certificate grants: narrow within the ceiling, never widen -------------------------------

METER_7 = Perms(
    publish=("MEASUREMENT/SENSOR/7/#", "METER/7/#", "DR/REPORT/7/#"),
    subscribe=("TARIFF/#", "DR/COMMAND/#"),
    expose=("meter/#",),
)


def test_a_grant_narrows_what_the_role_allows() -> None:
    grant = Perms(publish=("MEASUREMENT/SENSOR/7/PowerConsumption",))
    assert DEFAULT.may_publish("meter", 7, "MEASUREMENT/SENSOR/7/PowerConsumption", grant)
    assert not DEFAULT.may_publish("meter", 7, "MEASUREMENT/SENSOR/7/Voltage", grant)
    assert DEFAULT.may_publish("meter", 7, "MEASUREMENT/SENSOR/7/Voltage")  # no grant: the rule
    assert DEFAULT.may_publish("meter", 7, "MEASUREMENT/SENSOR/7/Voltage", METER_7)


def test_a_grant_never_widens_beyond_the_role_ceiling() -> None:
    grant = Perms(
        publish=("DR/COMMAND/#", "MEASUREMENT/#"), subscribe=("#",), call=("#",), expose=("#",)
    )
    assert not DEFAULT.may_publish("meter", 7, "DR/COMMAND/all", grant)
    assert not DEFAULT.may_publish("meter", 7, "MEASUREMENT/SENSOR/8/x", grant)
    assert DEFAULT.may_publish("meter", 7, "MEASUREMENT/SENSOR/7/x", grant)  # the intersection
    assert not DEFAULT.may_subscribe("meter", 7, "MEASUREMENT/#", grant)
    assert DEFAULT.may_subscribe("meter", 7, "TARIFF/#", grant)
    assert not DEFAULT.may_call("meter", 7, "meter/last_voltage", grant)
    assert not DEFAULT.may_expose("meter", 7, "dso/x", grant)
    assert DEFAULT.may_expose("meter", 7, "meter/x", grant)


def test_an_empty_grant_list_allows_nothing_for_that_action() -> None:
    grant = Perms(subscribe=("TARIFF/#",))
    assert not DEFAULT.may_publish("meter", 7, "MEASUREMENT/SENSOR/7/x", grant)
    assert DEFAULT.may_subscribe("meter", 7, "TARIFF/RTP/price", grant)


def test_subscription_must_be_covered_by_both_grant_and_rule() -> None:
    policy = AccessPolicy(AclConfig(rules=(AclRule(role="r", subscribe=("a/#", "b/#")),)))
    grant = Perms(subscribe=("+/x/#",))
    assert policy.may_subscribe("r", 1, "a/x/#", grant)
    assert policy.may_subscribe("r", 1, "b/x", grant)
    assert not policy.may_subscribe("r", 1, "c/x", grant)  # the grant allows it, the rule not
    assert not policy.may_subscribe("r", 1, "a/y", grant)  # the rule allows it, the grant not
    assert not policy.may_subscribe("r", 1, "+/x/#", grant)


def test_require_grant_refuses_an_identity_without_permissions() -> None:
    rule = AclRule(role="meter", publish=("MEASUREMENT/+/{node_id}/#",), require_grant=True)
    policy = AccessPolicy(AclConfig(rules=(rule,)))
    assert not policy.may_publish("meter", 7, "MEASUREMENT/SENSOR/7/x")
    assert policy.may_publish("meter", 7, "MEASUREMENT/SENSOR/7/x", Perms(publish=("#",)))


def test_a_grant_naming_another_node_is_honoured_for_that_node_only() -> None:
    rule = AclRule(role="dtc", subscribe=("METER/#",), call=("meter/#",))
    policy = AccessPolicy(AclConfig(rules=(rule,)))
    grant = Perms(subscribe=("METER/1234/#",), call=("meter/1234/#", "meter/{node_id}/#"))
    assert policy.may_subscribe("dtc", 5, "METER/1234/+", grant)
    assert not policy.may_subscribe("dtc", 5, "METER/1235/+", grant)
    assert policy.may_call("dtc", 5, "meter/1234/last_voltage", grant)
    assert policy.may_call("dtc", 5, "meter/5/last_voltage", grant)  # an unexpanded placeholder
    # The same grant for node 1234: "1234" now is its own id, and means the same.
    assert policy.may_subscribe("dtc", 1234, "METER/1234/+", grant)
    assert not policy.may_subscribe("dtc", 1234, "METER/5/+", grant)


def test_placeholders_in_rules_may_stand_anywhere_as_a_whole_level() -> None:
    rule = AclRule(role="r", call=("#",), expose=("meter/{node_id}/#", "ping"))
    policy = AccessPolicy(AclConfig(rules=(rule,)))
    assert policy.may_expose("r", 42, "meter/42/read")
    assert not policy.may_expose("r", 42, "meter/43/read")
    assert policy.may_expose("r", 42, "ping")
    assert not policy.may_expose("r", 42, "ping2")


def test_meters_with_their_own_expanded_grants_share_one_compiled_template() -> None:
    policy = AccessPolicy()
    for node_id in range(1, 1001):
        grant = Perms(
            publish=(f"MEASUREMENT/SENSOR/{node_id}/#", f"METER/{node_id}/#"),
            subscribe=("TARIFF/#",),
        )
        assert policy.may_publish("meter", node_id, f"METER/{node_id}/x", grant)
        assert not policy.may_publish("meter", node_id, f"METER/{node_id + 1}/x", grant)
    assert len(policy._templates) == 1
    assert len(policy._grants) == 1000


def test_compiled_grants_are_bounded() -> None:
    policy = AccessPolicy(AclConfig(grants_cached_max=8, grant_templates_cached_max=4))
    for node_id in range(1, 101):
        grant = Perms(publish=(f"METER/{node_id}/#", f"METER/{node_id}/{node_id % 7}/#"))
        assert policy.may_publish("meter", node_id, f"METER/{node_id}/x", grant)
        assert len(policy._grants) <= 8
        assert len(policy._templates) <= 4


MALFORMED_GRANTS = [
    Perms(publish=("a/#/b",)),
    Perms(publish=("a/{nodeid}/b",)),
    Perms(publish=("a/x{node_id}",)),
    Perms(subscribe="TARIFF/#"),  # type: ignore[arg-type]
    Perms(publish=("ok",) * (GRANT_ENTRIES_MAX + 1)),
    Perms(call=(7,)),  # type: ignore[arg-type]
    Perms(expose=None),  # type: ignore[arg-type]
    object(),
    Perms(publish=["MEASUREMENT/SENSOR/7/#"]),  # type: ignore[arg-type]  # unhashable
]


@pytest.mark.parametrize("grant", MALFORMED_GRANTS, ids=range(len(MALFORMED_GRANTS)))
def test_a_malformed_grant_allows_nothing_and_is_counted(grant: object) -> None:
    policy = AccessPolicy()
    for _ in range(2):
        assert not policy.may_publish("meter", 7, "MEASUREMENT/SENSOR/7/x", grant)  # type: ignore[arg-type]
        assert not policy.may_subscribe("meter", 7, "TARIFF/#", grant)  # type: ignore[arg-type]
        assert not policy.may_expose("meter", 7, "meter/x", grant)  # type: ignore[arg-type]
    assert policy.grants_refused >= 1


# --- configuration: [[security.acl.rules]] ---------------------------------------------------

ACL_TOML = """
[security.acl]
grants_cached_max = 64

[[security.acl.rules]]
role = "dso"
publish = ["DR/COMMAND/#", "TARIFF/#"]
subscribe = ["#"]
call = ["*"]
expose = ["dso/#"]

[[security.acl.rules]]
role = "meter"
publish = ["MEASUREMENT/SENSOR/{node_id}/#"]
subscribe = ["TARIFF/#"]
expose = ["meter/#"]
"""


def test_the_acl_table_loads_from_toml() -> None:
    raw = parse_toml(ACL_TOML, source="node.toml")
    config = validate_model(AclConfig, raw["security"]["acl"], source="node.toml", docs="ACCESS")
    assert [rule.role for rule in config.rules] == ["dso", "meter"]
    policy = AccessPolicy(config)
    assert policy.may_publish("meter", 3, "MEASUREMENT/SENSOR/3/x")
    assert not policy.may_publish("meter", 3, "METER/3/x")
    assert policy.may_call("dso", 1, "meter/last_voltage")  # "*" is "#"
    assert not policy.may_publish("aggregator", 3, "DR/COMMAND/x")  # the table replaces the default


@pytest.mark.parametrize(
    ("table", "field", "expected"),
    [
        ('role = "meter"\npublsh = ["a"]', "rules[0].publsh", "no such field"),
        ('role = "meter"\npublish = ["a/#/b"]', "rules[0].publish", "'#' must be the whole"),
        ('role = "meter"\npublish = ["{id}/x"]', "rules[0].publish", "only placeholder"),
        ('role = "me ter"', "rules[0].role", "a role is a letter"),
        ('role = "meter"\ncall = ["meter/#/x"]', "rules[0].call", "'#' must be the whole"),
        ('role = "meter"\nexpose = ["x"]\nextra = 1', "rules[0].extra", "no such field"),
    ],
)
def test_bad_acl_tables_name_the_field(table: str, field: str, expected: str) -> None:
    raw = parse_toml(f"[[security.acl.rules]]\n{table}\n", source="node.toml")
    with pytest.raises(ConfigError) as caught:
        validate_model(AclConfig, raw["security"]["acl"], source="node.toml", docs="ACCESS")
    assert caught.value.field.startswith(field)
    assert expected in caught.value.expected


def test_a_role_with_two_rules_is_refused() -> None:
    with pytest.raises(ValidationError, match="role 'meter' has two rules"):
        AclConfig(rules=(AclRule(role="meter"), AclRule(role="meter")))


def test_rules_are_stored_normalized() -> None:
    rule = AclRule(role="x", publish=("a/{node_id}/*",))
    assert rule.publish == ("a/{node_id}/#",)


# --- coverage ------------------------------------------------------------------------------

COVERAGE_TABLE = [
    # (allowed filters, checked filter, covered)
    (["#"], "a/b", True),
    (["#"], "#", True),
    (["#"], "$SYS/#", False),  # MQTT 4.7.2
    (["+/#"], "#", True),
    (["+/#"], "$SYS", False),
    (["$SYS/#"], "$SYS/broker/+", True),
    (["a/#"], "a", True),  # "#" matches its parent level
    (["a/#"], "a/#", True),
    (["a/#"], "#", False),
    (["a/+"], "a/#", False),  # a/# matches "a" and "a/b/c"
    (["a/+"], "a/+", True),
    (["a/+"], "a/b", True),
    (["a/b"], "a/+", False),
    (["+/b"], "a/b", True),
    (["+/+"], "a/+", True),
    (["a/+/c"], "a/+/+", False),
    (["a", "a/+/#"], "a/#", True),  # neither alone covers it
    (["a"], "a/#", False),
    (["a/+/#"], "a/#", False),
    (["+", "+/+/#"], "#", True),
    (["+", "+/+/#"], "$x", False),
    (["a//b"], "a/+/b", False),
    (["a/+/b"], "a//b", True),  # "+" matches an empty level
    (["a/#"], "a/", True),
    ([], "a", False),
]


@pytest.mark.parametrize(("allowed", "topic_filter", "covered"), COVERAGE_TABLE)
def test_coverage_examples(allowed: list[str], topic_filter: str, covered: bool) -> None:
    assert covers(allowed, topic_filter) is covered


def test_covers_refuses_invalid_filters() -> None:
    with pytest.raises(InvalidTopic):
        covers(["a/#"], "a/#/b")


# The brute force: a filter covers another iff it matches every name the other
# matches, over names of up to one level more than any filter has (only "#" reaches
# further) built from the filters' literals and one value ("z") no filter spells out.
FILTER_LEVELS = ("a", "b", "$a", "", "+")
NAME_LEVELS = ("a", "b", "$a", "", "z")
NAMES = [
    "/".join(levels)
    for size in range(1, 5)
    for levels in itertools.product(NAME_LEVELS, repeat=size)
    if levels != ("",)
]


@st.composite
def filters(draw: st.DrawFn) -> str:
    levels = draw(st.lists(st.sampled_from(FILTER_LEVELS), max_size=3))
    if draw(st.booleans()) or not levels:
        levels.append("#")
    if levels == [""]:
        levels = ["", "#"]
    return "/".join(levels)


def brute_force_covers(allowed: list[str], topic_filter: str) -> bool:
    allowed_trie = trie_of(allowed)
    checked: TopicTrie[int] = TopicTrie()
    checked.add(topic_filter, 0)
    return all(allowed_trie.match(name) for name in NAMES if checked.match(name))


@settings(max_examples=400, deadline=None)
@given(st.lists(filters(), max_size=3), filters())
def test_coverage_agrees_with_brute_force(allowed: list[str], topic_filter: str) -> None:
    assert covers(allowed, topic_filter) is brute_force_covers(allowed, topic_filter)


@settings(max_examples=200, deadline=None)
@given(filters(), filters())
def test_a_filter_covers_itself_and_filters_covering_each_other_are_equal(a: str, b: str) -> None:
    assert covers([a], a)
    if covers([a], b) and covers([b], a):
        assert all(matches(a, name) == matches(b, name) for name in NAMES)


# Policies with {node_id}: the compiled trie agrees with expanding the placeholder and
# matching with gridmesh.topics; coverage agrees with the brute force over the expansion.
TEMPLATE_LEVELS = ("a", "7", "{node_id}", "+")
NODE_NAMES = [
    "/".join(levels)
    for size in range(1, 5)
    for levels in itertools.product(("a", "7", "8", "$a"), repeat=size)
]


@st.composite
def template_filters(draw: st.DrawFn) -> str:
    levels = draw(st.lists(st.sampled_from(TEMPLATE_LEVELS), max_size=3))
    if draw(st.booleans()) or not levels:
        levels.append("#")
    return "/".join(levels)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(template_filters(), max_size=3),
    st.one_of(st.none(), st.lists(template_filters(), max_size=2)),
    st.sampled_from((7, 8)),
)
def test_policy_checks_agree_with_expanding_the_placeholder(
    rule_filters: list[str], grant_filters: list[str] | None, node_id: int
) -> None:
    rule = AclRule(role="r", publish=tuple(rule_filters), subscribe=tuple(rule_filters))
    policy = AccessPolicy(AclConfig(rules=(rule,)))

    def expanded(templates: list[str]) -> tuple[str, ...]:
        return tuple(one.replace("{node_id}", str(node_id)) for one in templates)

    grant = None  # as certificates carry it: expanded, the node's id spelled out
    if grant_filters is not None:
        grant = Perms(publish=expanded(grant_filters), subscribe=expanded(grant_filters))

    rule_trie = trie_of(expanded(rule_filters))
    grant_trie = None if grant_filters is None else trie_of(expanded(grant_filters))
    for name in NODE_NAMES:
        expected = bool(rule_trie.match(name))
        if grant_trie is not None:
            expected = expected and bool(grant_trie.match(name))
        assert policy.may_publish("r", node_id, name, grant) is expected, name
    for topic_filter, matched in CHECKED_FILTERS.items():
        expected = all(rule_trie.match(name) for name in matched)
        if grant_trie is not None:
            expected = expected and all(grant_trie.match(name) for name in matched)
        assert policy.may_subscribe("r", node_id, topic_filter, grant) is expected, topic_filter


def trie_of(allowed: Iterable[str]) -> TopicTrie[int]:
    trie: TopicTrie[int] = TopicTrie()
    for number, one in enumerate(allowed):
        trie.add(one, number)
    return trie


# Up to one level more than the policy filters' three (only "#" reaches further),
# with a value ("z") that no filter spells out.
WITNESS_NAMES = [
    "/".join(levels)
    for size in range(1, 5)
    for levels in itertools.product(("a", "7", "8", "$a", "z"), repeat=size)
]
CHECKED_FILTERS = {
    topic_filter: [name for name in WITNESS_NAMES if matches(topic_filter, name)]
    for topic_filter in ("#", "a/#", "+/7", "7/+/#", "$a/#", "a/8", "+/+/+/+")
}
