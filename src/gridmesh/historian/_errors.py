"""``HistorianError``: the event store cannot do what it was asked.

Raised for a database that is corrupt, locked by another process for longer
than the busy timeout, unwritable (a missing directory, no permission, a full
disk), written by a newer gridmesh, or unreachable (PostgreSQL). ``location``
is the SQLite path or the PostgreSQL DSN without its password; ``reason`` is a
short, stable code for metrics and tests.
"""

from __future__ import annotations

from gridmesh.errors import GridmeshError

__all__ = ["HistorianError"]


class HistorianError(GridmeshError):
    """The historian's database failed; nothing in the failed call was acknowledged.

    ``reason`` is one of ``corrupt``, ``locked``, ``unwritable``, ``schema``,
    ``unavailable`` (a missing driver or server) and ``database`` (anything else).
    """

    def __init__(self, location: str, detail: str, *, reason: str = "database") -> None:
        self.location = location
        self.detail = detail
        self.reason = reason
        super().__init__(f"historian {location}: {reason}: {detail}")
