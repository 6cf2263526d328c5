"""``HistorianConfig``: where events are kept, for how long, and how durably.

Every field has a sane default, so ``HistorianConfig()`` is a working SQLite
historian in the current directory keeping 30 days and at most 10^7 events.
The limits are wide enough for a substation's Event Manager and narrow enough
that a typo (``retention_s = 30`` meant as days) is still a valid, if short,
choice rather than a silent unbounded store: ``events_max`` always applies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "EVENTS_MAX_LIMIT",
    "RETENTION_S_DEFAULT",
    "RETENTION_S_MAX",
    "HistorianConfig",
]

RETENTION_S_DEFAULT = 30 * 24 * 3600
#: One hundred years: "keep everything" within ``events_max``.
RETENTION_S_MAX = 100 * 365 * 24 * 3600
#: 10^10 rows of roughly 100 bytes is a terabyte: beyond that, use a real TSDB.
EVENTS_MAX_LIMIT = 10**10


class HistorianConfig(BaseModel):
    """Where and how the Event Manager persists events (see docs/HISTORIAN.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    backend: Literal["sqlite", "postgres"] = "sqlite"
    path: Path = Field(
        default=Path("gridmesh-events.sqlite3"),
        description="SQLite database file (backend sqlite); created with mode 0600",
    )
    dsn: str | None = Field(
        default=None,
        description="PostgreSQL connection string (backend postgres), e.g. "
        "'host=127.0.0.1 port=5432 dbname=gridmesh user=gridmesh'",
    )
    retention_s: int = Field(default=RETENTION_S_DEFAULT, ge=1, le=RETENTION_S_MAX)
    events_max: int = Field(default=10_000_000, ge=1, le=EVENTS_MAX_LIMIT)
    synchronous: Literal["full", "normal"] = Field(
        default="full",
        description="SQLite only. full: an acknowledged event survives a process kill and a "
        "power loss; normal (WAL): it survives a process kill, not a power loss",
    )
    busy_timeout_s: float = Field(
        default=5.0,
        ge=0.0,
        le=600.0,
        description="how long a call waits for a lock another process holds",
    )

    @model_validator(mode="after")
    def _backend_has_its_location(self) -> HistorianConfig:
        if self.backend == "postgres" and not self.dsn:
            raise ValueError("backend = 'postgres' needs a dsn")
        if self.backend == "sqlite" and self.dsn is not None:
            raise ValueError("dsn is for backend = 'postgres'; the sqlite backend uses path")
        return self
