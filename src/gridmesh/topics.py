"""Topic names, topic filters, matching, and a trie of subscriptions.

Theory of operation
-------------------
The Event Manager (seed 001, section III.B.3) routes events by hierarchical
topic, ``MEASUREMENT/SENSOR/1234/PowerConsumption``, and its subscribers
select events with filters that may hold wildcards. gridmesh takes both from
MQTT (3.1.1 section 4.7, 5.0 section 4.7) so that an MQTT bridge carries
topics and filters over unchanged, with one addition from LinkSmart.

*A topic name* is text of at least one character, split into *levels* by
``/``. Levels may be empty (``a//b``, ``/a``, ``a/`` have three, two and two
levels). A name never holds ``+`` or ``#``.

*A topic filter* is a name in which a level may also be a wildcard:

* ``+`` is a whole level and matches exactly one level, empty ones included:
  ``a/+`` matches ``a/b`` and ``a/`` but not ``a`` or ``a/b/c``.
* ``#`` is the whole last level and matches the parent level and any number
  of levels below it: ``a/#`` matches ``a``, ``a/`` and ``a/b/c``; ``#``
  alone matches every name.
* LinkSmart writes the multi-level wildcard as a trailing ``*``
  (``MEASUREMENT/SENSOR/*``). A filter whose *last* level is exactly ``*``
  is read as ``#`` there; ``validate_topic_filter`` returns it so normalized.
  This differs from MQTT, where ``*`` is an ordinary character; anywhere
  else (``a/*/b``, ``a/b*``) gridmesh treats it as one too.

*The ``$`` rule* (MQTT 4.7.2): a filter whose first level is a wildcard
(``#``, ``+/...``) does not match a name that starts with ``$``; those
names (``$SYS/...`` on a broker) are reached only by filters that spell the
first level out (``$SYS/#``).

*What every name and filter must satisfy*, checked by the validators; each
broken rule raises ``InvalidTopic`` with a fixed ``problem`` phrase:

* it is text and not empty;
* at most ``TOPIC_BYTES_MAX`` bytes in UTF-8 and at most ``TOPIC_LEVELS_MAX``
  levels;
* no U+0000 (MQTT 1.5.4-2) and no lone surrogate U+D800-U+DFFF (not
  encodable in UTF-8, MQTT 1.5.4-1);
* no control character U+0001-U+001F or U+007F-U+009F and no Unicode
  noncharacter (U+FDD0-U+FDEF, U+xFFFE, U+xFFFF). MQTT only says a topic
  SHOULD NOT hold them and lets a receiver treat them as malformed; Mosquitto
  does, and so does gridmesh: then every topic gridmesh accepts crosses an
  MQTT bridge, and no topic can smuggle terminal escapes into a log.

*The trie* (``TopicTrie``) holds ``(filter, key)`` subscriptions; a key is
whatever names a subscriber to its owner (a node id, a session). A node per
filter level holds its children by level text (``+`` is a child like any
other: it cannot clash, a name has no ``+`` level), the keys of filters that
end at the node, and the keys of filters that end in ``/#`` below the node.
Matching a name walks down level by level and at each node follows only the
literal child and the ``+`` child, collecting the ``#`` keys of every node it
passes, so its cost grows with the name's depth and the number of wildcard
branches it meets, not with the number of subscriptions. A set of keys holds
one key alone as the key itself, the set made only for a second one; a
removal prunes nodes left empty, so the trie's size follows its contents.
This module does no I/O and keeps no clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Generic, TypeVar

from gridmesh.errors import InvalidTopic, LocalProtocolError
from gridmesh.wire import TOPIC_BYTES_MAX

__all__ = [
    "NAME_CACHE_ENTRIES_MAX",
    "TOPIC_BYTES_MAX",
    "TOPIC_LEVELS_MAX",
    "TopicTrie",
    "matches",
    "validate_topic_filter",
    "validate_topic_name",
]

#: Most levels in a name or filter (a ``#`` level counts). MQTT sets no limit;
#: smart-grid topics have four to six levels, and Mosquitto refuses over 200.
TOPIC_LEVELS_MAX = 32
#: How many recently matched names ``TopicTrie.match`` keeps split (a meter
#: publishes on the same few topics all day).
NAME_CACHE_ENTRIES_MAX = 4096

K = TypeVar("K")

_NOT_TEXT = "not text"
_EMPTY = "empty"
_TOO_LONG = f"longer than TOPIC_BYTES_MAX ({TOPIC_BYTES_MAX}) UTF-8 bytes"
_TOO_DEEP = f"more than TOPIC_LEVELS_MAX ({TOPIC_LEVELS_MAX}) levels"
_NUL = "contains U+0000 (NUL)"
_SURROGATE = "contains a lone surrogate (U+D800-U+DFFF), which UTF-8 cannot encode"
_CONTROL = "contains a control character (U+0001-U+001F, U+007F-U+009F)"
_NONCHARACTER = "contains a Unicode noncharacter (U+FDD0-U+FDEF, U+xFFFE, U+xFFFF)"
_WILDCARD_IN_NAME = "contains a wildcard ('+' or '#'), which only a filter may"
_MISPLACED_PLUS = "'+' must be a whole level"
_MISPLACED_HASH = "'#' must be the whole last level"

_NONCHARACTERS = "".join(f"\\U{plane:04x}fffe\\U{plane:04x}ffff" for plane in range(17))
# Every character these match is one str.isprintable() refuses (Cc, Cs, Cn),
# so the search runs only on the rare topic that is not all printable.
_FORBIDDEN = re.compile(f"[\\x00-\\x1f\\x7f-\\x9f\\ud800-\\udfff\\ufdd0-\\ufdef{_NONCHARACTERS}]")


def _problem(char: str) -> str:
    """Which rule the forbidden character ``char`` breaks."""
    code = ord(char)
    if code == 0:
        return _NUL
    if 0xD800 <= code <= 0xDFFF:
        return _SURROGATE
    if code < 0x20 or 0x7F <= code <= 0x9F:
        return _CONTROL
    return _NONCHARACTER


def _checked_text(topic: object, kind: str) -> str:
    """``topic`` as a ``str`` after the rules names and filters share."""
    if not isinstance(topic, str):
        raise InvalidTopic(repr(topic)[:200], _NOT_TEXT, kind=kind)
    if type(topic) is not str:  # a str subclass (a StrEnum member, say): plain text
        topic = str.__str__(topic)
    if not topic:
        raise InvalidTopic(topic, _EMPTY, kind=kind)
    # A character is at least one UTF-8 byte: too many characters is too long,
    # and refusing it first bounds the scan below.
    if len(topic) > TOPIC_BYTES_MAX:
        raise InvalidTopic(topic, _TOO_LONG, kind=kind)
    if not topic.isprintable() and (bad := _FORBIDDEN.search(topic)) is not None:
        raise InvalidTopic(topic, _problem(bad.group()), kind=kind)
    if not topic.isascii() and len(topic.encode()) > TOPIC_BYTES_MAX:
        raise InvalidTopic(topic, _TOO_LONG, kind=kind)
    if topic.count("/") >= TOPIC_LEVELS_MAX:
        raise InvalidTopic(topic, _TOO_DEEP, kind=kind)
    return topic


def validate_topic_name(name: object) -> str:
    """``name`` if it is a valid topic name (no wildcards); else ``InvalidTopic``."""
    text = _checked_text(name, "name")
    if "+" in text or "#" in text:
        raise InvalidTopic(text, _WILDCARD_IN_NAME, kind="name")
    return text


def validate_topic_filter(topic_filter: object) -> str:
    """``topic_filter`` normalized (a last level ``*`` becomes ``#``) if valid.

    Raises ``InvalidTopic`` when it breaks a rule, ``+`` and ``#`` placement
    included.
    """
    original = text = _checked_text(topic_filter, "filter")
    if text[-1] == "*" and (len(text) == 1 or text[-2] == "/"):
        text = text[:-1] + "#"
    if "+" in text or "#" in text:
        levels = text.split("/")
        last = len(levels) - 1
        for depth, level in enumerate(levels):
            if "#" in level and (level != "#" or depth != last):
                raise InvalidTopic(original, _MISPLACED_HASH, kind="filter")
            if "+" in level and level != "+":
                raise InvalidTopic(original, _MISPLACED_PLUS, kind="filter")
    return text


def _levels_match(filter_levels: list[str], name_levels: list[str] | tuple[str, ...]) -> bool:
    """Whether a valid, normalized filter's levels match a valid name's levels."""
    if name_levels[0][:1] == "$" and filter_levels[0] in ("+", "#"):
        return False  # MQTT 4.7.2
    depth_max = len(name_levels)
    for depth, level in enumerate(filter_levels):
        if level == "#":
            return True
        if depth == depth_max or (level != "+" and level != name_levels[depth]):
            return False
    return len(filter_levels) == depth_max


def matches(topic_filter: str, topic_name: str) -> bool:
    """Whether ``topic_filter`` selects ``topic_name`` (MQTT rules, ``*`` as ``#``).

    Raises ``InvalidTopic`` when either is invalid.
    """
    filter_levels = validate_topic_filter(topic_filter).split("/")
    return _levels_match(filter_levels, validate_topic_name(topic_name).split("/"))


@lru_cache(maxsize=NAME_CACHE_ENTRIES_MAX)
def _name_levels(name: str) -> tuple[str, ...]:
    """A valid name's levels; exceptions are not cached, so a bad name raises each time."""
    return tuple(validate_topic_name(name).split("/"))


# A "bag" holds the keys at one place of the trie: None when there are none,
# the key itself when there is one, a set of two or more otherwise. Keys are
# hashable and a set is not, so a bag that is a set is never a key.


def _bag_add(bag: K | set[K] | None, key: K) -> K | set[K]:
    if bag is None:
        return key
    if type(bag) is set:
        bag.add(key)
        return bag
    return {bag, key}  # type: ignore[arg-type]


def _bag_remove(bag: K | set[K] | None, key: K) -> K | set[K] | None:
    """``bag`` without ``key``, which it holds."""
    if type(bag) is set:
        bag.remove(key)
        return next(iter(bag)) if len(bag) == 1 else bag
    assert bag == key
    return None


def _bag_has(bag: K | set[K] | None, key: K) -> bool:
    if type(bag) is set:
        return key in bag
    return bag is not None and bag == key


def _bag_items(bag: K | set[K] | None) -> list[K]:
    if bag is None:
        return []
    if type(bag) is set:
        return list(bag)
    return [bag]  # type: ignore[list-item]


class _Node(Generic[K]):
    """One filter level: children by level text, keys ending here and below."""

    __slots__ = ("children", "here", "subtree")

    def __init__(self) -> None:
        self.children: dict[str, _Node[K]] | None = None
        self.here: K | set[K] | None = None  # filters that end at this level
        self.subtree: K | set[K] | None = None  # filters that end in "/#" here

    def is_empty(self) -> bool:
        return self.children is None and self.here is None and self.subtree is None


class TopicTrie(Generic[K]):
    """Subscriptions ``(filter, key)``, and the keys whose filters match a name.

    A key is any hashable value except ``None``; a key subscribes to a filter
    at most once. Filters are normalized on the way in (``a/*`` is ``a/#``).
    """

    __slots__ = ("_filters", "_root", "_size")

    def __init__(self) -> None:
        self._root: _Node[K] = _Node()
        self._filters: dict[K, str | set[str]] = {}  # key -> its filters, as a bag
        self._size = 0

    def __len__(self) -> int:
        """The number of subscriptions."""
        return self._size

    def add(self, topic_filter: str, key: K) -> bool:
        """Subscribe ``key`` to ``topic_filter``; False if it already was.

        Raises ``InvalidTopic`` for an invalid filter.
        """
        text = validate_topic_filter(topic_filter)
        if key is None:
            raise LocalProtocolError("a subscription key may not be None")
        filters = self._filters.get(key)
        if _bag_has(filters, text):
            return False
        self._filters[key] = _bag_add(filters, text)
        levels = text.split("/")
        below = levels[-1] == "#"
        if below:
            levels.pop()
        node = self._root
        for level in levels:
            children = node.children
            if children is None:
                children = node.children = {}
            child = children.get(level)
            if child is None:
                child = children[level] = _Node()
            node = child
        if below:
            node.subtree = _bag_add(node.subtree, key)
        else:
            node.here = _bag_add(node.here, key)
        self._size += 1
        return True

    def remove(self, topic_filter: str, key: K) -> bool:
        """Unsubscribe ``key`` from ``topic_filter``; False if it was not subscribed.

        Raises ``InvalidTopic`` for an invalid filter.
        """
        text = validate_topic_filter(topic_filter)
        filters = self._filters.get(key)
        if not _bag_has(filters, text):
            return False
        remaining = _bag_remove(filters, text)
        if remaining is None:
            del self._filters[key]
        else:
            self._filters[key] = remaining
        self._unlink(text, key)
        return True

    def remove_key(self, key: K) -> list[str]:
        """Unsubscribe ``key`` from all its filters; returns them, sorted."""
        filters = sorted(_bag_items(self._filters.pop(key, None)))
        for text in filters:
            self._unlink(text, key)
        return filters

    def filters_of(self, key: K) -> frozenset[str]:
        """The (normalized) filters ``key`` subscribes to."""
        return frozenset(_bag_items(self._filters.get(key)))

    def items(self) -> Iterator[tuple[str, K]]:
        """Every subscription as ``(filter, key)``, in no particular order."""
        for key, filters in self._filters.items():
            for text in _bag_items(filters):
                yield text, key

    def match(self, topic_name: str) -> set[K]:
        """The keys with a filter that matches ``topic_name`` (each once).

        Raises ``InvalidTopic`` for an invalid name.
        """
        if type(topic_name) is not str:
            validate_topic_name(topic_name)  # raises unless a str subclass
            topic_name = str.__str__(topic_name)
        levels = _name_levels(topic_name)
        found: set[K] = set()
        root = self._root
        if root.children is None and root.subtree is None:
            return found
        # The root level by itself: its "#" and "+" are first-level wildcards,
        # which a name starting with "$" escapes (MQTT 4.7.2).
        first = levels[0]
        frontier: list[_Node[K]] = []
        children = root.children
        if first[:1] == "$":
            if children is not None and (node := children.get(first)) is not None:
                frontier.append(node)
        else:
            bag = root.subtree
            if bag is not None:
                if type(bag) is set:
                    found.update(bag)
                else:
                    found.add(bag)  # type: ignore[arg-type]
            if children is not None:
                if (node := children.get(first)) is not None:
                    frontier.append(node)
                if (node := children.get("+")) is not None:
                    frontier.append(node)
        for level in levels[1:]:
            if not frontier:
                return found
            following: list[_Node[K]] = []
            for parent in frontier:
                bag = parent.subtree
                if bag is not None:
                    if type(bag) is set:
                        found.update(bag)
                    else:
                        found.add(bag)  # type: ignore[arg-type]
                children = parent.children
                if children is not None:
                    if (node := children.get(level)) is not None:
                        following.append(node)
                    if (node := children.get("+")) is not None:
                        following.append(node)
            frontier = following
        for node in frontier:
            for bag in (node.here, node.subtree):
                if bag is not None:
                    if type(bag) is set:
                        found.update(bag)
                    else:
                        found.add(bag)  # type: ignore[arg-type]
        return found

    def _unlink(self, text: str, key: K) -> None:
        """Take ``key`` out of the node of the valid filter ``text``; prune empty nodes."""
        levels = text.split("/")
        below = levels[-1] == "#"
        if below:
            levels.pop()
        path: list[tuple[_Node[K], str]] = []
        node = self._root
        for level in levels:
            assert node.children is not None
            path.append((node, level))
            node = node.children[level]
        if below:
            node.subtree = _bag_remove(node.subtree, key)
        else:
            node.here = _bag_remove(node.here, key)
        self._size -= 1
        while path and node.is_empty():
            parent, level = path.pop()
            assert parent.children is not None
            del parent.children[level]
            if not parent.children:
                parent.children = None
            node = parent

    def _audit(self) -> int:
        """Check the trie's invariants (for tests); returns its node count."""
        count = 0
        seen = 0
        stack = [self._root]
        while stack:
            node = stack.pop()
            count += 1
            assert node is self._root or not node.is_empty(), "an empty node was left behind"
            for bag in (node.here, node.subtree):
                assert type(bag) is not set or len(bag) >= 2, "a bag of fewer than two keys"
                seen += len(_bag_items(bag))
            if node.children is not None:
                assert node.children, "an empty children dict was left behind"
                stack.extend(node.children.values())
        assert seen == self._size == sum(1 for _ in self.items())
        return count
