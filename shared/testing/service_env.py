"""A registered service, served for tests from its spec: the same API object its serve role
binds (``ServiceSpec.api``) behind a real gRPC server on a free port, on a real PostgreSQL
store, with its read models (and any extra projections or reactors) running (``serving``); or
its project role itself, run in this process as `python -m services.<name> project` runs it,
with its Admin API on a free port (``projecting``). Access control is on: every server knows
the test tokens (shared/testing/tokens.py); ``Served.channel`` calls with the service role's,
``Projecting.channel`` with the operator's, and ``channel_as`` opens one for another role."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shared.eventstore.postgres import PostgresEventStore
from shared.grpckit import client
from shared.grpckit.auth import TokenTable
from shared.grpckit.server import GrpcServer
from shared.projections.model import Projection
from shared.projections.runner import ProjectionRunner
from shared.projections.schema import ensure_schema
from shared.runtime import Runtime
from shared.service import Api, ProcessRole, Role, ServiceSpec
from shared.testing import tokens


@dataclass
class Served:
    api: Any  # the service's API object (its servicers, webhook port, …)
    store: PostgresEventStore
    channel: grpc.aio.Channel
    target: str  # host:port of its gRPC server
    runners: list[ProjectionRunner]

    async def settle(self) -> None:
        """Wait until every running projection has applied every event committed so far,
        including events the projections themselves append meanwhile (reactors, engines)."""
        while True:
            head = await self.store.head_position()
            for r in self.runners:
                await r.wait_for(head)
            if await self.store.head_position() == head:
                return

    async def event_count(self) -> int:
        return int(await self.store.pool.fetchval("SELECT count(*) FROM eventstore.events"))

    def channel_as(self, role: str, *, reason: str = "") -> grpc.aio.Channel:
        """A new channel calling with the test token of ``role`` (and ``x-crm-reason``); the
        caller closes it."""
        return client.channel(self.target, tokens.TOKENS[role], reason=reason)


@asynccontextmanager
async def serving(
    spec: ServiceSpec,
    dsn: str,
    *,
    api: Api | None = None,
    settings: dict[str, Any] | None = None,
    projections: Sequence[Projection] | None = None,
    extra: Sequence[Projection] = (),
    store: PostgresEventStore | None = None,
) -> AsyncIterator[Served]:
    """Serve ``spec``'s API (or ``api``, e.g. one built with a test clock) with ``settings``
    over the spec's defaults; run ``projections`` (default: the spec's read models) and
    ``extra`` ones (reactors, another service's read model)."""
    assert spec.api is not None, f"{spec.name} declares no API"
    own_store = store is None
    store = store or await PostgresEventStore.connect(dsn, max_size=10)
    config = spec.settings(database_url=dsn, **{**tokens.SETTINGS, **(settings or {})})
    the_api = api or spec.api()
    server = GrpcServer(
        host="127.0.0.1",
        port=0,
        services=the_api.services,
        grace=1,
        tokens=TokenTable.of(config),
    )
    await server.start()
    await the_api.bind(Runtime(dsn, store.pool, store), config)
    await server.ready()
    chosen = [*(spec.projections() if projections is None else projections), *extra]
    async with store.pool.acquire() as conn:
        for p in chosen:
            await ensure_schema(conn, p, p.schema)
    runners = [ProjectionRunner(store, p) for p in chosen]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(r.run(stop)) for r in runners]
    target = f"127.0.0.1:{server.port}"
    channel = client.channel(target, tokens.SERVICE_TOKEN)
    try:
        yield Served(the_api, store, channel, target, runners)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await channel.close()
        await server.stop()
        await the_api.close()
        if own_store:
            await store.close()


@dataclass
class Projecting:
    target: str  # host:port of the role's gRPC server (health, AdminService)
    channel: grpc.aio.Channel  # calls with the test operator's token
    settings: Any

    def channel_as(self, role: str, *, reason: str = "") -> grpc.aio.Channel:
        """A new channel calling with the test token of ``role``; the caller closes it."""
        return client.channel(self.target, tokens.TOKENS[role], reason=reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def projecting(
    spec: ServiceSpec,
    dsn: str,
    *,
    settings: dict[str, Any] | None = None,
    role: Role | None = None,
    ready: bool = True,
) -> AsyncIterator[Projecting]:
    """Run ``spec``'s project role (or ``role``, e.g. ``runtime.project`` with projections of a
    test's own) in this process on ``dsn`` with ``settings`` over the spec's defaults, on a free
    port; yield once it reports SERVING (``ready``) or at least answers; stop it at the end."""
    port = free_port()
    config = spec.settings(
        **{
            "database_url": dsn,
            "grpc_host": "127.0.0.1",
            "grpc_port": port,
            "metrics_port": 0,
            "db_statement_timeout_seconds": 0.0,  # as runtime.main sets for non-serve roles
            **tokens.SETTINGS,
            **(settings or {}),
        }
    )
    stop = asyncio.Event()
    project = spec.roles["project"]
    assert not isinstance(project, ProcessRole), "a project role runs on the asyncio runtime"
    run: Callable[[Any, asyncio.Event], Awaitable[None]] = role or project
    task: asyncio.Future[None] = asyncio.ensure_future(run(config, stop))
    target = f"127.0.0.1:{port}"
    channel = client.channel(target, tokens.TOKENS["operator"])
    try:
        await _wait_for_health(channel, task, ready)
        yield Projecting(target, channel, config)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await channel.close()


async def _wait_for_health(
    channel: grpc.aio.Channel, task: asyncio.Future[None], ready: bool
) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    wanted = health_pb2.HealthCheckResponse.SERVING
    for _ in range(600):
        if task.done():
            task.result()
            raise RuntimeError("the project role stopped during start-up")
        try:
            status = (await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)).status
            if status == wanted or not ready:
                return
        except grpc.aio.AioRpcError:
            pass
        await asyncio.sleep(0.05)
    raise TimeoutError("the project role did not report SERVING within 30 s")
