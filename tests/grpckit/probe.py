"""A probe gRPC service for the service kit's tests: raw bytes in and out (no protos), each
method a way for a handler to behave — fail with a bug, hit a database that is away or slow,
quote a huge input, or hold its slot until released."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import grpc

from shared.domain.errors import NotFound
from shared.eventstore import DuplicateEventId
from shared.grpckit import client
from shared.grpckit import errors as ge
from shared.grpckit.auth import AccessControl, Rule, TokenTable, parse_tokens, roles_of, table_line

SERVICE = "crm.probe.v1.ProbeService"
PERSONAL = "ada.lovelace@example.com"  # must never reach a log line
TOKEN = "probe-service-token"


def access() -> AccessControl:
    """The probe has no proto to declare its access: every method is open to the service role,
    whose token is TOKEN."""
    table = TokenTable(parse_tokens(table_line("probe", "service", TOKEN), "probe"))
    return AccessControl(table, rules=lambda service, method: Rule(roles_of(["service"])))


def channel(port: int) -> grpc.aio.Channel:
    return client.channel(f"127.0.0.1:{port}", TOKEN)


class Probe:
    def __init__(self, pool: asyncpg.Pool | None = None) -> None:
        self.pool = pool
        self.release = asyncio.Event()
        self.holding = 0

    async def boom(self, request: bytes, context: Any) -> bytes:
        email, key = request.decode(), b"\x01" * 32  # locals of the failing frame
        raise ValueError(f"unexpected state for a request of {len(email) + len(key)} bytes")

    async def database_away(self, request: bytes, context: Any) -> bytes:
        raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")

    async def database_shutdown(self, request: bytes, context: Any) -> bytes:
        raise asyncpg.exceptions.AdminShutdownError("terminating connection")

    async def reused_request_id(self, request: bytes, context: Any) -> bytes:
        raise DuplicateEventId("event id already stored with other content")

    async def domain_not_found(self, request: bytes, context: Any) -> bytes:
        raise NotFound("THING_NOT_FOUND", "no thing 42", thing_id="42")

    async def slow_statement(self, request: bytes, context: Any) -> bytes:
        assert self.pool is not None
        await self.pool.execute("SELECT pg_sleep(30)")
        return b"slept"

    async def echo_invalid(self, request: bytes, context: Any) -> bytes:
        text = request.decode()
        raise ge.InvalidArgument(
            "INVALID_TAG", f"tag {text} is not valid", violations=[("tags", text)] * 1000
        )

    async def hold(self, request: bytes, context: Any) -> bytes:
        self.holding += 1
        try:
            await self.release.wait()
        finally:
            self.holding -= 1
        return b"held"

    async def ok(self, request: bytes, context: Any) -> bytes:
        return b"ok"

    async def count(self, request: bytes, context: Any) -> AsyncIterator[bytes]:
        for i in range(int(request.decode() or "3")):
            yield str(i).encode()

    async def count_then_fail(self, request: bytes, context: Any) -> AsyncIterator[bytes]:
        yield b"0"
        raise NotFound("THING_NOT_FOUND", "no thing 42", thing_id="42")

    async def hold_stream(self, request: bytes, context: Any) -> AsyncIterator[bytes]:
        yield await self.hold(request, context)

    def register(self, server: grpc.aio.Server) -> None:
        methods: dict[str, Callable[[bytes, Any], Awaitable[bytes]]] = {
            "Boom": self.boom,
            "DatabaseAway": self.database_away,
            "DatabaseShutdown": self.database_shutdown,
            "ReusedRequestId": self.reused_request_id,
            "DomainNotFound": self.domain_not_found,
            "SlowStatement": self.slow_statement,
            "EchoInvalid": self.echo_invalid,
            "Hold": self.hold,
            "Ok": self.ok,
        }
        handlers = {name: grpc.unary_unary_rpc_method_handler(fn) for name, fn in methods.items()}
        streams: dict[str, Callable[[bytes, Any], AsyncIterator[bytes]]] = {
            "Count": self.count,
            "CountThenFail": self.count_then_fail,
            "HoldStream": self.hold_stream,
        }
        handlers |= {name: grpc.unary_stream_rpc_method_handler(fn) for name, fn in streams.items()}
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])


def call(channel: grpc.aio.Channel, method: str) -> grpc.aio.UnaryUnaryMultiCallable:
    return channel.unary_unary(f"/{SERVICE}/{method}")


def stream(channel: grpc.aio.Channel, method: str) -> grpc.aio.UnaryStreamMultiCallable:
    return channel.unary_stream(f"/{SERVICE}/{method}")
