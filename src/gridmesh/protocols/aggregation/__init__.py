"""Aggregation: computing one value (a sum, a histogram, the top k) over many nodes.

* ``FunctionRegistry``, ``DEFAULT_REGISTRY``: the functions a query may name
  (``sum``, ``count``, ``min``, ``max``, ``mean``, ``histogram``, ``top_k``,
  ``vector_sum``, ``collect``, and what applications register); no code travels;
* ``AggregationFunction``: lift, combine, identity, finish, encode and decode
  over bounded partials, associative and commutative exactly;
* ``ExactSum``: float and int sums kept exactly, rounded once at the end;
* ``Collect``: every reading with its node id, uncombined, bounded in entries
  and bytes, the cut counted (``Collection``, ``CollectResult``);
* ``TreeAggregation``: seed 000's request-response gossip: a query spreads,
  replies come back along its implicit tree, combined level by level, with
  the coverage (``AggregateResult``), from every node or from a segment;
* ``PushSum``: push-sum (Kempe et al. 2003): every node's running estimate
  (``Estimate``) of a mean, a sum or the network size, exact in mass under
  message loss (cumulative flows).
"""

from __future__ import annotations

from gridmesh.protocols.aggregation._collect import (
    COLLECT_BYTES_MAX,
    COLLECT_BYTES_MIN,
    COLLECT_LIMIT_DEFAULT,
    COLLECT_LIMIT_MAX,
    COLLECT_VECTOR_LENGTH_MAX,
    PARTIAL_OVERHEAD_BYTES,
    REPLY_OVERHEAD_BYTES,
    Collect,
    Collected,
    CollectedValue,
    Collection,
    CollectResult,
)
from gridmesh.protocols.aggregation._functions import (
    HISTOGRAM_BINS_MAX,
    SUM_MAGNITUDE_LOG2_MAX,
    TOP_K_MAX,
    VECTOR_LENGTH_MAX,
    AggregationFunction,
    Count,
    ExactSum,
    Histogram,
    HistogramResult,
    Maximum,
    Mean,
    Minimum,
    Number,
    Sum,
    TopK,
    VectorSum,
)
from gridmesh.protocols.aggregation._pushsum import (
    PUSHSUM_FUNCTIONS,
    PUSHSUM_ROUNDS_MAX,
    Estimate,
    PushSum,
    PushSumConfig,
    ReadingLookup,
)
from gridmesh.protocols.aggregation._registry import (
    DEFAULT_REGISTRY,
    FUNCTION_NAME_BYTES_MAX,
    FunctionFactory,
    FunctionRegistry,
    builtin_registry,
)
from gridmesh.protocols.aggregation._tree import (
    AGG_FANOUT_DEFAULT,
    AGG_FANOUT_MAX,
    HOP_TIMEOUT_MS_MAX,
    READING_BYTES_MAX,
    AggregateResult,
    CollectCallback,
    ReadingProvider,
    ResultCallback,
    Segment,
    TreeAggregation,
    TreeAggregationConfig,
)

__all__ = [
    "AGG_FANOUT_DEFAULT",
    "AGG_FANOUT_MAX",
    "COLLECT_BYTES_MAX",
    "COLLECT_BYTES_MIN",
    "COLLECT_LIMIT_DEFAULT",
    "COLLECT_LIMIT_MAX",
    "COLLECT_VECTOR_LENGTH_MAX",
    "DEFAULT_REGISTRY",
    "FUNCTION_NAME_BYTES_MAX",
    "HISTOGRAM_BINS_MAX",
    "HOP_TIMEOUT_MS_MAX",
    "PARTIAL_OVERHEAD_BYTES",
    "PUSHSUM_FUNCTIONS",
    "PUSHSUM_ROUNDS_MAX",
    "READING_BYTES_MAX",
    "REPLY_OVERHEAD_BYTES",
    "SUM_MAGNITUDE_LOG2_MAX",
    "TOP_K_MAX",
    "VECTOR_LENGTH_MAX",
    "AggregateResult",
    "AggregationFunction",
    "Collect",
    "CollectCallback",
    "CollectResult",
    "Collected",
    "CollectedValue",
    "Collection",
    "Count",
    "Estimate",
    "ExactSum",
    "FunctionFactory",
    "FunctionRegistry",
    "Histogram",
    "HistogramResult",
    "Maximum",
    "Mean",
    "Minimum",
    "Number",
    "PushSum",
    "PushSumConfig",
    "ReadingLookup",
    "ReadingProvider",
    "ResultCallback",
    "Segment",
    "Sum",
    "TopK",
    "TreeAggregation",
    "TreeAggregationConfig",
    "VectorSum",
    "builtin_registry",
]
