"""Readings: the value each simulated node answers aggregation queries with.

A reading is drawn once per node, at the start of a run, from its own
``Random`` seeded with ``(seed, reading name, node id)``: so a node's value
depends neither on the other nodes nor on the order the runner asks, and a
restarted node (``recover_s``) answers with the value it had before.

Seed 000's second scenario (IV.C) is the model: a smart meter sums what the
devices (IEDs) behind it need in each of the next night's three 8-hour
periods. So a node has ``devices_min..devices_max`` devices; for each vector
element (period), each device needs energy with probability ``share`` and
then draws it from the element's distribution; the node's reading is the
per-element sum over its devices (``math.fsum``), rounded to ``decimals``.
A scalar reading is the same with one element; ``total_of`` makes a scalar
from another reading's vector (the night's total), for the functions that
take numbers (``count``, ``max``, push-sum).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from random import Random
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gridmesh.protocols.aggregation import VECTOR_LENGTH_MAX

__all__ = [
    "ConstantValue",
    "DistributionSpec",
    "LogNormalValue",
    "ReadingSpec",
    "UniformValue",
    "Value",
    "draw_reading",
    "reading_table",
]

#: The largest magnitude a drawn value may have: far inside exact sums' range.
VALUE_ABS_MAX = 1e12
#: Devices (IEDs) behind one node.
DEVICES_MAX = 1000


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Distribution(_Spec):
    share: float = Field(
        default=1.0, ge=0.0, le=1.0, description="probability a device has a value (else 0)"
    )


class ConstantValue(_Distribution):
    """Every device that has a value has exactly ``value``."""

    model: Literal["constant"] = "constant"
    value: float = Field(ge=-VALUE_ABS_MAX, le=VALUE_ABS_MAX)

    def draw(self, rng: Random) -> float:
        return self.value


class UniformValue(_Distribution):
    """Uniform in ``[low, high]``."""

    model: Literal["uniform"] = "uniform"
    low: float = Field(ge=-VALUE_ABS_MAX, le=VALUE_ABS_MAX)
    high: float = Field(ge=-VALUE_ABS_MAX, le=VALUE_ABS_MAX)

    @model_validator(mode="after")
    def _ordered(self) -> UniformValue:
        if self.high < self.low:
            raise ValueError("high must be at least low")
        return self

    def draw(self, rng: Random) -> float:
        return rng.uniform(self.low, self.high)


class LogNormalValue(_Distribution):
    """Log-normal with the given median, capped at ``max`` (a few large consumers)."""

    model: Literal["lognormal"] = "lognormal"
    median: float = Field(gt=0.0, le=VALUE_ABS_MAX)
    sigma: float = Field(ge=0.0, le=5.0)
    max: float = Field(default=VALUE_ABS_MAX, gt=0.0, le=VALUE_ABS_MAX)

    def draw(self, rng: Random) -> float:
        return min(rng.lognormvariate(math.log(self.median), self.sigma), self.max)


DistributionSpec = Annotated[
    ConstantValue | UniformValue | LogNormalValue, Field(discriminator="model")
]


class ReadingSpec(_Spec):
    """One named reading; give exactly one of ``value``, ``vector`` and ``total_of``.

    ``roles``: the roles whose nodes hold it (default: every node); the others
    relay queries for it but add nothing.
    """

    roles: tuple[str, ...] | None = Field(default=None, min_length=1, max_length=1000)
    devices_min: int = Field(default=1, ge=0, le=DEVICES_MAX)
    devices_max: int = Field(default=1, ge=0, le=DEVICES_MAX)
    value: DistributionSpec | None = None
    vector: tuple[DistributionSpec, ...] | None = Field(
        default=None, min_length=1, max_length=VECTOR_LENGTH_MAX
    )
    total_of: str | None = Field(
        default=None, description="the sum of the elements of this vector reading"
    )
    decimals: int | None = Field(
        default=None, ge=0, le=12, description="round each element to this many decimals"
    )

    @model_validator(mode="after")
    def _one_source(self) -> ReadingSpec:
        given = [n for n in ("value", "vector", "total_of") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of value (a scalar), vector (one distribution per "
                f"element) or total_of (a vector reading's name); got {given or 'none'}"
            )
        if self.devices_max < self.devices_min:
            raise ValueError("devices_max must be at least devices_min")
        if self.total_of is not None and self.roles is not None:
            raise ValueError("a total_of reading is held by the nodes that hold its vector")
        return self

    @property
    def length(self) -> int | None:
        """Elements of a vector reading; ``None`` for a scalar."""
        return None if self.vector is None else len(self.vector)


#: A node's value of one reading: a number, or one number per vector element.
Value = float | list[float]


def draw_reading(spec: ReadingSpec, name: str, node_id: int, seed: int) -> Value:
    """Node ``node_id``'s value of reading ``name`` (a ``value`` or ``vector`` reading)."""
    elements: Sequence[ConstantValue | UniformValue | LogNormalValue]
    if spec.vector is not None:
        elements = spec.vector
    else:
        assert spec.value is not None, "total_of readings are derived, not drawn"
        elements = (spec.value,)
    rng = Random(f"gridmesh-reading:{seed}:{name}:{node_id}")
    devices = rng.randint(spec.devices_min, spec.devices_max)
    totals = []
    for element in elements:
        needs = [element.draw(rng) for _ in range(devices) if rng.random() < element.share]
        total = math.fsum(needs)
        totals.append(total if spec.decimals is None else round(total, spec.decimals))
    return totals if spec.vector is not None else totals[0]


def reading_table(
    readings: Mapping[str, ReadingSpec],
    holders: Mapping[str, Sequence[int]],
    node_count: int,
    seed: int,
) -> dict[str, list[Value | None]]:
    """Every reading's value by node id (index 0 unused; ``None``: the node has none).

    ``holders`` gives the node ids that hold each drawn reading; a ``total_of``
    reading is held by the holders of its vector.
    """
    table: dict[str, list[Value | None]] = {}
    for name, spec in readings.items():
        if spec.total_of is None:
            column: list[Value | None] = [None] * (node_count + 1)
            for node_id in holders[name]:
                column[node_id] = draw_reading(spec, name, node_id, seed)
            table[name] = column
    for name, spec in readings.items():
        if spec.total_of is not None:
            source = table[spec.total_of]
            table[name] = [
                None if vector is None else _total(vector, spec.decimals) for vector in source
            ]
    return table


def _total(vector: Value, decimals: int | None) -> float:
    assert isinstance(vector, list), "total_of names a vector reading"
    total = math.fsum(vector)
    return total if decimals is None else round(total, decimals)
