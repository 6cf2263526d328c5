"""Service calls: one node asks another to run a named service and waits for the result.

Theory of operation
-------------------
Events are not enough: "other communication approaches, like SOA, are needed
in order to provide new SG services that can easily retrieve information
without having to wait for new events" (seed 001, section II). A node
*exposes* named services (``last_voltage``, ``dr.activate``): a handler the
application gives, called with the call's arguments (plain data) and ``now``,
that returns plain data or raises ``ServiceFailed(code, detail)``. Any node
may *call* a service of a node it can address, with a timeout, and gets one
``CallResult``: a value, or a typed ``CallError`` saying why not.

One call is one ``RPC_CALL`` and one ``RPC_RESULT`` (bodies in ``_bodies``),
sent point to point, over a transport that may lose, duplicate or reorder
either. Three rules make that safe:

* **The caller retransmits.** It sends the *same* message (same message id,
  which is the call id) again every ``retry_interval_s`` until a result comes
  or the call's ``timeout_s`` passes; then the application gets
  ``CallTimeout``, exactly once. A result after that, or a second result, is
  counted (``results_late``, ``results_duplicate``), never shown.
* **The callee runs a handler at most once per call.** The result message of
  every call served is kept by ``(caller, call_id)`` (``ResultCache``) and a
  copy of the call is answered from there. Entries live ``results_ttl_s``
  (at least ``timeout_s_max``, the longest a caller of the same configuration
  retransmits) within ``results_cached_max`` entries and
  ``results_cached_bytes_max`` bytes; a copy that comes after its result was
  pushed out is dropped, not run again (the ids of at least the last
  2 x ``results_cached_max`` calls served are remembered for that), and its
  caller times out. At-most-once holds per incarnation: a callee that
  restarts has forgotten every call.
* **A result goes where the call came from**: to the caller's node id at the
  transport address the call arrived from, which may differ from what a
  membership view says. A result must come from the node the call went to
  (when the caller knew its id), or it is refused.

The caller's side of one call (anything else is refused):

=========  =====================================  ===================================
state      input                                  effect → next
=========  =====================================  ===================================
—          ``call(...)``                          send ``RPC_CALL`` → *pending*
pending    retry timer, before the deadline       send the same ``RPC_CALL`` again
pending    the deadline                           ``on_result(CallTimeout)`` → *timed out*
pending    ``RPC_RESULT`` from the target         ``on_result(value or error)`` → *answered*
pending    ``RPC_RESULT`` from another node       raise ``UnexpectedMessage``
answered   ``RPC_RESULT``                         count ``results_duplicate``
timed out  ``RPC_RESULT``                         count ``results_late``
unknown    ``RPC_RESULT``                         raise ``UnexpectedMessage``
=========  =====================================  ===================================

The callee's side of one call ``(caller, call_id)``:

=========  =====================================  ===================================
state      input                                  effect → next
=========  =====================================  ===================================
new        ``RPC_CALL``, no such service          reply 1 (unknown service) → new
new        ``RPC_CALL``, the caller already has   reply 5 (busy) → new
           ``calls_inflight_max`` results kept
new        ``RPC_CALL``                           run the handler; reply 0 (value),
                                                  2 (``ServiceFailed``), 3 (any other
                                                  exception, or a value that is not
                                                  plain data) or 4 (too large for
                                                  ``message_bytes_max``); keep the
                                                  reply → *served*
served     a copy                                 send the kept reply again
served     the same id, another service           raise ``UnexpectedMessage``
served     ``results_ttl_s``, or no room          → *forgotten*
forgotten  a copy                                 count ``duplicates_dropped``, drop
=========  =====================================  ===================================

Unknown-service and busy replies are not kept: the handler did not run, so a
copy may be answered afresh (and run, if the service appeared meanwhile).
A handler that raises anything but ``ServiceFailed`` is counted
(``crashed``); the node keeps serving, and the caller learns nothing of the
exception. Malformed bodies raise ``MalformedMessage``, which the node
counts; nothing is sent back.

**Limits.** ``services_max`` services, names of at most
``service_name_bytes_max`` bytes; ``calls_pending_max`` calls a node waits on
at once, each for at most ``timeout_s_max``; ``calls_inflight_max`` kept
results per caller; the cache's bounds above. Arguments and results must fit
one message (``message_bytes_max``): a caller refuses larger arguments, a
callee answers status 4.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gridmesh.errors import LocalProtocolError, UnexpectedMessage
from gridmesh.protocols._host import Host, Peer, new_envelope
from gridmesh.protocols._seen import SeenCache
from gridmesh.protocols.rpc._bodies import (
    BUSY,
    CRASHED,
    FAILED,
    OK,
    SERVICE_NAME_BYTES_MAX,
    TOO_LARGE,
    UNAUTHORIZED,
    UNKNOWN_SERVICE,
    check_service_name,
    error_for,
    failure_detail,
    parse_call_body,
    parse_result_body,
)
from gridmesh.protocols.rpc._cache import ResultCache
from gridmesh.protocols.rpc._errors import CallError, CallTimeout, ServiceFailed
from gridmesh.wire import MESSAGE_BYTES_MAX, Envelope, Kind, check_plain, encode

__all__ = [
    "CALL_TIMEOUT_S_MAX",
    "CallResult",
    "CallResultCallback",
    "ServiceCalls",
    "ServiceCallsConfig",
    "ServiceHandler",
]

#: The longest any call may wait for its result: one hour.
CALL_TIMEOUT_S_MAX = 3600.0

#: A service: called with the call's arguments (plain data) and ``now``; returns
#: plain data, or raises ``ServiceFailed(code, detail)`` for an application error.
ServiceHandler = Callable[[object, float], object]


class ServiceCallsConfig(BaseModel):
    """Defaults and limits of service calls; see docs/PROTOCOL.md, "Service calls"."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    timeout_s: float = Field(
        default=5.0, gt=0.0, le=CALL_TIMEOUT_S_MAX, description="a call's default timeout"
    )
    timeout_s_max: float = Field(
        default=30.0,
        gt=0.0,
        le=CALL_TIMEOUT_S_MAX,
        description="the longest timeout a call may ask",
    )
    retry_interval_s: float = Field(
        default=0.5,
        ge=0.001,
        le=CALL_TIMEOUT_S_MAX,
        description="a call with no result is sent again this often, until its timeout",
    )
    calls_pending_max: int = Field(
        default=256, ge=1, le=1_000_000, description="calls this node waits on at once"
    )
    services_max: int = Field(default=64, ge=1, le=65_536, description="services exposed")
    service_name_bytes_max: int = Field(
        default=64, ge=1, le=SERVICE_NAME_BYTES_MAX, description="a service name's length"
    )
    calls_inflight_max: int = Field(
        default=256,
        ge=1,
        le=10_000_000,
        description="results kept for one caller at once; past it the caller hears 'busy'",
    )
    results_cached_max: int = Field(
        default=4096, ge=1, le=10_000_000, description="results kept for copies of calls"
    )
    results_cached_bytes_max: int = Field(
        default=8 * 1024 * 1024,
        ge=MESSAGE_BYTES_MAX,
        le=2**40,
        description="bytes of results kept for copies of calls",
    )
    results_ttl_s: float = Field(
        default=60.0,
        gt=0.0,
        le=2 * CALL_TIMEOUT_S_MAX,
        description="how long a result is kept; at least timeout_s_max",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ServiceCallsConfig:
        if self.timeout_s > self.timeout_s_max:
            raise ValueError(
                f"timeout_s ({self.timeout_s}) must not exceed timeout_s_max ({self.timeout_s_max})"
            )
        if self.results_ttl_s < self.timeout_s_max:
            raise ValueError(
                f"results_ttl_s ({self.results_ttl_s}) must be at least timeout_s_max "
                f"({self.timeout_s_max}): a copy of a call may come that late, and must not "
                "run its handler again"
            )
        return self


@dataclass(frozen=True, slots=True)
class CallResult:
    """How one call ended: ``value`` when ``ok``, else the typed ``error``.

    ``target`` is the callee's node id; ``elapsed_s`` the time from the call to
    its end; ``attempts`` how many copies of the call were sent.
    """

    call_id: int
    target: int
    service: str
    ok: bool
    value: object
    error: CallError | None
    elapsed_s: float
    attempts: int


CallResultCallback = Callable[[CallResult], None]


class _Call:
    """One call this node waits on."""

    __slots__ = (
        "attempts",
        "deadline",
        "message",
        "on_result",
        "started_at",
        "target",
        "timeout_s",
    )

    def __init__(
        self,
        message: Envelope,
        target: Peer,
        on_result: CallResultCallback,
        started_at: float,
        timeout_s: float,
    ) -> None:
        self.message = message
        self.target = target
        self.on_result = on_result
        self.started_at = started_at
        self.timeout_s = timeout_s
        self.deadline = started_at + timeout_s
        self.attempts = 1

    @property
    def service(self) -> str:
        body = self.message.body
        assert type(body) is list
        service: str = body[0]
        return service


class ServiceCalls:
    """One node's service calls: the services it exposes and the calls it makes."""

    KINDS: ClassVar[frozenset[Kind]] = frozenset({Kind.RPC_CALL, Kind.RPC_RESULT})

    __slots__ = (
        "_answered",
        "_config",
        "_host",
        "_pending",
        "_results",
        "_served",
        "_services",
        "_timed_out",
        "busy",
        "calls_sent",
        "calls_served",
        "crashed",
        "duplicates_answered",
        "duplicates_dropped",
        "oversized",
        "results_duplicate",
        "results_failed",
        "results_late",
        "results_ok",
        "retransmits",
        "service_failed",
        "timeouts",
        "unauthorized",
        "unknown_service",
    )

    def __init__(self, host: Host, config: ServiceCallsConfig) -> None:
        self._host = host
        self._config = config
        self._services: dict[str, ServiceHandler] = {}
        self._pending: dict[int, _Call] = {}
        # Calls that ended here, so a result after the end is told apart from a stray one.
        finished_max = max(16, 4 * config.calls_pending_max)
        self._answered = SeenCache(finished_max)
        self._timed_out = SeenCache(finished_max)
        self._results = ResultCache(
            entries_max=config.results_cached_max,
            bytes_max=config.results_cached_bytes_max,
            ttl_s=config.results_ttl_s,
        )
        # Calls whose handler ran, kept longer than their results: never run one twice.
        self._served = SeenCache(max(16, 4 * config.results_cached_max))
        # As a caller:
        self.calls_sent = 0  # calls started
        self.retransmits = 0  # copies sent for want of a result
        self.results_ok = 0  # calls that returned a value
        self.results_failed = 0  # calls that returned an error (statuses 1-5)
        self.timeouts = 0  # calls that got no result in time
        self.results_late = 0  # results after their call timed out
        self.results_duplicate = 0  # second results of a call answered already
        # As a callee:
        self.calls_served = 0  # handler runs
        self.duplicates_answered = 0  # copies answered from the result cache
        self.duplicates_dropped = 0  # copies of calls served whose result was no longer kept
        self.unknown_service = 0
        self.unauthorized = 0
        self.service_failed = 0  # handlers that raised ServiceFailed
        self.crashed = 0  # handlers that raised anything else or returned what cannot travel
        self.oversized = 0  # results too large for one message
        self.busy = 0  # calls refused: calls_inflight_max from their caller

    # -- API: services ---------------------------------------------------------

    def expose(self, name: str, handler: ServiceHandler) -> None:
        """Answer calls of ``name`` with ``handler(args, now)``, in place of any handler before."""
        check_service_name(name, self._config.service_name_bytes_max)
        if not callable(handler):
            raise LocalProtocolError(f"the handler of service {name!r} is not callable")
        services = self._services
        if name not in services and len(services) >= self._config.services_max:
            raise LocalProtocolError(f"at most {self._config.services_max} services")
        services[name] = handler

    def withdraw(self, name: str) -> None:
        """Stop answering ``name``: later calls get ``UnknownService``. No such service: no-op."""
        self._services.pop(name, None)

    def exposed(self) -> list[str]:
        """The names of the services this node exposes, sorted."""
        return sorted(self._services)

    # -- API: calls --------------------------------------------------------------

    def call(
        self,
        target: Peer,
        service: str,
        args: object = None,
        *,
        now: float,
        on_result: CallResultCallback,
        timeout_s: float | None = None,
    ) -> int:
        """Call ``service`` on ``target`` with ``args`` (plain data); returns the call id.

        ``on_result`` gets exactly one ``CallResult``, after this returns: the
        value, a typed error from the callee, or ``CallTimeout`` after
        ``timeout_s`` (default ``config.timeout_s``). Raises
        ``LocalProtocolError`` for invalid arguments or ``calls_pending_max``
        calls waiting.
        """
        config = self._config
        if not isinstance(target, Peer):
            raise LocalProtocolError("a call's target is a Peer")
        check_service_name(service, config.service_name_bytes_max)
        if timeout_s is None:
            timeout_s = config.timeout_s
        if type(timeout_s) not in (int, float) or not 0 < timeout_s <= config.timeout_s_max:
            raise LocalProtocolError(
                f"timeout_s must be in (0, {config.timeout_s_max}], got {timeout_s!r}"
            )
        if not callable(on_result):
            raise LocalProtocolError("on_result must be callable")
        pending = self._pending
        if len(pending) >= config.calls_pending_max:
            raise LocalProtocolError(f"{config.calls_pending_max} calls are waiting already")
        check_plain(args)
        host = self._host
        message = new_envelope(host, Kind.RPC_CALL, [service, args], now)
        while message.message_id in pending:  # 64 random bits: practically never
            message = new_envelope(host, Kind.RPC_CALL, [service, args], now)
        size_bytes = len(encode(message))
        if size_bytes > host.message_bytes_max:
            raise LocalProtocolError(
                f"the call takes {size_bytes} bytes; message_bytes_max is {host.message_bytes_max}"
            )
        call = _Call(message, target, on_result, now, float(timeout_s))
        pending[message.message_id] = call
        self.calls_sent += 1
        host.send([target], message)
        host.call_at(min(now + config.retry_interval_s, call.deadline), partial(self._tick, call))
        return message.message_id

    # -- monitoring --------------------------------------------------------------

    #: The counters ``stats`` reports, each as ``rpc_<name>``.
    COUNTERS: ClassVar[tuple[str, ...]] = (
        "calls_sent",
        "pending",
        "retransmits",
        "results_ok",
        "results_failed",
        "timeouts",
        "results_late",
        "results_duplicate",
        "services",
        "calls_served",
        "duplicates_answered",
        "duplicates_dropped",
        "unknown_service",
        "unauthorized",
        "service_failed",
        "crashed",
        "oversized",
        "busy",
        "results_cached",
        "results_evicted",
    )

    def stats(self) -> dict[str, int]:
        gauges = {
            "pending": len(self._pending),
            "services": len(self._services),
            "results_cached": len(self._results),
            "results_evicted": self._results.evicted,
        }
        return {
            f"rpc_{name}": gauges[name] if name in gauges else getattr(self, name)
            for name in self.COUNTERS
        }

    @classmethod
    def idle_stats(cls) -> dict[str, int]:
        """What ``stats`` says of a node that never called nor served."""
        return {f"rpc_{name}": 0 for name in cls.COUNTERS}

    # -- input -----------------------------------------------------------------

    def on_message(self, message: Envelope, source: str, now: float) -> None:
        if message.kind is Kind.RPC_CALL:
            self._on_call(message, source, now)
        elif message.kind is Kind.RPC_RESULT:
            self._on_result(message, now)

    def _on_call(self, message: Envelope, source: str, now: float) -> None:
        service, args = parse_call_body(message.body, self._config.service_name_bytes_max)
        key = (message.origin, message.message_id)
        # The caller, where the call came from (not where a view says it is).
        caller = Peer(message.origin, source)
        results = self._results
        results.expire(now)
        kept = results.get(key)
        if kept is not None:
            if kept.service != service:
                raise UnexpectedMessage(
                    "a call id this caller used for another service", field="message_id"
                )
            self.duplicates_answered += 1
            self._host.send([caller], kept.reply)
            return
        if key in self._served:  # its result was pushed out: never run a handler twice
            self.duplicates_dropped += 1
            return
        if not self._host.authorize("call", service):
            self.unauthorized += 1
            self._send_result(caller, message.message_id, UNAUTHORIZED, None, now)
            return
        handler = self._services.get(service)
        if handler is None:
            self.unknown_service += 1
            self._send_result(caller, message.message_id, UNKNOWN_SERVICE, None, now)
            return
        if results.inflight(message.origin) >= self._config.calls_inflight_max:
            self.busy += 1
            self._send_result(caller, message.message_id, BUSY, None, now)
            return
        self._served.add(key)
        self.calls_served += 1
        reply, size_bytes = self._serve(handler, message.message_id, args, now)
        results.add(key, service, reply, size_bytes, now)
        self._host.send([caller], reply)

    def _serve(
        self, handler: ServiceHandler, call_id: int, args: object, now: float
    ) -> tuple[Envelope, int]:
        """Run ``handler`` once; the result message for it and its encoded size."""
        host = self._host
        try:
            value = handler(args, now)
            check_plain(value)
            status, detail = OK, value
        except ServiceFailed as failure:
            self.service_failed += 1
            status, detail = FAILED, failure_detail(failure)
        except Exception:  # the application's bug: count it, tell the caller no more
            self.crashed += 1
            status, detail = CRASHED, None
        reply = new_envelope(host, Kind.RPC_RESULT, [call_id, status, detail], now)
        try:
            size_bytes = len(encode(reply))
        except LocalProtocolError:  # plain data CBOR still cannot carry
            self.crashed += 1
            reply = new_envelope(host, Kind.RPC_RESULT, [call_id, CRASHED, None], now)
            size_bytes = len(encode(reply))
        limit_bytes = host.message_bytes_max
        if size_bytes > limit_bytes:
            self.oversized += 1
            detail = [size_bytes, limit_bytes]
            reply = new_envelope(host, Kind.RPC_RESULT, [call_id, TOO_LARGE, detail], now)
            size_bytes = len(encode(reply))
        return reply, size_bytes

    def _send_result(
        self, caller: Peer, call_id: int, status: int, detail: object, now: float
    ) -> None:
        host = self._host
        host.send([caller], new_envelope(host, Kind.RPC_RESULT, [call_id, status, detail], now))

    def _on_result(self, message: Envelope, now: float) -> None:
        call_id, status, detail = parse_result_body(message.body)
        call = self._pending.get(call_id)
        if call is None:
            if call_id in self._answered:
                self.results_duplicate += 1
            elif call_id in self._timed_out:
                self.results_late += 1
            else:
                raise UnexpectedMessage("RPC_RESULT for no call this node made", field="body")
            return
        expected = call.target.node_id
        if expected and message.origin != expected:
            raise UnexpectedMessage(
                "RPC_RESULT from a node this call did not go to", field="origin"
            )
        del self._pending[call_id]
        self._answered.add(call_id)
        service = call.service
        if status == OK:
            self.results_ok += 1
            value, error = detail, None
        else:
            self.results_failed += 1
            value, error = None, error_for(service, status, detail)
        call.on_result(
            CallResult(
                call_id=call_id,
                target=expected or message.origin,
                service=service,
                ok=error is None,
                value=value,
                error=error,
                elapsed_s=now - call.started_at,
                attempts=call.attempts,
            )
        )

    # -- timers ----------------------------------------------------------------

    def _tick(self, call: _Call, now: float) -> None:
        """Send the call again, or end it with ``CallTimeout`` at its deadline."""
        call_id = call.message.message_id
        if self._pending.get(call_id) is not call:
            return  # answered
        if now >= call.deadline:
            del self._pending[call_id]
            self._timed_out.add(call_id)
            self.timeouts += 1
            call.on_result(
                CallResult(
                    call_id=call_id,
                    target=call.target.node_id,
                    service=call.service,
                    ok=False,
                    value=None,
                    error=CallTimeout(call.service, call.timeout_s, call.attempts),
                    elapsed_s=now - call.started_at,
                    attempts=call.attempts,
                )
            )
            return
        call.attempts += 1
        self.retransmits += 1
        self._host.send([call.target], call.message)
        next_at = min(now + self._config.retry_interval_s, call.deadline)
        self._host.call_at(next_at, partial(self._tick, call))
