"""The service kit's error path, over a real gRPC socket: what the caller gets, what the log
says, what the metrics count — for a bug, a database that is away or slow, a status that would
quote a huge input, and a method called by more callers than it may serve at once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import asyncpg
import grpc
import pytest
import structlog
from google.rpc.status_pb2 import Status
from grpc_status import rpc_status

from shared.db import connect_pool
from shared.grpckit.errors import error_info
from shared.grpckit.server import GrpcServer, Limits
from shared.logs import configure
from shared.metrics import GRPC_HANDLED
from tests.grpckit.probe import PERSONAL, SERVICE, Probe, access, call
from tests.grpckit.probe import channel as probe_channel


class Env:
    def __init__(self, probe: Probe, channel: grpc.aio.Channel) -> None:
        self.probe, self.channel = probe, channel

    async def fails(self, method: str, body: bytes = b"") -> tuple[grpc.StatusCode, Status]:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call(self.channel, method)(body, timeout=30)
        status = rpc_status.from_call(info.value)
        assert status is not None, "the status must carry details"
        return info.value.code(), status


@pytest.fixture
async def env(dsn: str) -> AsyncIterator[Env]:
    pool = await connect_pool(dsn, max_size=4, statement_timeout=0.2)
    probe = Probe(pool)
    server = GrpcServer(
        host="127.0.0.1",
        port=0,
        services=[(SERVICE, probe.register)],
        grace=0.1,
        limits=Limits(max_in_flight_per_method=3, queue_seconds=0.2),
        access=access(),
    )
    await server.start()
    await server.ready()
    channel = probe_channel(server.port)
    yield Env(probe, channel)
    probe.release.set()
    await channel.close()
    await server.stop()
    await pool.close()
    structlog.reset_defaults()


def handled(method: str, code: str) -> float:
    return GRPC_HANDLED.labels("unary", SERVICE, method, code)._value.get()


async def counted(method: str, code: str, at_least: float) -> float:
    """The handled counter once it reaches ``at_least``: the server counts a call just after
    the caller got its answer, so look until it has (bounded)."""
    for _ in range(500):
        if (value := handled(method, code)) >= at_least:
            return value
        await asyncio.sleep(0.01)
    return handled(method, code)


@pytest.mark.parametrize("fmt", ["json", "console"])
async def test_a_bug_is_internal_with_an_error_id_found_in_one_log_line_without_personal_data(
    env: Env, fmt: str, capfd: pytest.CaptureFixture[str]
) -> None:
    configure("INFO", fmt, cache=False)
    before = handled("Boom", "INTERNAL")
    capfd.readouterr()
    code, status = await env.fails("Boom", PERSONAL.encode())
    assert code is grpc.StatusCode.INTERNAL
    info = error_info(status)
    assert info is not None and info.reason == "INTERNAL" and info.domain == "probe.crm"
    error_id = info.metadata["error_id"]
    assert error_id and error_id in status.message
    logged = capfd.readouterr().err
    lines = [line for line in logged.splitlines() if error_id in line]
    assert len(lines) == 1, logged
    assert "ValueError" in logged  # the stack trace is there…
    assert PERSONAL not in logged and "x01" not in logged and "locals" not in logged  # …no locals
    if fmt == "json":
        record = json.loads(lines[0])
        assert record["event"] == "rpc.internal_error" and record["exception"]
    assert await counted("Boom", "INTERNAL", before + 1) == before + 1


@pytest.mark.parametrize("method", ["DatabaseAway", "DatabaseShutdown"])
async def test_a_database_that_is_away_is_unavailable_and_retryable(env: Env, method: str) -> None:
    before = handled(method, "UNAVAILABLE")
    code, status = await env.fails(method)
    assert code is grpc.StatusCode.UNAVAILABLE
    info = error_info(status)
    assert info is not None and info.reason == "DATABASE_UNAVAILABLE"
    assert await counted(method, "UNAVAILABLE", before + 1) == before + 1


async def test_a_request_id_reused_for_another_request_is_already_exists(env: Env) -> None:
    code, status = await env.fails("ReusedRequestId")
    assert code is grpc.StatusCode.ALREADY_EXISTS
    info = error_info(status)
    assert info is not None and info.reason == "REQUEST_ID_REUSED"


async def test_a_statement_over_the_time_limit_is_deadline_exceeded(env: Env) -> None:
    code, status = await env.fails("SlowStatement")
    assert code is grpc.StatusCode.DEADLINE_EXCEEDED
    info = error_info(status)
    assert info is not None and info.reason == "DATABASE_TIMEOUT"


async def test_a_status_quoting_a_huge_input_still_fits_the_trailers(env: Env) -> None:
    code, status = await env.fails("EchoInvalid", b"x" * 1_000_000)
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(status)
    assert info is not None and info.reason == "INVALID_TAG"
    assert len(status.SerializeToString()) < 16 * 1024
    assert "more violations not listed" in status.message


async def test_one_method_cannot_take_every_slot_and_cheap_calls_stay_cheap(env: Env) -> None:
    hold = call(env.channel, "Hold")

    async def one() -> bytes:
        return await hold(b"", timeout=30)

    calls = [asyncio.create_task(one()) for _ in range(10)]
    while env.probe.holding < 3:  # the method's limit
        await asyncio.sleep(0.01)
    assert await call(env.channel, "Ok")(b"", timeout=30) == b"ok"  # another method: served
    while sum(t.done() for t in calls) < 7:  # the calls beyond the limit are turned away
        await asyncio.sleep(0.01)
    assert env.probe.holding == 3
    for task in [t for t in calls if t.done()]:
        err = task.exception()
        assert isinstance(err, grpc.aio.AioRpcError)
        assert err.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        status = rpc_status.from_call(err)
        assert status is not None
        info = error_info(status)
        assert info is not None and info.reason == "TOO_MANY_REQUESTS"
    env.probe.release.set()
    held = await asyncio.gather(*[t for t in calls if not t.done()])
    assert held == [b"held"] * 3


async def test_pool_connections_survive_a_cancelled_statement(env: Env, dsn: str) -> None:
    await env.fails("SlowStatement")
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()


async def test_calls_are_unavailable_until_the_server_is_ready() -> None:
    probe = Probe()
    server = GrpcServer(
        host="127.0.0.1", port=0, services=[(SERVICE, probe.register)], access=access()
    )
    await server.start()
    async with probe_channel(server.port) as channel:
        env = Env(probe, channel)
        code, status = await env.fails("Ok")
        assert code is grpc.StatusCode.UNAVAILABLE
        info = error_info(status)
        assert info is not None and (info.reason, info.domain) == ("NOT_READY", "probe.crm")
        await server.ready()
        assert await call(channel, "Ok")(b"", timeout=30) == b"ok"
        await server.set_ready(False)  # draining, or the runtime went away
        code, _ = await env.fails("Ok")
        assert code is grpc.StatusCode.UNAVAILABLE
    await server.stop()


async def test_domain_errors_need_no_mapping_in_the_servicer(env: Env) -> None:
    code, status = await env.fails("DomainNotFound")
    assert code is grpc.StatusCode.NOT_FOUND
    info = error_info(status)
    assert info is not None and (info.reason, info.domain) == ("THING_NOT_FOUND", "probe.crm")
    assert info.metadata["thing_id"] == "42"
