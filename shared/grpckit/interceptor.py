"""One server interceptor for every RPC: Prometheus metrics with the standard grpc_server_* names,
request/correlation ids in the logs, and errors mapped to rich statuses — never a stack trace."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import structlog
from grpc_status import rpc_status

from shared.eventstore import WrongExpectedVersion
from shared.grpckit.errors import Aborted, ServiceError, Unavailable
from shared.metrics import GRPC_HANDLED, GRPC_HANDLING, GRPC_STARTED

log = structlog.get_logger("grpc")

_UNAVAILABLE = (OSError, ConnectionError)


def _to_service_error(exc: BaseException) -> ServiceError | None:
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, WrongExpectedVersion):
        return Aborted(
            "CONCURRENT_MODIFICATION",
            "the entity was changed concurrently; read it again and retry",
            metadata={"actual_version": str(exc.actual)},
        )
    try:
        import asyncpg

        if isinstance(exc, asyncpg.PostgresConnectionError | asyncpg.InterfaceError):
            return Unavailable("DATABASE_UNAVAILABLE", "the database is unavailable; retry")
    except ImportError:  # pragma: no cover
        pass
    if isinstance(exc, _UNAVAILABLE):
        return Unavailable("DATABASE_UNAVAILABLE", "a dependency is unavailable; retry")
    return None


class ServerInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self) -> None:
        # Handlers are fixed once the server runs: wrap each method once, not on every call.
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

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
        if service.startswith("grpc."):  # health and reflection: not ours to instrument
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
        return handler

    def _wrap(
        self, behavior: Callable[..., Any], service: str, method: str, kind: str
    ) -> Callable[..., Awaitable[Any]]:
        started_c = GRPC_STARTED.labels(kind, service, method)
        hist = GRPC_HANDLING.labels(kind, service, method)

        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started_c.inc()
            t0 = time.perf_counter()
            md = dict(context.invocation_metadata() or ())
            structlog.contextvars.clear_contextvars()
            structlog.contextvars.bind_contextvars(
                rpc=method,
                request_id=getattr(request, "request_id", "") or md.get("x-request-id", ""),
                correlation_id=md.get("x-correlation-id") or str(uuid.uuid4()),
            )
            code = grpc.StatusCode.OK
            try:
                return await behavior(request, context)
            except Exception as exc:
                err = _to_service_error(exc)
                if err is None:
                    if isinstance(exc, grpc.aio.AbortError):
                        code = context.code() or grpc.StatusCode.UNKNOWN
                        raise
                    log.exception("rpc.internal_error")
                    err = ServiceError("INTERNAL", "internal error; it has been logged")
                code = err.code
                log.info("rpc.error", code=code.name, reason=err.reason)
                await context.abort_with_status(rpc_status.to_status(err.to_status()))
            finally:
                GRPC_HANDLED.labels(kind, service, method, code.name).inc()
                hist.observe(time.perf_counter() - t0)

        return wrapped
