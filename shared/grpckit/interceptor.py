"""One server interceptor for every RPC: access control (bearer tokens and the roles each RPC
declares, auth.py: UNAUTHENTICATED / PERMISSION_DENIED before anything else runs; gRPC health
and reflection stay open), Prometheus metrics with the standard grpc_server_* names,
request/correlation ids and the caller's name in the logs, a readiness gate (UNAVAILABLE /
NOT_READY until the server is ready and again while it drains), admission (a per-method limit
on calls in flight), and errors mapped to rich statuses — never a stack trace to the caller.
Unary, client-streaming and server-streaming methods alike (a server stream holds its slot
while it runs, and an error after some messages ends it with its status); bidirectional ones
are refused. A server may name services that answer while it is not ready (``ungated``).

The error path, for any exception a handler raises:
- a domain error (shared/domain/errors.py) → its status: Invalid → INVALID_ARGUMENT with the
  violations, NotFound → NOT_FOUND, Conflict → ALREADY_EXISTS, StaleEtag → ABORTED,
  Precondition → FAILED_PRECONDITION; servicers just let them through;
- a ServiceError → its status (the service's ErrorInfo domain filled in when it has none);
- a request id reused for a different request → ALREADY_EXISTS (REQUEST_ID_REUSED);
- a database that is away → UNAVAILABLE (retryable), a statement timeout → DEADLINE_EXCEEDED, a
  lost serialization race → ABORTED, a stream version conflict → ABORTED;
- anything else → INTERNAL with ErrorInfo reason INTERNAL and metadata ``error_id``, and exactly
  one log line carrying the same id and the stack trace (without local variables).
The metric counts the code the caller really got.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import structlog
from grpc_status import rpc_status

from shared.db.errors import DbFault, classify
from shared.domain.errors import DomainError
from shared.eventstore import DuplicateEventId, WrongExpectedVersion
from shared.grpckit import calls
from shared.grpckit import errors as ge
from shared.grpckit.auth import AccessControl, TokenTable
from shared.metrics import GRPC_HANDLED, GRPC_HANDLING, GRPC_STARTED

log = structlog.get_logger("grpc")


def service_domain(service: str) -> str:
    """The ErrorInfo domain of a gRPC service: crm.contacts.v1.ContactsService → contacts.crm."""
    parts = service.split(".")
    return f"{parts[1]}.crm" if len(parts) > 2 and parts[0] == "crm" else "crm"


def to_service_error(exc: BaseException) -> ge.ServiceError | None:
    """The status an exception stands for; None for an unexpected one (a bug: INTERNAL)."""
    if isinstance(exc, ge.ServiceError):
        return exc
    if isinstance(exc, DomainError):
        return ge.from_domain(exc)
    if isinstance(exc, DuplicateEventId):  # the same request id, another request (AIP-155)
        return ge.AlreadyExists(
            "REQUEST_ID_REUSED",
            "this request_id was already used for a different request; use a new request_id",
        )
    if isinstance(exc, WrongExpectedVersion):
        return ge.Aborted(
            "CONCURRENT_MODIFICATION",
            "the entity was changed concurrently; read it again and retry",
            metadata={"actual_version": str(exc.actual)},
        )
    fault = classify(exc)
    if fault is DbFault.UNAVAILABLE:
        return ge.Unavailable("DATABASE_UNAVAILABLE", "the database is unavailable; retry")
    if fault is DbFault.TIMEOUT:
        return ge.DeadlineExceeded(
            "DATABASE_TIMEOUT", "the database did not answer in time; retry later"
        )
    if fault is DbFault.CONFLICT:
        return ge.Aborted("TRANSACTION_CONFLICT", "a concurrent transaction won; retry")
    return None


class Admission:
    """At most ``limit`` calls of one method in flight; a call beyond waits up to ``wait``
    seconds (less if its deadline is nearer) for a slot, then gets RESOURCE_EXHAUSTED. So one
    heavy method can never hold the whole connection pool, and cheap calls stay cheap."""

    def __init__(self, limit: int, wait: float) -> None:
        self.limit, self.wait = max(1, limit), wait
        self._slots: dict[str, asyncio.Semaphore] = {}

    def slots(self, method: str) -> asyncio.Semaphore:
        return self._slots.setdefault(method, asyncio.Semaphore(self.limit))

    async def enter(self, slots: asyncio.Semaphore, remaining: float | None) -> bool:
        if not slots.locked():
            await slots.acquire()
            return True
        wait = self.wait if remaining is None else max(0.0, min(self.wait, remaining))
        try:
            await asyncio.wait_for(slots.acquire(), wait)
        except TimeoutError:
            return False
        return True


class ServerInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        *,
        max_in_flight_per_method: int = 64,
        queue_seconds: float = 1.0,
        access: AccessControl | None = None,
    ) -> None:
        # Handlers are fixed once the server runs: wrap each method once, not on every call.
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}
        self.admission = Admission(max_in_flight_per_method, queue_seconds)
        # Without a token table nobody gets in (health and reflection aside).
        self.access = access or AccessControl(TokenTable())
        self.ready = False  # set by GrpcServer.set_ready: the runtime behind the servicers
        # Services that answer while the server is not ready; each checks its own state (the
        # Admin API of a project role, needed most when a worker is down).
        self.ungated: frozenset[str] = frozenset()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        cached = self._handlers.get(details.method)
        if cached is not None:
            return cached
        handler = await continuation(details)
        if handler is None:
            return handler
        wrapped = self._instrument(handler, details)
        self._handlers[details.method] = wrapped
        return wrapped

    def _instrument(
        self, handler: grpc.RpcMethodHandler, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        service, _, method = details.method.lstrip("/").rpartition("/")
        if service.startswith("grpc."):  # health and reflection: open, and not ours to instrument
            return handler
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap(handler.unary_unary, service, method, "unary"),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._wrap(handler.stream_unary, service, method, "client_stream"),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(handler.unary_stream, service, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return _refused(handler)  # a kind of RPC the suite does not use: never served unchecked

    def _wrap(
        self, behavior: Callable[..., Any], service: str, method: str, kind: str
    ) -> Callable[..., Awaitable[Any]]:
        started_c = GRPC_STARTED.labels(kind, service, method)
        hist = GRPC_HANDLING.labels(kind, service, method)
        domain = service_domain(service)
        slots = self.admission.slots(f"{service}/{method}")
        rule = self.access.rule(service, method)  # what the method declares, read once

        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started_c.inc()
            t0 = time.perf_counter()
            md = dict(context.invocation_metadata() or ())
            structlog.contextvars.clear_contextvars()
            structlog.contextvars.bind_contextvars(
                rpc=method,
                request_id=_request_id(request, md),
                correlation_id=md.get("x-correlation-id") or str(uuid.uuid4()),
            )
            if getattr(request, "request_id", ""):
                calls.request_fingerprint.set(calls.fingerprint(request))
            code = grpc.StatusCode.UNKNOWN  # until we know better
            admitted = False
            try:
                who = self.access.admit(md, rule, service, method)
                structlog.contextvars.bind_contextvars(principal=who.name, role=who.role_name)
                if not self.ready and service not in self.ungated:
                    raise ge.Unavailable("NOT_READY", "the service is starting or stopping; retry")
                admitted = await self.admission.enter(slots, context.time_remaining())
                if not admitted:
                    raise ge.ResourceExhausted(
                        "TOO_MANY_REQUESTS",
                        f"{method} has {self.admission.limit} calls in flight; retry with backoff",
                        metadata={"method": method, "limit": str(self.admission.limit)},
                    )
                result = await behavior(request, context)
                code = grpc.StatusCode.OK
                return result
            except grpc.aio.AbortError:
                code = context.code() or grpc.StatusCode.UNKNOWN  # the servicer aborted itself
                raise
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            except Exception as exc:
                err = to_service_error(exc) or _internal(exc)
                code = err.code
                if not err.domain:
                    err.domain = domain
                if err.code is not grpc.StatusCode.INTERNAL:
                    log.info("rpc.error", code=code.name, reason=err.reason)
                await context.abort_with_status(rpc_status.to_status(err.to_status()))
            finally:
                if admitted:
                    slots.release()
                GRPC_HANDLED.labels(kind, service, method, code.name).inc()
                hist.observe(time.perf_counter() - t0)

        return wrapped

    def _wrap_stream(
        self, behavior: Callable[..., Any], service: str, method: str
    ) -> Callable[..., AsyncIterator[Any]]:
        """A server-streaming method: the same gate, admission (a slot held while the stream
        runs), metrics and error path; an error after some messages ends the stream with its
        status."""
        kind = "server_stream"
        started_c = GRPC_STARTED.labels(kind, service, method)
        hist = GRPC_HANDLING.labels(kind, service, method)
        domain = service_domain(service)
        slots = self.admission.slots(f"{service}/{method}")
        rule = self.access.rule(service, method)  # what the method declares, read once

        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            started_c.inc()
            t0 = time.perf_counter()
            md = _bind_call(request, context, method)
            code = grpc.StatusCode.UNKNOWN
            admitted = False
            try:
                who = self.access.admit(md, rule, service, method)
                structlog.contextvars.bind_contextvars(principal=who.name, role=who.role_name)
                admitted = await self._admit(slots, service, method, context)
                async for message in behavior(request, context):
                    yield message
                code = grpc.StatusCode.OK
            except grpc.aio.AbortError:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            except (asyncio.CancelledError, GeneratorExit):
                code = grpc.StatusCode.CANCELLED
                raise
            except Exception as exc:
                err = _status_of(exc, domain)
                code = err.code
                await context.abort_with_status(rpc_status.to_status(err.to_status()))
            finally:
                if admitted:
                    slots.release()
                GRPC_HANDLED.labels(kind, service, method, code.name).inc()
                hist.observe(time.perf_counter() - t0)

        return wrapped

    async def _admit(
        self,
        slots: asyncio.Semaphore,
        service: str,
        method: str,
        context: grpc.aio.ServicerContext,
    ) -> bool:
        """The readiness gate, then a slot of the method (True once taken)."""
        if not self.ready and service not in self.ungated:
            raise ge.Unavailable("NOT_READY", "the service is starting or stopping; retry")
        if not await self.admission.enter(slots, context.time_remaining()):
            raise ge.ResourceExhausted(
                "TOO_MANY_REQUESTS",
                f"{method} has {self.admission.limit} calls in flight; retry with backoff",
                metadata={"method": method, "limit": str(self.admission.limit)},
            )
        return True


def _bind_call(request: Any, context: grpc.aio.ServicerContext, method: str) -> dict[str, str]:
    """The call's log context (method, request and correlation ids) and request fingerprint;
    returns its metadata."""
    md = dict(context.invocation_metadata() or ())
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(
        rpc=method,
        request_id=_request_id(request, md),
        correlation_id=md.get("x-correlation-id") or str(uuid.uuid4()),
    )
    if getattr(request, "request_id", ""):
        calls.request_fingerprint.set(calls.fingerprint(request))
    return md


def _status_of(exc: Exception, domain: str) -> ge.ServiceError:
    """The status ``exc`` stands for, in the service's ErrorInfo ``domain`` unless it has one."""
    err = to_service_error(exc) or _internal(exc)
    if not err.domain:
        err.domain = domain
    if err.code is not grpc.StatusCode.INTERNAL:
        log.info("rpc.error", code=err.code.name, reason=err.reason)
    return err


def _refused(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A bidirectional method: refused (the interceptor checks no caller for them yet)."""

    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "streaming answers are not served")

    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            refuse,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return grpc.stream_stream_rpc_method_handler(
        refuse,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _request_id(request: Any, md: dict[str, str]) -> str:
    value = getattr(request, "request_id", "") if hasattr(request, "DESCRIPTOR") else ""
    return str(value or md.get("x-request-id", ""))[:128]


def _internal(exc: BaseException) -> ge.ServiceError:
    """INTERNAL for a bug, with an id that finds its single log line (the stack trace, never
    the local variables: they hold the request's personal data)."""
    error_id = uuid.uuid4().hex
    with contextlib.suppress(Exception):  # a failing log must not change what the caller gets
        log.error("rpc.internal_error", error_id=error_id, exc_info=exc)
    return ge.Internal(
        "INTERNAL",
        f"internal error; quote error id {error_id}",
        metadata={"error_id": error_id},
    )
