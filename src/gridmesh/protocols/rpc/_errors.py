"""What a caller learns when a service call returns no value: one typed error per cause.

``CallError`` is the root (a ``GridmeshError``: neither a peer's protocol
violation nor a misuse of the API, but the outcome of a call). Each subclass
but ``CallTimeout`` matches one ``RPC_RESULT`` status (see ``_bodies``).
``ServiceFailed`` travels both ways: a handler raises it to return an
application error, and its caller receives one with the same ``code`` and
``detail``. Nothing else about the callee's failure crosses the wire.
"""

from __future__ import annotations

from gridmesh.errors import GridmeshError, LocalProtocolError

__all__ = [
    "CODE_MAX",
    "DETAIL_BYTES_MAX",
    "CallError",
    "CallTimeout",
    "CallUnauthorized",
    "ResultTooLarge",
    "ServiceBusy",
    "ServiceCrashed",
    "ServiceFailed",
    "UnknownService",
]

#: An application error code is an integer in 0..CODE_MAX (fits 32 bits unsigned).
CODE_MAX = 2**32 - 1
#: An application error's detail text, in UTF-8 bytes; longer text is cut to fit.
DETAIL_BYTES_MAX = 256


class CallError(GridmeshError):
    """A service call that returned no value; ``reason`` is a short, stable label."""

    reason: str = "call"

    def __init__(self, service: str, explanation: str) -> None:
        self.service = service
        where = f"service {service!r}: " if service else ""
        super().__init__(f"{self.reason}: {where}{explanation}")


class CallTimeout(CallError):
    """No result came within the call's ``timeout_s``: the callee is down, slow or cut off.

    The handler may or may not have run (at most once).
    """

    reason = "timeout"

    def __init__(self, service: str, timeout_s: float, attempts: int) -> None:
        self.timeout_s = timeout_s
        self.attempts = attempts
        super().__init__(service, f"no result in {timeout_s} s ({attempts} copies sent)")


class UnknownService(CallError):
    """The callee exposes no service of that name (status 1)."""

    reason = "unknown_service"

    def __init__(self, service: str) -> None:
        super().__init__(service, "the callee exposes no such service")


class ServiceFailed(CallError):
    """An application error: a handler raises it, and its caller receives it (status 2).

    ``code`` is an integer in 0..``CODE_MAX`` the service defines; ``detail``
    a short text for people (cut to ``DETAIL_BYTES_MAX`` bytes on the wire).
    """

    reason = "service_failed"

    def __init__(self, code: int, detail: str = "", *, service: str = "") -> None:
        if type(code) is not int or not 0 <= code <= CODE_MAX:
            raise LocalProtocolError(f"a service error code is an integer in 0..{CODE_MAX}")
        if type(detail) is not str:
            raise LocalProtocolError("a service error's detail is text")
        self.code = code
        self.detail = detail
        super().__init__(service, f"error {code}: {detail}" if detail else f"error {code}")


class ServiceCrashed(CallError):
    """The handler raised an unexpected exception (status 3); what it was stays on the callee."""

    reason = "crashed"

    def __init__(self, service: str) -> None:
        super().__init__(service, "the handler failed unexpectedly")


class ResultTooLarge(CallError):
    """The handler's result does not fit one of the callee's messages (status 4)."""

    reason = "too_large"

    def __init__(self, service: str, size_bytes: int, limit_bytes: int) -> None:
        self.size_bytes = size_bytes
        self.limit_bytes = limit_bytes
        super().__init__(
            service, f"the result takes {size_bytes} bytes; message_bytes_max is {limit_bytes}"
        )


class CallUnauthorized(CallError):
    """The callee's access policy does not let this node call the service (status 6)."""

    reason = "unauthorized"

    def __init__(self, service: str) -> None:
        super().__init__(service, "this node's role may not call the service")


class ServiceBusy(CallError):
    """The callee holds ``calls_inflight_max`` calls of this caller already (status 5)."""

    reason = "busy"

    def __init__(self, service: str) -> None:
        super().__init__(service, "the callee has too many calls from this node in flight")
