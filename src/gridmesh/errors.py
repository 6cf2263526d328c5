"""One error hierarchy for all of gridmesh.

``GridmeshError`` is the root. Three families hang off it:

* ``RemoteProtocolError``: a peer sent something wrong (malformed bytes, an
  oversized message, a field of the wrong type). The node drops the message,
  counts it under ``reason`` and keeps running. Any other exception escaping a
  protocol core while handling peer input is a bug.
* ``LocalProtocolError``: the local application misused the API (an invalid
  payload, a fanout out of range).
* ``ConfigError``: a user's configuration, scenario file or command line is
  wrong. It names the source, the field and what was expected; the CLI prints
  it as one paragraph and exits with status 2.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "GridmeshError",
    "InvalidTopic",
    "LocalProtocolError",
    "MalformedMessage",
    "MessageTooLarge",
    "RemoteProtocolError",
    "UnexpectedMessage",
    "UnsupportedVersion",
]


class GridmeshError(Exception):
    """Root of every error gridmesh raises on purpose."""


class RemoteProtocolError(GridmeshError):
    """A peer sent something that violates the protocol.

    ``reason`` is a short, stable code used as the metrics label;
    ``field`` names the offending part of the message when known.
    """

    reason: str = "protocol"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        self.detail = detail
        self.field = field
        where = f" (field {field!r})" if field else ""
        super().__init__(f"{self.reason}: {detail}{where}")


class MalformedMessage(RemoteProtocolError):
    """The bytes are not a well-formed gridmesh message."""

    reason = "malformed"


class MessageTooLarge(RemoteProtocolError):
    """The message exceeds ``message_bytes_max``."""

    reason = "too_large"

    def __init__(self, size_bytes: int, limit_bytes: int) -> None:
        self.size_bytes = size_bytes
        self.limit_bytes = limit_bytes
        super().__init__(f"{size_bytes} bytes exceeds message_bytes_max={limit_bytes}")


class UnexpectedMessage(RemoteProtocolError):
    """A well-formed message nobody asked for (a reply to no request, say)."""

    reason = "unexpected"


class UnsupportedVersion(RemoteProtocolError):
    """The message was encoded with a wire version this node does not speak."""

    reason = "version"

    def __init__(self, version: object) -> None:
        self.version = version
        super().__init__(f"wire version {version!r} is not supported", field="version")


class LocalProtocolError(GridmeshError):
    """The local application used the API in a way the protocol forbids."""


class InvalidTopic(LocalProtocolError):
    """A topic name or filter breaks the rules of ``gridmesh.topics``.

    Raised to the local caller; a protocol that got the topic from a peer
    turns it into a ``RemoteProtocolError`` instead.

    ``topic`` is the offending text (``repr`` of the value when it was not
    text), ``kind`` is ``"name"`` or ``"filter"`` and ``problem`` a short,
    fixed phrase saying which rule it breaks (see docs/TOPICS.md).
    """

    def __init__(self, topic: str, problem: str, *, kind: str = "name") -> None:
        self.topic = topic
        self.problem = problem
        self.kind = kind
        shown = topic if len(topic) <= 80 else topic[:77] + "..."
        super().__init__(f"invalid topic {kind} {shown!r}: {problem}")


class ConfigError(GridmeshError):
    """A configuration, scenario file or command-line value is invalid.

    ``source`` is the file (or ``"command line"``), ``field`` the dotted path
    of the value, ``expected`` what would have been accepted.
    """

    def __init__(
        self, source: str, field: str, expected: str, *, got: object = None, line: int | None = None
    ) -> None:
        self.source = source
        self.field = field
        self.expected = expected
        self.got = got
        self.line = line
        super().__init__(self.explain())

    def explain(self) -> str:
        """One paragraph a user can act on."""
        where = f"{self.source}, line {self.line}" if self.line is not None else self.source
        got = "" if self.got is None else f"; got {self.got!r}"
        return f"{where}: field '{self.field}': expected {self.expected}{got}."
