"""Control requests: reading their fields, and answering with plain data.

A control request is a CBOR map from a loopback client (``gridmesh broadcast``,
``gridmesh aggregate``, a test's ``ControlClient``). Its fields are checked
here and a wrong one raises ``LocalProtocolError``, which the node answers as
``{"ok": false, "error": ...}``; the limits (name lengths, fanout, hops,
parameters, segments) are the ones ``Node``'s own API enforces, so a request
can ask for nothing the Python API would refuse. Answers are plain data,
JSON-safe as far as the values allow (a sum beyond the float range is
``inf``): tuples become lists, a histogram a map, a collection a map of its
``[[node_id, value], ...]`` pairs and cut, an integer beyond 64 bits its
decimal text.

A ``collect`` answer must fit one ``CONTROL_REPLY``, so over this channel its
``bytes_max`` is at most ``message_bytes_max - CONTROL_ANSWER_OVERHEAD_BYTES``
(and that is its default): a request that asks for more is refused before
any node is asked, not answered "too large" after the whole query ran.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from gridmesh.errors import LocalProtocolError
from gridmesh.protocols import Scope
from gridmesh.protocols.aggregation import (
    COLLECT_BYTES_MIN,
    AggregateResult,
    Collection,
    CollectResult,
    Estimate,
    HistogramResult,
)
from gridmesh.wire import UINT64_MAX

__all__ = [
    "CONTROL_ANSWER_OVERHEAD_BYTES",
    "PLAIN_ITEMS_MAX",
    "AggregateRequest",
    "EstimateRequest",
    "aggregate_answer",
    "estimate_answer",
    "optional_int",
    "optional_number",
    "optional_text",
    "parse_aggregate_request",
    "parse_estimate_request",
    "parse_segment",
    "plain_value",
    "required_int",
]

#: Items ``plain_value`` converts before it gives up (a result's own limits are lower).
PLAIN_ITEMS_MAX = 100_000
#: An ``aggregate`` answer around a collection's entries, at most: the envelope, the
#: coverage, a 64-byte reading and a segment of 64-byte names (454 bytes), rounded up.
CONTROL_ANSWER_OVERHEAD_BYTES = 512
_SEGMENT_KEYS = frozenset({"service", "group"})


@dataclass(frozen=True, slots=True)
class AggregateRequest:
    """The fields of an ``aggregate`` request: ``Node.aggregate``'s arguments."""

    function: str
    reading: str
    params: dict[str, object] | None
    fanout: int | None
    hops: int | None
    timeout_s: float | None
    replies_min: int | None
    segment: Scope | None = None


@dataclass(frozen=True, slots=True)
class EstimateRequest:
    """The fields of a ``start_estimate`` request: ``Node.start_estimate``'s arguments."""

    function: str
    reading: str
    rounds: int | None
    continuous: bool


def parse_aggregate_request(
    request: dict[str, object], *, message_bytes_max: int
) -> AggregateRequest:
    """An ``aggregate`` request's fields; ``collect``'s ``bytes_max`` fitted to one reply."""
    params = request.get("params")
    if params is not None and not isinstance(params, dict):
        raise LocalProtocolError("control field 'params' must be a map")
    function = _required_text(request, "function")
    if function == "collect":
        params = _collect_params(params, message_bytes_max)
    return AggregateRequest(
        function=function,
        reading=_required_text(request, "reading"),
        params=params,
        fanout=optional_int(request, "fanout"),
        hops=optional_int(request, "hops"),
        timeout_s=optional_number(request, "timeout_s"),
        replies_min=optional_int(request, "replies_min"),
        segment=parse_segment(request),
    )


def parse_segment(request: dict[str, object]) -> Scope | None:
    """Field ``segment``: a group name, or ``{"service": ..., "group": ...}``, one may be absent.

    Only the shape is checked here; the names' lengths are ``Node.aggregate``'s to check.
    """
    segment = request.get("segment")
    if segment is None:
        return None
    if isinstance(segment, str):
        return Scope(group=segment)
    if not isinstance(segment, dict):
        raise LocalProtocolError(
            "control field 'segment' must be a group name or a map {service, group}"
        )
    unknown = sorted(str(key) for key in segment if key not in _SEGMENT_KEYS)
    if unknown:
        raise LocalProtocolError(
            f"control field 'segment' takes 'service' and 'group' only, not {unknown}"
        )
    service, group = segment.get("service"), segment.get("group")
    if not all(text is None or isinstance(text, str) for text in (service, group)):
        raise LocalProtocolError("control field 'segment': service and group must be text")
    if service is None and group is None:
        raise LocalProtocolError("control field 'segment' names a service, a group or both")
    return Scope(service=service, group=group)


