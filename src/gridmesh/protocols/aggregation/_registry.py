"""The registry: which aggregation functions a node can compute, by name.

A query names its function; every node builds it from its own registry (see
``_functions``: no code travels). ``builtin_registry()`` holds the built-ins
(``sum``, ``count``, ``min``, ``max``, ``mean``, ``histogram``, ``top_k``,
``vector_sum``, ``collect``); ``DEFAULT_REGISTRY`` is the one nodes use unless
given another, and where applications register their own functions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from gridmesh.errors import LocalProtocolError, MalformedMessage
from gridmesh.protocols.aggregation._collect import Collect
from gridmesh.protocols.aggregation._functions import (
    AggregationFunction,
    Count,
    Histogram,
    Maximum,
    Mean,
    Minimum,
    Sum,
    TopK,
    VectorSum,
)
from gridmesh.wire import check_plain

__all__ = [
    "DEFAULT_REGISTRY",
    "FUNCTION_NAME_BYTES_MAX",
    "PARAMS_ITEMS_MAX",
    "FunctionFactory",
    "FunctionRegistry",
    "builtin_registry",
]

FUNCTION_NAME_BYTES_MAX = 64
#: Items (keys, values, list elements) in a query's parameters; 1,025 edges fit.
PARAMS_ITEMS_MAX = 2048

_NAME = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*")

#: Builds a function from a query's parameters; raises ``LocalProtocolError`` (or
#: ``ValueError``, as pydantic's ``ValidationError`` is) when they are invalid.
FunctionFactory = Callable[[Mapping[str, object]], AggregationFunction[Any, Any]]


class FunctionRegistry:
    """The aggregation functions a node can compute, by name."""

    __slots__ = ("_factories",)

    def __init__(self) -> None:
        self._factories: dict[str, FunctionFactory] = {}

    def register(self, name: str, factory: FunctionFactory) -> None:
        """Make ``name`` computable; a name is taken once (dotted lowercase, <= 64 bytes)."""
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise LocalProtocolError(
                f"function name must be dotted lowercase ASCII words like 'acme.peak', got {name!r}"
            )
        if len(name) > FUNCTION_NAME_BYTES_MAX:
            raise LocalProtocolError(f"function name exceeds {FUNCTION_NAME_BYTES_MAX} bytes")
        if name in self._factories:
            raise LocalProtocolError(f"aggregation function {name!r} is already registered")
        if not callable(factory):
            raise LocalProtocolError(f"the factory for {name!r} is not callable")
        self._factories[name] = factory

    def create(
        self, name: str, params: Mapping[str, object] | None = None
    ) -> AggregationFunction[Any, Any]:
        """The function ``name`` with ``params``, for the local application.

        Raises ``LocalProtocolError`` for an unknown name or invalid parameters:
        the caller misused the API (a query from a peer goes to ``create_from_wire``).
        """
        factory = self._factories.get(name) if isinstance(name, str) else None
        if factory is None:
            raise LocalProtocolError(
                f"unknown aggregation function {name!r}; known: {', '.join(self.names())}"
            )
        params = {} if params is None else params
        if not isinstance(params, Mapping):
            raise LocalProtocolError(f"params of {name!r} must be a map, got {params!r}")
        try:
            check_plain(dict(params), visits_max=PARAMS_ITEMS_MAX)  # must be able to travel
        except LocalProtocolError as exc:
            raise LocalProtocolError(f"params of {name!r} cannot travel: {exc}") from None
        try:
            function = factory(params)
        except ValueError as exc:  # an application factory's own validation
            raise LocalProtocolError(f"{name}: invalid params: {exc}") from None
        if not isinstance(function, AggregationFunction):
            raise LocalProtocolError(f"the factory for {name!r} built no AggregationFunction")
        return function

    def create_from_wire(self, name: object, params: object) -> AggregationFunction[Any, Any]:
        """The function a peer's query names; ``MalformedMessage`` if it cannot be built.

        MalformedMessage, a ``RemoteProtocolError``, because the peer sent it: the
        node drops the query and counts it, and the error never reaches the
        application as its own mistake. An unknown name is "malformed" to this
        node even if another node knows it (version skew looks the same on the wire).
        """
        if type(name) is not str or name not in self._factories:
            raise MalformedMessage("unknown aggregation function", field="function")
        if type(params) is not dict:
            raise MalformedMessage("expected a map", field="params")
        try:
            return self.create(name, params)
        except LocalProtocolError as exc:
            raise MalformedMessage(str(exc), field="params") from None

    def names(self) -> tuple[str, ...]:
        """The registered names, sorted."""
        return tuple(sorted(self._factories))

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def copy(self) -> FunctionRegistry:
        """An independent registry with the same functions."""
        registry = FunctionRegistry()
        registry._factories.update(self._factories)
        return registry


def builtin_registry() -> FunctionRegistry:
    """A new registry holding the built-in functions only."""
    registry = FunctionRegistry()
    builtins: dict[str, FunctionFactory] = {
        "sum": Sum.from_params,
        "count": Count.from_params,
        "min": Minimum.from_params,
        "max": Maximum.from_params,
        "mean": Mean.from_params,
        "histogram": Histogram.from_params,
        "top_k": TopK.from_params,
        "vector_sum": VectorSum.from_params,
        "collect": Collect.from_params,
    }
    for name, factory in builtins.items():
        registry.register(name, factory)
    return registry


#: The registry nodes use unless given another; applications add their functions here.
DEFAULT_REGISTRY = builtin_registry()
