"""Aggregation: computing one value (a sum, a histogram, the top k) over many nodes.

* ``FunctionRegistry``, ``DEFAULT_REGISTRY``: the functions a query may name
  (``sum``, ``count``, ``min``, ``max``, ``mean``, ``histogram``, ``top_k``,
  ``vector_sum``, and what applications register); no code travels;
* ``AggregationFunction``: lift, combine, identity, finish, encode and decode
  over bounded partials, associative and commutative exactly;
* ``ExactSum``: float and int sums kept exactly, rounded once at the end.
"""

from __future__ import annotations

from gridmesh.protocols.aggregation._functions import (
    DEFAULT_REGISTRY,
    FUNCTION_NAME_BYTES_MAX,
    HISTOGRAM_BINS_MAX,
    SUM_MAGNITUDE_LOG2_MAX,
    TOP_K_MAX,
    VECTOR_LENGTH_MAX,
    AggregationFunction,
    Count,
    ExactSum,
    FunctionFactory,
    FunctionRegistry,
    Histogram,
    HistogramResult,
    Maximum,
    Mean,
    Minimum,
    Number,
    Sum,
    TopK,
    VectorSum,
    builtin_registry,
)

__all__ = [
    "DEFAULT_REGISTRY",
    "FUNCTION_NAME_BYTES_MAX",
    "HISTOGRAM_BINS_MAX",
    "SUM_MAGNITUDE_LOG2_MAX",
    "TOP_K_MAX",
    "VECTOR_LENGTH_MAX",
    "AggregationFunction",
    "Count",
    "ExactSum",
    "FunctionFactory",
    "FunctionRegistry",
    "Histogram",
    "HistogramResult",
    "Maximum",
    "Mean",
    "Minimum",
    "Number",
    "Sum",
    "TopK",
    "VectorSum",
    "builtin_registry",
]
