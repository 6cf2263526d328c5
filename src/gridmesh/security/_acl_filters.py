"""Topic filters with a ``{node_id}`` level: compiled matching and exact coverage.

The access policy (``_acl``) keeps its rules and grants here in compiled form.

*Templates.* A filter may hold the whole level ``{node_id}``, the node id of
the identity being checked. It is validated with the level read as ``1``
(``validate_topic_filter``, which also turns a last ``*`` into ``#``) and kept
as levels, the placeholder as ``NODE_LEVEL``: a level no topic name can have
(names never hold U+0000).

*Matching* (``FilterSet.matches``): a trie of the filters, one node per
level, walked along the name like ``topics.TopicTrie`` but stopping at the
first match; at each node the name's level, ``+`` and, when the level is the
node id, ``NODE_LEVEL`` are followed. A first level starting with ``$``
follows no wildcard (MQTT 4.7.2).

*Coverage* (``covers``, ``FilterSet.covers``): a filter F is covered by a set
of filters iff every topic name F matches is matched by one of them. The walk
goes level by level through F, keeping the suffixes of the allowed filters
that can still match: at a literal level of F the allowed filters with that
level or ``+`` follow; at a ``+`` of F (and below a ``#``) only those with
``+``, because some level value is spelled out by no allowed filter (levels
are unbounded text); an allowed ``#`` covers whatever follows, the parent
level included; a ``#`` of F also needs the name to be able to end there
(except at the root: a name has a level). It is exact for unions:
``{"a", "a/+/#"}`` covers ``a/#`` though neither does alone. The topic limits
(``TOPIC_LEVELS_MAX``, ``TOPIC_BYTES_MAX``) are ignored, which can only
refuse, never allow, more.

This module does no I/O and keeps no clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from gridmesh.errors import InvalidTopic
from gridmesh.topics import validate_topic_filter, validate_topic_name

__all__ = [
    "NODE_ID_PLACEHOLDER",
    "NODE_LEVEL",
    "FilterSet",
    "covers",
    "name_levels",
    "template_filter",
    "template_text",
]

#: The level of a filter that is replaced by the node id.
NODE_ID_PLACEHOLDER = "{node_id}"
#: The level a compiled filter holds for ``{node_id}``: no topic name holds U+0000.
NODE_LEVEL = "\x00"
#: How many recently checked topic and service names are kept split into levels.
_NAME_LEVELS_CACHED_MAX = 4096
# Something that looks like a placeholder: a typo ({nodeid}) must not pass as text.
_PLACEHOLDER_LIKE = re.compile(r"\{[A-Za-z0-9_]*\}")


def template_filter(text: object) -> tuple[str, ...]:
    """A filter with ``{node_id}`` levels, validated; its levels, placeholder as ``NODE_LEVEL``.

    Raises ``ValueError`` naming the problem.
    """
    if not isinstance(text, str):
        raise ValueError(f"a topic filter is text, got {text!r}")
    levels = text.split("/")
    placeholder_at = [depth for depth, level in enumerate(levels) if level == NODE_ID_PLACEHOLDER]
    for level in levels:
        if level != NODE_ID_PLACEHOLDER and _PLACEHOLDER_LIKE.search(level):
            raise ValueError(
                f"topic filter {text!r}: the only placeholder is {NODE_ID_PLACEHOLDER}, "
                "as a whole level"
            )
    for depth in placeholder_at:
        levels[depth] = "1"
    try:
        normalized = validate_topic_filter("/".join(levels)).split("/")
    except InvalidTopic as exc:
        raise ValueError(f"topic filter {text!r}: {exc.problem}") from None
    for depth in placeholder_at:
        normalized[depth] = NODE_LEVEL
    return tuple(normalized)


def template_text(levels: tuple[str, ...]) -> str:
    return "/".join(NODE_ID_PLACEHOLDER if level == NODE_LEVEL else level for level in levels)


class _FilterNode:
    """One level of compiled filters: children by level text; whether a filter ends here."""

    __slots__ = ("below", "children", "here")

    def __init__(self) -> None:
        self.children: dict[str, _FilterNode] | None = None
        self.here = False  # a filter ends at this level
        self.below = False  # a filter ends in "/#" here ("#" alone at the root)


class FilterSet:
    """Compiled filters that may hold ``{node_id}`` levels; answers "does any match?"."""

    __slots__ = ("_root", "templates")

    def __init__(self, templates: Iterable[tuple[str, ...]]) -> None:
        self.templates = tuple(dict.fromkeys(templates))
        self._root = _FilterNode()
        for levels in self.templates:
            node = self._root
            below = levels[-1] == "#"
            for level in levels[:-1] if below else levels:
                if node.children is None:
                    node.children = {}
                node = node.children.setdefault(level, _FilterNode())
            if below:
                node.below = True
            else:
                node.here = True

    def matches(self, levels: tuple[str, ...], node_text: str) -> bool:
        """Whether a filter, ``{node_id}`` read as ``node_text``, matches the name's levels."""
        root = self._root
        first = levels[0]
        dollar = first[:1] == "$"  # wildcards at the first level do not match it (MQTT 4.7.2)
        if root.below and not dollar:
            return True
        children = root.children
        if children is None:
            return False
        stack: list[tuple[_FilterNode, int]] = []
        if (node := children.get(first)) is not None:
            stack.append((node, 1))
        if not dollar and (node := children.get("+")) is not None:
            stack.append((node, 1))
        if first == node_text and (node := children.get(NODE_LEVEL)) is not None:
            stack.append((node, 1))
        depth_max = len(levels)
        while stack:
            node, depth = stack.pop()
            if node.below:  # "#" matches the parent level and everything below
                return True
            if depth == depth_max:
                if node.here:
                    return True
                continue
            children = node.children
            if children is None:
                continue
            level = levels[depth]
            if (child := children.get(level)) is not None:
                stack.append((child, depth + 1))
            if (child := children.get("+")) is not None:
                stack.append((child, depth + 1))
            if level == node_text and (child := children.get(NODE_LEVEL)) is not None:
                stack.append((child, depth + 1))
        return False

    def covers(self, topic_filter: tuple[str, ...], node_text: str) -> bool:
        """Whether these filters, ``{node_id}`` read as ``node_text``, cover ``topic_filter``."""
        expanded = [
            tuple(node_text if level == NODE_LEVEL else level for level in levels)
            for levels in self.templates
        ]
        return _covered(topic_filter, expanded)


