"""The bodies of ``RPC_CALL`` and ``RPC_RESULT``: building them and checking them strictly.

* ``RPC_CALL``: ``[service, args]``; the envelope's ``message_id`` is the call id.
  ``service`` is a service name (``check_service_name``), ``args`` plain data.
* ``RPC_RESULT``: ``[call_id, status, detail]``, where ``detail`` is, by status:

  ======  =================  =========================================
  status  meaning            detail
  ======  =================  =========================================
  0       ok                 the value (plain data)
  1       unknown service    null
  2       service failed     ``[code, text]`` (``ServiceFailed``)
  3       handler crashed    null (no internals leave the callee)
  4       result too large   ``[size_bytes, limit_bytes]``
  5       busy               null
  6       unauthorized       null (the caller's role may not call it)
  ======  =================  =========================================

Every check on what a peer sent raises ``MalformedMessage``; every check on
what the local application asked for raises ``LocalProtocolError``.
"""

from __future__ import annotations

import re

from gridmesh.errors import LocalProtocolError, MalformedMessage
from gridmesh.protocols.rpc._errors import (
    CODE_MAX,
    DETAIL_BYTES_MAX,
    CallError,
    CallUnauthorized,
    ResultTooLarge,
    ServiceBusy,
    ServiceCrashed,
    ServiceFailed,
    UnknownService,
)
from gridmesh.wire import UINT64_MAX

__all__ = [
    "BUSY",
    "CRASHED",
    "FAILED",
    "OK",
    "SERVICE_NAME_BYTES_MAX",
    "TOO_LARGE",
    "UNAUTHORIZED",
    "UNKNOWN_SERVICE",
    "check_service_name",
    "error_for",
    "failure_detail",
    "parse_call_body",
    "parse_result_body",
]

#: ``RPC_RESULT`` statuses.
OK = 0
UNKNOWN_SERVICE = 1
FAILED = 2
CRASHED = 3
TOO_LARGE = 4
BUSY = 5
UNAUTHORIZED = 6
_STATUSES = range(OK, UNAUTHORIZED + 1)

#: The longest service name any node accepts; ``service_name_bytes_max`` may lower it.
SERVICE_NAME_BYTES_MAX = 255
# ASCII, so characters are bytes: a letter, then letters, digits and "_.:/-"
# ("last_voltage", "dtc.setpoint", "meter/last_voltage").
_SERVICE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.:/-]*")
_SERVICE_NAME_RULE = 'a letter, then letters, digits or "_.:/-"'


def _is_service_name(name: object, bytes_max: int) -> bool:
    return (
        type(name) is str and len(name) <= bytes_max and _SERVICE_NAME.fullmatch(name) is not None
    )


def check_service_name(name: object, bytes_max: int) -> str:
    """``name`` if it is a service name of at most ``bytes_max`` bytes, else ``LocalProtocolError``.

    ``name`` passes through, so a caller can check and use it in one step.
    """
    if not _is_service_name(name, bytes_max):
        raise LocalProtocolError(
            f"a service name is {_SERVICE_NAME_RULE}, at most {bytes_max} bytes; got {name!r}"
        )
    assert type(name) is str
    return name


def parse_call_body(body: object, service_name_bytes_max: int) -> tuple[str, object]:
    """``[service, args]``, checked: the service name and the arguments."""
    if type(body) is not list or len(body) != 2:
        raise MalformedMessage("RPC_CALL body must be [service, args]", field="body")
    service, args = body
    if not _is_service_name(service, service_name_bytes_max):
        raise MalformedMessage(
            f"service must be {_SERVICE_NAME_RULE}, at most {service_name_bytes_max} bytes",
            field="body.service",
        )
    assert type(service) is str
    return service, args


def parse_result_body(body: object) -> tuple[int, int, object]:
    """``[call_id, status, detail]``, checked: the detail has the status's shape."""
    if type(body) is not list or len(body) != 3:
        raise MalformedMessage("RPC_RESULT body must be [call_id, status, detail]", field="body")
    call_id, status, detail = body
    if type(call_id) is not int or not 0 <= call_id <= UINT64_MAX:
        raise MalformedMessage("call_id must be an unsigned 64-bit integer", field="body.call_id")
    if type(status) is not int or status not in _STATUSES:
        raise MalformedMessage(
            f"status must be an integer in 0..{UNAUTHORIZED}", field="body.status"
        )
    if status == FAILED:
        if type(detail) is not list or len(detail) != 2:
            raise MalformedMessage("a failure's detail must be [code, text]", field="body.detail")
        code, text = detail
        if type(code) is not int or not 0 <= code <= CODE_MAX:
            raise MalformedMessage(f"code must be an integer in 0..{CODE_MAX}", field="body.detail")
        if type(text) is not str or len(text.encode()) > DETAIL_BYTES_MAX:
            raise MalformedMessage(
                f"text must be at most {DETAIL_BYTES_MAX} bytes", field="body.detail"
            )
    elif status == TOO_LARGE:
        if (
            type(detail) is not list
            or len(detail) != 2
            or any(type(n) is not int or not 0 <= n <= UINT64_MAX for n in detail)
        ):
            raise MalformedMessage(
                "a too-large detail must be [size_bytes, limit_bytes]", field="body.detail"
            )
    elif status != OK and detail is not None:
        raise MalformedMessage(f"status {status} carries null", field="body.detail")
    return call_id, status, detail


def failure_detail(failure: ServiceFailed) -> list[object]:
    """``[code, text]`` for status 2, the text cut to ``DETAIL_BYTES_MAX`` bytes."""
    text = failure.detail.encode()[:DETAIL_BYTES_MAX].decode(errors="ignore")
    return [failure.code, text]


def error_for(service: str, status: int, detail: object) -> CallError:
    """The typed error a caller gets for a checked non-OK ``status`` and its ``detail``."""
    if status == UNKNOWN_SERVICE:
        return UnknownService(service)
    if status == FAILED:
        assert type(detail) is list
        code, text = detail
        return ServiceFailed(code, text, service=service)
    if status == CRASHED:
        return ServiceCrashed(service)
    if status == TOO_LARGE:
        assert type(detail) is list
        size_bytes, limit_bytes = detail
        return ResultTooLarge(service, size_bytes, limit_bytes)
    if status == UNAUTHORIZED:
        return CallUnauthorized(service)
    assert status == BUSY, status
    return ServiceBusy(service)
