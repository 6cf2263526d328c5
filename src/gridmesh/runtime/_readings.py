"""Static readings: the numbers a ``gridmesh node`` process answers aggregation with.

A node's configuration file may hold a ``[readings]`` table, reading name ->
a number or a list of numbers::

    [readings]
    demand_kw = 3.75                  # sum, count, min, max, mean, histogram, top_k; push-sum
    night_kwh = [1.2, 0.4, 2.25]      # vector_sum with length = 3

The node registers each as a constant ``ReadingProvider``, so tree aggregation
and push-sum queries for that name find it. A value is checked here, where the
user can still be told which file and field are wrong, against the same rules
the aggregation functions apply when they lift it: an ``int`` in the wire's
64-bit range or a finite ``float``, never a boolean; a vector of 1 to
``VECTOR_LENGTH_MAX`` of them; a name of 1 to ``READING_BYTES_MAX`` UTF-8
bytes; at most ``aggregation.readings_max`` readings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from gridmesh.config import validate_model
from gridmesh.errors import ConfigError
from gridmesh.protocols.aggregation import READING_BYTES_MAX, VECTOR_LENGTH_MAX, ReadingProvider
from gridmesh.wire import UINT64_MAX

__all__ = ["READINGS_MAX", "ReadingValue", "StaticReadings", "constant_reading", "load_readings"]

#: The most readings a file may hold; ``aggregation.readings_max`` may lower it.
READINGS_MAX = 65_536

Number = int | float
#: A static reading: one number, or a vector (a tuple, so nobody can change it in place).
ReadingValue = Number | tuple[Number, ...]

_EXPECTED = (
    f"a number (an integer or a finite float, not a boolean) or a list of "
    f"1..{VECTOR_LENGTH_MAX:,} numbers"
)


def _is_number(value: object) -> bool:
    if type(value) is int:
        return -UINT64_MAX - 1 <= value <= UINT64_MAX
    return type(value) is float and math.isfinite(value)


def _reading_value(value: object) -> ReadingValue:
    if _is_number(value):
        return value  # type: ignore[return-value]  # checked above
    if (
        isinstance(value, list | tuple)
        and 1 <= len(value) <= VECTOR_LENGTH_MAX
        and all(_is_number(item) for item in value)
    ):
        return tuple(value)
    raise ValueError(_EXPECTED)


class StaticReadings(BaseModel):
    """The ``[readings]`` table of a node's configuration, validated."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    readings: dict[str, Annotated[ReadingValue, BeforeValidator(_reading_value)]] = Field(
        default_factory=dict, max_length=READINGS_MAX
    )

    @field_validator("readings")
    @classmethod
    def _names_fit(cls, readings: dict[str, ReadingValue]) -> dict[str, ReadingValue]:
        for name in readings:
            if not 0 < len(name.encode()) <= READING_BYTES_MAX:
                raise ValueError(
                    f"reading names of 1..{READING_BYTES_MAX} UTF-8 bytes, not {name!r}"
                )
        return readings


def load_readings(
    raw: object, *, source: str, docs: str, readings_max: int = READINGS_MAX
) -> Mapping[str, ReadingValue]:
    """``raw`` (a ``[readings]`` table) validated; ``ConfigError`` naming the field if not."""
    if not isinstance(raw, dict):
        raise ConfigError(
            source, "readings", "a table: reading name = a number or a list of numbers", got=raw
        )
    readings = validate_model(StaticReadings, {"readings": raw}, source=source, docs=docs)
    count = len(readings.readings)
    if count > readings_max:
        raise ConfigError(
            source,
            "readings",
            f"at most {readings_max:,} readings (aggregation.readings_max)",
            got=f"{count:,} readings",
        )
    return readings.readings


def constant_reading(value: ReadingValue) -> ReadingProvider:
    """A provider that answers ``value`` whenever asked."""

    def provider(now: float) -> object:
        return value

    return provider
