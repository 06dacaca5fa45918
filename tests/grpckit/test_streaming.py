"""Server-streaming methods get what unary ones get from the service kit, over a real socket: the
readiness gate (and the exemption a self-checking service may have from it), admission, the
error path (an error after some messages ends the stream with its rich status) and metrics."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_status import rpc_status

from shared.grpckit.errors import error_info
from shared.grpckit.server import GrpcServer, Limits
from shared.metrics import GRPC_HANDLED
from tests.grpckit.probe import SERVICE, Probe, access, channel, stream


def handled(method: str, code: str) -> float:
    return GRPC_HANDLED.labels("server_stream", SERVICE, method, code)._value.get()


async def messages(ch: grpc.aio.Channel, method: str, body: bytes = b"") -> list[bytes]:
    return [m async for m in stream(ch, method)(body, timeout=30)]


async def started(ungated: tuple[str, ...] = ()) -> tuple[GrpcServer, Probe]:
    probe = Probe()
    server = GrpcServer(
        host="127.0.0.1",
        port=0,
        services=[(SERVICE, probe.register)],
        grace=0.1,
        limits=Limits(max_in_flight_per_method=1, queue_seconds=0.2),
        access=access(),
        ungated=ungated,
    )
    await server.start()
    return server, probe


async def test_a_stream_is_served_counted_and_fails_with_a_rich_status() -> None:
    server, _ = await started()
    await server.ready()
    async with channel(server.port) as ch:
        before = handled("Count", "OK")
        assert await messages(ch, "Count", b"4") == [b"0", b"1", b"2", b"3"]
        got: list[bytes] = []
        call = stream(ch, "CountThenFail")(b"", timeout=30)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for m in call:
                got.append(m)
        assert got == [b"0"]
        assert info.value.code() is grpc.StatusCode.NOT_FOUND
        status = rpc_status.from_call(info.value)
        assert status is not None
        detail = error_info(status)
        assert detail is not None and (detail.reason, detail.domain) == (
            "THING_NOT_FOUND",
            "probe.crm",
        )
        for _ in range(100):
            if handled("Count", "OK") > before and handled("CountThenFail", "NOT_FOUND"):
                break
            await asyncio.sleep(0.01)
        assert handled("Count", "OK") == before + 1
        assert handled("CountThenFail", "NOT_FOUND") >= 1
    await server.stop()


async def test_a_stream_waits_for_readiness_unless_its_service_is_ungated() -> None:
    server, _ = await started()
    async with channel(server.port) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await messages(ch, "Count")
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    await server.stop()
    server, _ = await started(ungated=(SERVICE,))
    async with channel(server.port) as ch:
        assert await messages(ch, "Count", b"1") == [b"0"]  # not ready, yet answered
    await server.stop()


async def test_a_stream_holds_its_slot_while_it_runs() -> None:
    server, probe = await started()
    await server.ready()
    async with channel(server.port) as ch:
        holding = asyncio.create_task(messages(ch, "HoldStream"))
        while probe.holding == 0:
            await asyncio.sleep(0.01)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await messages(ch, "HoldStream")
        assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        probe.release.set()
        assert await holding == [b"held"]
    await server.stop()


async def test_a_stream_is_refused_to_a_caller_without_a_token() -> None:
    server, _ = await started()
    await server.ready()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await messages(ch, "Count")
        assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
    await server.stop()
    server, _ = await started(ungated=(SERVICE,))  # ungated is no way around access control
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await messages(ch, "Count")
        assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
    await server.stop()