def _collect_params(params: dict[str, object] | None, message_bytes_max: int) -> dict[str, object]:
    """``collect``'s params with ``bytes_max`` set so that the answer fits one control reply."""
    bytes_max_most = message_bytes_max - CONTROL_ANSWER_OVERHEAD_BYTES
    if bytes_max_most < COLLECT_BYTES_MIN:
        raise LocalProtocolError(
            f"collect over the control channel needs message_bytes_max of at least "
            f"{COLLECT_BYTES_MIN + CONTROL_ANSWER_OVERHEAD_BYTES}"
        )
    fitted = dict(params or {})
    bytes_max = fitted.setdefault("bytes_max", bytes_max_most)
    if type(bytes_max) is int and bytes_max > bytes_max_most:
        raise LocalProtocolError(
            f"collect over the control channel: bytes_max must be at most {bytes_max_most}, "
            f"so that the answer fits one reply of message_bytes_max ({message_bytes_max})"
        )
    return fitted  # any other mistake in them is collect's own to report


def parse_estimate_request(request: dict[str, object]) -> EstimateRequest:
    continuous = request.get("continuous", False)
    if type(continuous) is not bool:
        raise LocalProtocolError("control field 'continuous' must be true or false")
    return EstimateRequest(
        function=_required_text(request, "function"),
        reading=optional_text(request, "reading"),
        rounds=optional_int(request, "rounds"),
        continuous=continuous,
    )


def aggregate_answer(result: AggregateResult) -> dict[str, object]:
    """The reply to an ``aggregate`` request: the value and its coverage."""
    return {
        "ok": True,
        "query_id": result.query_id,
        "function": result.function,
        "reading": result.reading,
        "segment": _plain_segment(result.segment),
        "value": plain_value(result.value),
        "contributors": result.contributors,
        "missing": result.missing,
        "declined": result.declined,
        "complete": result.complete,
        "fanout": result.fanout,
        "elapsed_s": round(result.finished_at - result.started_at, 6),
    }


def estimate_answer(estimate: Estimate | None) -> dict[str, object]:
    """The reply to an ``estimate`` request: this node's view, or ``running: false``."""
    if estimate is None:
        return {"ok": True, "running": False}
    return {"ok": True, "running": True, **dataclasses.asdict(estimate)}


def plain_value(value: object) -> object:
    """A result as plain data a control reply (and JSON) can carry.

    A ``Collection`` or ``CollectResult`` becomes ``{values: [[node_id, value],
    ...], dropped, cut, truncated}``. ``LocalProtocolError`` past ``PLAIN_ITEMS_MAX`` items.
    """
    budget = [PLAIN_ITEMS_MAX]
    return _plain(value, budget)


def _plain_segment(segment: Scope | None) -> dict[str, object] | None:
    if segment is None:
        return None
    return {"service": segment.service, "group": segment.group}


def _plain(value: object, budget: list[int]) -> object:
    budget[0] -= 1
    if budget[0] < 0:
        raise LocalProtocolError(f"the result has more than {PLAIN_ITEMS_MAX:,} items")
    if value is None or type(value) in (bool, str, float):
        return value
    if type(value) is int:
        return value if -UINT64_MAX - 1 <= value <= UINT64_MAX else str(value)
    if isinstance(value, HistogramResult):
        return {
            "edges": list(value.edges),
            "counts": list(value.counts),
            "underflow": value.underflow,
            "overflow": value.overflow,
        }
    if isinstance(value, Collection | CollectResult):
        return {
            "values": _plain(value.values, budget),
            "dropped": value.dropped,
            "cut": value.cut,
            "truncated": value.truncated,
        }
    if isinstance(value, list | tuple):
        return [_plain(item, budget) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item, budget) for key, item in value.items()}
    if isinstance(value, float):  # a float subclass
        return float(value)
    raise LocalProtocolError(f"a {type(value).__name__} result cannot be carried as plain data")


def required_int(request: dict[str, object], key: str) -> int:
    value = optional_int(request, key)
    if value is None:
        raise LocalProtocolError(f"control field {key!r} is required: an integer")
    return value


def optional_number(request: dict[str, object], key: str) -> float | None:
    value = request.get(key)
    if value is None:
        return None
    if type(value) is int and -UINT64_MAX - 1 <= value <= UINT64_MAX:
        return float(value)
    if type(value) is not float or not math.isfinite(value):
        raise LocalProtocolError(f"control field {key!r} must be a finite number")
    return value


def optional_text(request: dict[str, object], key: str) -> str:
    value = request.get(key, "")
    if not isinstance(value, str):
        raise LocalProtocolError(f"control field {key!r} must be text")
    return value


def optional_int(request: dict[str, object], key: str) -> int | None:
    value = request.get(key)
    if value is not None and type(value) is not int:
        raise LocalProtocolError(f"control field {key!r} must be an integer")
    return value


def _required_text(request: dict[str, object], key: str) -> str:
    value = request.get(key)
    if not isinstance(value, str) or not value:
        raise LocalProtocolError(f"control field {key!r} is required: text")
    return value
