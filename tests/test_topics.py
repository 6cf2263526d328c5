"""Topic names, filters, matching and the subscription trie (gridmesh.topics)."""

from __future__ import annotations

from enum import StrEnum

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridmesh import wire
from gridmesh.errors import InvalidTopic, LocalProtocolError
from gridmesh.topics import (
    TOPIC_BYTES_MAX,
    TOPIC_LEVELS_MAX,
    TopicTrie,
    matches,
    validate_topic_filter,
    validate_topic_name,
)

# --- validation ---------------------------------------------------------------

VALID_NAMES = [
    "a",
    "MEASUREMENT/SENSOR/1234/PowerConsumption",
    "/",  # two empty levels
    "/finance",
    "sport/",
    "a//b",
    " ",
    "a b/c d",
    "$SYS/broker/uptime",
    "$grid/substation-3",
    "*",  # an ordinary character in a name
    "a/*/b",
    "Zähler/日本/😀",
    "\ufeff",  # ZERO WIDTH NO-BREAK SPACE is a character like any other (MQTT 1.5.4-3)
    "\xa0",  # the first character after the C1 controls
    "\U0010fffd",
]

INVALID_NAMES = [
    ("", "empty"),
    ("a/+", "wildcard"),
    ("+", "wildcard"),
    ("a/#", "wildcard"),
    ("sport+", "wildcard"),
    ("a\x00b", "U+0000"),
    ("\ud800", "surrogate"),
    ("a/\udfff", "surrogate"),
    ("a\x01", "control"),
    ("line\nbreak", "control"),
    ("\x1f", "control"),
    ("\x7f", "control"),
    ("\x85", "control"),
    ("\x9f", "control"),
    ("\ufdd0", "noncharacter"),
    ("\ufdef", "noncharacter"),
    ("\ufffe", "noncharacter"),
    ("\uffff", "noncharacter"),
    ("\U0001ffff", "noncharacter"),
    ("\U0010fffe", "noncharacter"),
]


@pytest.mark.parametrize("name", VALID_NAMES)
def test_valid_topic_names_are_returned_unchanged(name: str) -> None:
    assert validate_topic_name(name) == name


@pytest.mark.parametrize(("name", "problem"), INVALID_NAMES)
def test_invalid_topic_names_raise_invalid_topic_naming_the_rule(name: str, problem: str) -> None:
    with pytest.raises(InvalidTopic) as caught:
        validate_topic_name(name)
    assert problem in caught.value.problem
    assert caught.value.topic == name
    assert caught.value.kind == "name"


@pytest.mark.parametrize("value", [None, 7, b"a/b", ["a"]])
def test_a_topic_that_is_not_text_raises_invalid_topic(value: object) -> None:
    for validate in (validate_topic_name, validate_topic_filter):
        with pytest.raises(InvalidTopic, match="not text"):
            validate(value)


VALID_FILTERS = [
    ("#", "#"),
    ("+", "+"),
    ("+/+", "+/+"),
    ("/#", "/#"),
    ("+/", "+/"),
    ("a//+", "a//+"),
    ("sport/tennis/+/#", "sport/tennis/+/#"),
    ("+/SENSOR/123/PowerConsumption", "+/SENSOR/123/PowerConsumption"),
    ("$SYS/#", "$SYS/#"),
    ("$SYS/monitor/+", "$SYS/monitor/+"),
    ("MEASUREMENT/SENSOR/1234/PowerConsumption", "MEASUREMENT/SENSOR/1234/PowerConsumption"),
    # LinkSmart's trailing "*" is "#"; anywhere else "*" is an ordinary character
    ("MEASUREMENT/SENSOR/*", "MEASUREMENT/SENSOR/#"),
    ("*", "#"),
    ("/*", "/#"),
    ("+/*", "+/#"),
    ("a/*/b", "a/*/b"),
    ("*/a", "*/a"),
    ("a/b*", "a/b*"),
    ("a/**", "a/**"),
    ("a/*/#", "a/*/#"),
]

INVALID_FILTERS = [
    ("", "empty"),
    ("a/#/b", "'#'"),
    ("#/", "'#'"),
    ("#/a", "'#'"),
    ("sport/tennis#", "'#'"),
    ("a/#/*", "'#'"),  # "*" makes the last level "#"; the first one is misplaced
    ("##", "'#'"),
    ("sport+", "'+'"),
    ("+a/b", "'+'"),
    ("a/++", "'+'"),
    ("a/+b/c", "'+'"),
    ("a\x00", "U+0000"),
    ("a/\ud83d", "surrogate"),
    ("a/\x1b[31m", "control"),
    ("\ufffe/#", "noncharacter"),
]