def _covered(topic_filter: tuple[str, ...], allowed: list[tuple[str, ...]]) -> bool:
    """Whether every name ``topic_filter`` matches is matched by a filter of ``allowed``.

    Both hold valid, normalized filters as levels (see the module docstring).
    """
    rest = topic_filter  # the levels of the checked filter still to walk
    depth = 0
    while allowed:
        head = rest[0] if rest else None  # None: the name ends here
        # A name whose first level starts with "$" escapes first-level wildcards.
        shielded = depth == 0 and head is not None and head[:1] == "$"
        if not shielded and any(levels and levels[0] == "#" for levels in allowed):
            return True  # an allowed "#" matches whatever follows, and the parent
        if head is None:
            return any(not levels for levels in allowed)
        if head == "#":
            # Names that end here (a "#" matches its parent level: never at the root,
            # a name has a level) and names with one more level of any value.
            if depth > 0 and not any(not levels for levels in allowed):
                return False
            allowed = [levels[1:] for levels in allowed if levels and levels[0] == "+"]
            depth += 1
            continue
        if head == "+":
            # Some level value is spelled out by no allowed filter: only "+" follows it.
            allowed = [levels[1:] for levels in allowed if levels and levels[0] == "+"]
        elif shielded:
            allowed = [levels[1:] for levels in allowed if levels and levels[0] == head]
        else:
            allowed = [levels[1:] for levels in allowed if levels and levels[0] in (head, "+")]
        rest = rest[1:]
        depth += 1
    return False


def covers(allowed: Iterable[str], topic_filter: str) -> bool:
    """Whether every topic name ``topic_filter`` matches is matched by one of ``allowed``.

    Exact for MQTT ``+``, ``#`` and the ``$`` rule, over a set of filters. Raises
    ``InvalidTopic`` for an invalid filter.
    """
    levels = tuple(validate_topic_filter(topic_filter).split("/"))
    return _covered(levels, [tuple(validate_topic_filter(one).split("/")) for one in allowed])


@lru_cache(maxsize=_NAME_LEVELS_CACHED_MAX)
def name_levels(name: str) -> tuple[str, ...] | None:
    """A topic name's levels, or None if it is not a valid name."""
    try:
        return tuple(validate_topic_name(name).split("/"))
    except InvalidTopic:
        return None
