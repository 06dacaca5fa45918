"""grpc.aio server bootstrap: health (NOT_SERVING until ready), reflection, interceptor,
graceful drain on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from shared.grpckit.interceptor import ServerInterceptor

T = TypeVar("T")

log = structlog.get_logger(__name__)

# A health name that reports SERVING for as long as the process runs: liveness probes use it,
# so a database outage makes pods unready (no traffic) without restarting them.
LIVENESS = "liveness"

Register = Callable[[grpc.aio.Server], None]


class GrpcServer:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        services: Iterable[tuple[str, Register]] = (),
        grace: float = 20.0,
    ) -> None:
        self.server = grpc.aio.server(
            interceptors=[ServerInterceptor()],
            options=[
                ("grpc.max_receive_message_length", 8 * 1024 * 1024),
                ("grpc.so_reuseport", 0),
            ],
        )
        self.grace = grace
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.names = [name for name, _ in services]
        for _, register in services:
            register(self.server)
        reflection.enable_server_reflection(
            [*self.names, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server
        )
        self.port = self.server.add_insecure_port(f"{host}:{port}")

    async def start(self) -> None:
        await self._set_all(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.health.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
        await self.server.start()

    async def ready(self) -> None:
        await self._set_all(health_pb2.HealthCheckResponse.SERVING)

    async def _set_all(self, status: int) -> None:
        for name in ["", *self.names]:
            await self.health.set(name, status)

    async def stop(self) -> None:
        """Drain: report NOT_SERVING (load balancers stop sending), let in-flight calls finish."""
        await self._set_all(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.stop(self.grace)


async def run_until_signalled(
    main: Callable[[asyncio.Event], Awaitable[None]],
) -> None:
    """Run ``main(stop)``; SIGTERM or SIGINT sets ``stop``."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await main(stop)


async def unless_stopped(work: Awaitable[T], stop: asyncio.Event) -> T | None:
    """``work``'s result, or None if ``stop`` is set first (e.g. SIGTERM while the database is
    still away at start-up): a pod must be able to stop before it ever connected."""
    doing = asyncio.ensure_future(work)
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait([doing, stopping], return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if doing.done():
        return doing.result()
    doing.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await doing
    return None