@pytest.mark.parametrize(("topic_filter", "normalized"), VALID_FILTERS)
def test_valid_topic_filters_are_returned_normalized(topic_filter: str, normalized: str) -> None:
    assert validate_topic_filter(topic_filter) == normalized


@pytest.mark.parametrize(("topic_filter", "problem"), INVALID_FILTERS)
def test_invalid_topic_filters_raise_invalid_topic_naming_the_rule(
    topic_filter: str, problem: str
) -> None:
    with pytest.raises(InvalidTopic) as caught:
        validate_topic_filter(topic_filter)
    assert problem in caught.value.problem
    assert caught.value.topic == topic_filter  # as the caller wrote it, not normalized
    assert caught.value.kind == "filter"


def test_every_valid_name_is_a_valid_filter_that_matches_itself() -> None:
    for name in VALID_NAMES:
        if name == "*" or name.endswith("/*"):
            continue  # as a filter, a last "*" is "#" (and still matches the name)
        assert validate_topic_filter(name) == name
        assert matches(name, name)


def test_invalid_topic_is_a_local_protocol_error_with_a_bounded_message() -> None:
    long_name = "x" * 2000
    with pytest.raises(InvalidTopic) as caught:
        validate_topic_name(long_name)
    error = caught.value
    assert isinstance(error, LocalProtocolError)
    assert error.topic == long_name
    assert "TOPIC_BYTES_MAX" in error.problem
    assert len(str(error)) < 200


def test_a_str_subclass_is_accepted_as_plain_text() -> None:
    class Topic(StrEnum):
        POWER = "MEASUREMENT/SENSOR/1/PowerConsumption"
        ALL = "MEASUREMENT/*"

    name = validate_topic_name(Topic.POWER)
    assert type(name) is str
    assert validate_topic_filter(Topic.ALL) == "MEASUREMENT/#"
    assert matches(Topic.ALL, Topic.POWER)
    trie: TopicTrie[int] = TopicTrie()
    trie.add(Topic.ALL, 1)
    assert trie.match(Topic.POWER) == {1}


# --- limits --------------------------------------------------------------------


def test_the_byte_limit_is_the_wire_limit() -> None:
    assert TOPIC_BYTES_MAX == wire.TOPIC_BYTES_MAX == 1024


