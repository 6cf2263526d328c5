"""The simulated network: link classes with latency models and loss.

Nodes are grouped into LAN *domains* of ``domain_size`` consecutive node ids
(a DTC and its meters, a substation LAN). A message between two nodes of one
domain crosses a ``lan`` link; any other message crosses a ``wan`` link. Each
class has a latency model, sampled independently per message (so messages
may overtake each other, as on real networks), and a loss probability.

Draws come from a seeded NumPy generator in chunks and are consumed one at a
time (``next(stream)``): about 50 ns a draw instead of about 400 ns for
``random.gauss`` and friends, and just as deterministic.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from typing import Annotated, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "DRAWS_PER_CHUNK",
    "ConstantLatency",
    "LatencyModel",
    "LinkClass",
    "LogNormalLatency",
    "NetworkConfig",
    "UniformLatency",
    "uniform_stream",
]

#: How many draws a stream takes from its generator at a time.
DRAWS_PER_CHUNK = 16_384


def _chunked(draw: Callable[[int], NDArray[np.float64]]) -> Iterator[float]:
    """An endless stream of floats, drawn ``DRAWS_PER_CHUNK`` at a time."""
    return itertools.chain.from_iterable(iter(lambda: draw(DRAWS_PER_CHUNK).tolist(), None))


def uniform_stream(generator: np.random.Generator) -> Iterator[float]:
    """Endless uniform draws in [0, 1): loss decisions and the like."""
    return _chunked(generator.random)


_LATENCY_S_MAX = 3600.0


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ConstantLatency(_Frozen):
    """Every message takes exactly ``delay_s``."""

    model: Literal["constant"] = "constant"
    delay_s: float = Field(ge=0.0, le=_LATENCY_S_MAX)

    def stream(self, generator: np.random.Generator) -> Iterator[float]:
        return itertools.repeat(self.delay_s)


class UniformLatency(_Frozen):
    """Latency drawn uniformly from ``[low_s, high_s]``."""

    model: Literal["uniform"] = "uniform"
    low_s: float = Field(ge=0.0, le=_LATENCY_S_MAX)
    high_s: float = Field(ge=0.0, le=_LATENCY_S_MAX)

    @model_validator(mode="after")
    def _ordered(self) -> UniformLatency:
        if self.high_s < self.low_s:
            raise ValueError("high_s must be at least low_s")
        return self

    def stream(self, generator: np.random.Generator) -> Iterator[float]:
        low, high = self.low_s, self.high_s
        return _chunked(lambda n: generator.uniform(low, high, n))


class LogNormalLatency(_Frozen):
    """Log-normal latency with the given median, capped at ``max_s`` (WAN tails)."""

    model: Literal["lognormal"] = "lognormal"
    median_s: float = Field(gt=0.0, le=_LATENCY_S_MAX)
    sigma: float = Field(ge=0.0, le=5.0)
    max_s: float = Field(default=60.0, gt=0.0, le=_LATENCY_S_MAX)

    def stream(self, generator: np.random.Generator) -> Iterator[float]:
        mu, sigma, cap = math.log(self.median_s), self.sigma, self.max_s
        return _chunked(lambda n: np.minimum(generator.lognormal(mu, sigma, n), cap))


LatencyModel = Annotated[
    ConstantLatency | UniformLatency | LogNormalLatency, Field(discriminator="model")
]


class LinkClass(_Frozen):
    """One class of links: how long a message takes and how often it is lost."""

    latency: LatencyModel
    loss: float = Field(default=0.0, ge=0.0, le=1.0)


class NetworkConfig(_Frozen):
    """The simulated network between nodes."""

    lan: LinkClass = LinkClass(latency=UniformLatency(low_s=0.001, high_s=0.005))
    wan: LinkClass = LinkClass(latency=LogNormalLatency(median_s=0.040, sigma=0.4))
    domain_size: int = Field(default=100, ge=1, le=10_000_000)
