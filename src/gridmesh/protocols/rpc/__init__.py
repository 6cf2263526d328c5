"""Service calls (seed 001's SOA services beside events): expose a service, call it by node.

* ``ServiceCalls``: one node's services and calls, sans-I/O; retransmission by
  the caller, at-most-once execution by the callee (``ResultCache``);
* ``ServiceCallsConfig``: timeouts, retry interval and every limit;
* ``CallResult``: how a call ended; ``CallError`` and its subclasses
  (``CallTimeout``, ``UnknownService``, ``ServiceFailed``, ``ServiceCrashed``,
  ``ResultTooLarge``, ``ServiceBusy``): why it returned no value. A handler
  raises ``ServiceFailed(code, detail)`` to return an application error.
"""

from __future__ import annotations

from gridmesh.protocols.rpc._bodies import (
    BUSY,
    CRASHED,
    FAILED,
    OK,
    SERVICE_NAME_BYTES_MAX,
    TOO_LARGE,
    UNKNOWN_SERVICE,
    check_service_name,
    parse_call_body,
    parse_result_body,
)
from gridmesh.protocols.rpc._cache import CachedResult, CallKey, ResultCache
from gridmesh.protocols.rpc._calls import (
    CALL_TIMEOUT_S_MAX,
    CallResult,
    CallResultCallback,
    ServiceCalls,
    ServiceCallsConfig,
    ServiceHandler,
)
from gridmesh.protocols.rpc._errors import (
    CODE_MAX,
    DETAIL_BYTES_MAX,
    CallError,
    CallTimeout,
    CallUnauthorized,
    ResultTooLarge,
    ServiceBusy,
    ServiceCrashed,
    ServiceFailed,
    UnknownService,
)

__all__ = [
    "BUSY",
    "CALL_TIMEOUT_S_MAX",
    "CODE_MAX",
    "CRASHED",
    "DETAIL_BYTES_MAX",
    "FAILED",
    "OK",
    "SERVICE_NAME_BYTES_MAX",
    "TOO_LARGE",
    "UNKNOWN_SERVICE",
    "CachedResult",
    "CallError",
    "CallKey",
    "CallResult",
    "CallResultCallback",
    "CallTimeout",
    "CallUnauthorized",
    "ResultCache",
    "ResultTooLarge",
    "ServiceBusy",
    "ServiceCalls",
    "ServiceCallsConfig",
    "ServiceCrashed",
    "ServiceFailed",
    "ServiceHandler",
    "UnknownService",
    "check_service_name",
    "parse_call_body",
    "parse_result_body",
]