@pytest.mark.parametrize("validate", [validate_topic_name, validate_topic_filter])
def test_a_topic_of_exactly_topic_bytes_max_utf8_bytes_is_accepted(validate: object) -> None:
    assert callable(validate)
    ascii_topic = "a" * TOPIC_BYTES_MAX
    two_byte_topic = "é" * (TOPIC_BYTES_MAX // 2)
    assert validate(ascii_topic) == ascii_topic
    assert validate(two_byte_topic) == two_byte_topic


@pytest.mark.parametrize("validate", [validate_topic_name, validate_topic_filter])
def test_a_topic_one_utf8_byte_over_the_limit_is_refused(validate: object) -> None:
    assert callable(validate)
    # 1,025 characters, and 513 characters that are 1,026 bytes in UTF-8
    for topic in ("a" * (TOPIC_BYTES_MAX + 1), "é" * (TOPIC_BYTES_MAX // 2) + "a"):
        with pytest.raises(InvalidTopic, match="TOPIC_BYTES_MAX"):
            validate(topic)


def test_topic_levels_max_levels_are_accepted_and_one_more_is_refused() -> None:
    deepest = "/".join(["l"] * TOPIC_LEVELS_MAX)
    assert validate_topic_name(deepest) == deepest
    assert validate_topic_filter(deepest[:-1] + "#") == deepest[:-1] + "#"
    assert validate_topic_name("/" * (TOPIC_LEVELS_MAX - 1)) == "/" * (TOPIC_LEVELS_MAX - 1)
    for too_deep in (deepest + "/l", deepest + "/#", "/" * TOPIC_LEVELS_MAX):
        with pytest.raises(InvalidTopic, match="TOPIC_LEVELS_MAX"):
            validate_topic_filter(too_deep)
    with pytest.raises(InvalidTopic, match="TOPIC_LEVELS_MAX"):
        validate_topic_name(deepest + "/l")


# --- matching ------------------------------------------------------------------

# Transcribed from Eclipse Paho: repository eclipse/paho.mqtt.python, file
# tests/test_matcher.py (topic_matches_sub), and the cases repository
# eclipse/paho.mqtt.cpp, file test/unit/test_topic_matcher.cpp, adds to them.
PAHO_MATCHING = [
    ("foo/bar", "foo/bar"),
    ("foo/+", "foo/bar"),
    ("foo/+/baz", "foo/bar/baz"),
    ("foo/+/#", "foo/bar/baz"),
    ("A/B/+/#", "A/B/B/C"),
    ("#", "foo/bar/baz"),
    ("#", "/foo/bar"),
    ("/#", "/foo/bar"),
    ("$SYS/bar", "$SYS/bar"),
    # paho.mqtt.cpp only
    ("foo/#", "foo/$bar"),
    ("foo/+/baz", "foo/$bar/baz"),
]
PAHO_NOT_MATCHING = [
    ("test/6/#", "test/3"),
    ("foo/bar", "foo"),
    ("foo/+", "foo/bar/baz"),
    ("foo/+/baz", "foo/bar/bar"),
    ("foo/+/#", "fo2/bar/baz"),
    ("/#", "foo/bar"),
    ("#", "$SYS/bar"),
    ("$BOB/bar", "$SYS/bar"),
    # paho.mqtt.cpp only
    ("+/bar", "$SYS/bar"),
]

# The examples of MQTT 5.0 sections 4.7.1.2, 4.7.1.3 and 4.7.2 (the same in 3.1.1).
MQTT_MATCHING = [
    ("sport/tennis/player1/#", "sport/tennis/player1"),
    ("sport/tennis/player1/#", "sport/tennis/player1/ranking"),
    ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon"),
    ("sport/#", "sport"),
    ("sport/tennis/+", "sport/tennis/player1"),
    ("sport/tennis/+", "sport/tennis/player2"),
    ("sport/+", "sport/"),
    ("+/+", "/finance"),
    ("/+", "/finance"),
    ("$SYS/#", "$SYS/monitor/Clients"),
    ("$SYS/monitor/+", "$SYS/monitor/Clients"),
    ("$SYS/#", "$SYS"),
]
MQTT_NOT_MATCHING = [
    ("sport/tennis/+", "sport/tennis/player1/ranking"),
    ("sport/+", "sport"),
    ("+", "/finance"),
    ("#", "$SYS/monitor/Clients"),
    ("+/monitor/Clients", "$SYS/monitor/Clients"),
]

# Empty levels, "$" only at the start, and LinkSmart's "*".
GRIDMESH_MATCHING = [
    ("+", "a"),
    ("#", "/"),
    ("+/+", "/"),
    ("a/+/b", "a//b"),
    ("a//#", "a//"),
    ("a/#", "a/"),
    ("+/$x", "a/$x"),
    ("$grid/#", "$grid"),
    ("$", "$"),
    ("$/+", "$/"),
    ("MEASUREMENT/SENSOR/*", "MEASUREMENT/SENSOR/1234/PowerConsumption"),
    ("MEASUREMENT/SENSOR/*", "MEASUREMENT/SENSOR"),
    ("*", "MEASUREMENT"),
    ("a/*/b", "a/*/b"),
]
GRIDMESH_NOT_MATCHING = [
    ("+", "/"),
    ("a/+", "a"),
    ("a/+/b", "a/b"),
    ("a//b", "a/b"),
    ("+", "$"),
    ("#", "$"),
    ("+/#", "$grid/a"),
    ("*", "$grid/a"),
    ("a/*/b", "a/x/b"),  # "*" in the middle is an ordinary character
    ("a/b*", "a/bc"),
    ("A", "a"),
]


@pytest.mark.parametrize(
    ("topic_filter", "name"), PAHO_MATCHING + MQTT_MATCHING + GRIDMESH_MATCHING
)
def test_filter_matches_name(topic_filter: str, name: str) -> None:
    assert matches(topic_filter, name)
    trie: TopicTrie[str] = TopicTrie()
    trie.add(topic_filter, "subscriber")
    assert trie.match(name) == {"subscriber"}


@pytest.mark.parametrize(
    ("topic_filter", "name"), PAHO_NOT_MATCHING + MQTT_NOT_MATCHING + GRIDMESH_NOT_MATCHING
)
def test_filter_does_not_match_name(topic_filter: str, name: str) -> None:
    assert not matches(topic_filter, name)
    trie: TopicTrie[str] = TopicTrie()
    trie.add(topic_filter, "subscriber")
    assert trie.match(name) == set()


def test_matches_raises_invalid_topic_for_an_invalid_filter_or_name() -> None:
    with pytest.raises(InvalidTopic) as caught:
        matches("a/#/b", "a/x/b")
    assert caught.value.kind == "filter"
    with pytest.raises(InvalidTopic) as caught:
        matches("a/#", "a/+")
    assert caught.value.kind == "name"


# --- the trie ------------------------------------------------------------------


def test_the_trie_returns_each_matching_key_once() -> None:
    trie: TopicTrie[int] = TopicTrie()
    trie.add("MEASUREMENT/SENSOR/1234/+", 1)
    trie.add("MEASUREMENT/SENSOR/1234/PowerConsumption", 1)
    trie.add("MEASUREMENT/#", 1)
    trie.add("+/SENSOR/1234/PowerConsumption", 2)
    trie.add("DR/COMMAND/region-7/#", 3)
    trie.add("#", 4)
    trie.add("MEASUREMENT/SENSOR/9/+", 5)
    assert trie.match("MEASUREMENT/SENSOR/1234/PowerConsumption") == {1, 2, 4}
    assert trie.match("DR/COMMAND/region-7") == {3, 4}
    assert trie.match("$grid/MEASUREMENT") == set()
    assert len(trie) == 7


def test_adding_a_subscription_twice_is_a_no_op_and_star_is_hash() -> None:
    trie: TopicTrie[str] = TopicTrie()
    assert trie.add("a/#", "k")
    assert not trie.add("a/#", "k")
    assert not trie.add("a/*", "k")
    assert len(trie) == 1
    assert trie.filters_of("k") == {"a/#"}


def test_removal_returns_whether_the_subscription_existed() -> None:
    trie: TopicTrie[str] = TopicTrie()
    trie.add("a/+", "k")
    trie.add("a/#", "k")
    trie.add("a/+", "other")
    assert not trie.remove("a/+/c", "k")
    assert not trie.remove("a/+", "nobody")
    assert trie.remove("a/*", "k")  # the normalized form of "a/#"
    assert not trie.remove("a/#", "k")
    assert trie.match("a/b") == {"k", "other"}
    assert trie.remove("a/+", "k")
    assert trie.match("a/b") == {"other"}
    assert trie.filters_of("k") == frozenset()
    assert len(trie) == 1
    trie._audit()


def test_removing_every_subscription_leaves_only_the_root() -> None:
    trie: TopicTrie[int] = TopicTrie()
    filters = ["#", "a/#", "a/b/c", "a/+/c", "+/+", "a//", "$SYS/#", "x/y/z/w/#"]
    for key in range(3):
        for topic_filter in filters:
            trie.add(topic_filter, key)
    assert trie._audit() > 1
    for key in range(3):
        for topic_filter in reversed(filters):
            assert trie.remove(topic_filter, key)
    assert len(trie) == 0
    assert trie._audit() == 1
    assert trie.match("a/b/c") == set()


def test_remove_key_unsubscribes_a_key_from_all_its_filters() -> None:
    trie: TopicTrie[str] = TopicTrie()
    for topic_filter in ("b/#", "a/+", "c"):
        trie.add(topic_filter, "meter-1")
    trie.add("a/+", "meter-2")
    assert trie.remove_key("meter-1") == ["a/+", "b/#", "c"]
    assert trie.remove_key("meter-1") == []
    assert trie.match("a/x") == {"meter-2"}
    assert trie.match("b/x") == set()
    assert sorted(trie.items()) == [("a/+", "meter-2")]
    assert len(trie) == 1
    trie._audit()


def test_items_lists_every_subscription() -> None:
    trie: TopicTrie[int] = TopicTrie()
    subscriptions = {("a/#", 1), ("a/+", 1), ("a/+", 2), ("+", 3)}
    for topic_filter, key in subscriptions:
        trie.add(topic_filter, key)
    assert set(trie.items()) == subscriptions


def test_the_trie_refuses_invalid_filters_names_and_a_none_key() -> None:
    trie: TopicTrie[object] = TopicTrie()
    with pytest.raises(InvalidTopic):
        trie.add("a/#/b", 1)
    with pytest.raises(InvalidTopic):
        trie.remove("", 1)
    with pytest.raises(LocalProtocolError):
        trie.add("a", None)
    trie.add("#", 1)
    for _ in range(2):  # a bad name raises every time, cached or not
        with pytest.raises(InvalidTopic):
            trie.match("a/+")
    with pytest.raises(InvalidTopic, match="not text"):
        trie.match(7)  # type: ignore[arg-type]
    assert len(trie) == 1
    assert trie.match("a") == {1}


# --- the trie agrees with matches() ------------------------------------------

# Few level texts, so that random filters and names often share levels; "$"
# texts to exercise MQTT 4.7.2, "" for empty levels, "*" as an ordinary level.
LEVELS = ["", "a", "b", "$a", "$", "*", "é", "日本", "😀"]
TEXT_LEVEL = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Cn"), blacklist_characters="/+#"),
    max_size=3,
)
NAME_LEVEL = st.one_of(st.sampled_from(LEVELS), TEXT_LEVEL)
NAMES = st.lists(NAME_LEVEL, min_size=1, max_size=5).map("/".join).filter(bool)


@st.composite
def topic_filters(draw: st.DrawFn) -> str:
    levels = draw(st.lists(st.one_of(NAME_LEVEL, st.just("+")), max_size=5))
    ending = draw(st.sampled_from([None, "#", "*"]))
    if ending is not None:
        levels.append(ending)
    return "/".join(levels) or "#"


SUBSCRIPTIONS = st.lists(st.tuples(topic_filters(), st.integers(0, 5)), max_size=40)


@settings(max_examples=200, deadline=None)
@given(subscriptions=SUBSCRIPTIONS, names=st.lists(NAMES, min_size=1, max_size=10))
def test_the_trie_matches_exactly_the_keys_brute_force_matching_finds(
    subscriptions: list[tuple[str, int]], names: list[str]
) -> None:
    trie: TopicTrie[int] = TopicTrie()
    for topic_filter, key in subscriptions:
        trie.add(topic_filter, key)
    assert len(trie) == len({(validate_topic_filter(f), k) for f, k in subscriptions})
    for name in names:
        expected = {key for topic_filter, key in subscriptions if matches(topic_filter, name)}
        assert trie.match(name) == expected, name


@settings(max_examples=200, deadline=None)
@given(subscriptions=SUBSCRIPTIONS, removals=st.data(), names=st.lists(NAMES, max_size=10))
def test_after_removals_the_trie_still_agrees_and_keeps_no_empty_node(
    subscriptions: list[tuple[str, int]], removals: st.DataObject, names: list[str]
) -> None:
    trie: TopicTrie[int] = TopicTrie()
    for topic_filter, key in subscriptions:
        trie.add(topic_filter, key)
    removed = removals.draw(st.lists(st.sampled_from(subscriptions))) if subscriptions else []
    for topic_filter, key in removed:
        trie.remove(topic_filter, key)
    # "a/*" and "a/#" are one subscription: compare normalized filters
    kept = {(validate_topic_filter(f), k) for f, k in subscriptions} - {
        (validate_topic_filter(f), k) for f, k in removed
    }
    trie._audit()
    for name in names:
        expected = {key for topic_filter, key in kept if matches(topic_filter, name)}
        assert trie.match(name) == expected, name
    for topic_filter, key in kept:
        trie.remove(topic_filter, key)
    assert len(trie) == 0
    assert trie._audit() == 1


@given(name=NAMES)
def test_a_filter_without_wildcards_matches_only_the_equal_name(name: str) -> None:
    if name == "*" or name.endswith("/*"):
        return
    assert matches(name, name)
    assert not matches(name + "/x", name)
    assert not matches(name, name + "/x")
    assert matches("#", name) is (not name.startswith("$"))


def test_every_forbidden_code_point_is_refused_and_its_neighbours_are_not() -> None:
    forbidden = [
        *range(0x00, 0x20),
        *range(0x7F, 0xA0),
        *range(0xD800, 0xE000),
        *range(0xFDD0, 0xFDF0),
        *(plane + low for plane in range(0, 0x110000, 0x10000) for low in (0xFFFE, 0xFFFF)),
    ]
    for code in forbidden:
        with pytest.raises(InvalidTopic):
            validate_topic_name(f"a/{chr(code)}")
        with pytest.raises(InvalidTopic):
            validate_topic_filter(f"{chr(code)}/#")
    for code in (0x20, 0x7E, 0xA0, 0xD7FF, 0xE000, 0xFDCF, 0xFDF0, 0xFFFD, 0x1FFFD, 0x10000):
        assert validate_topic_name(f"a/{chr(code)}") == f"a/{chr(code)}"
