"""What every service's composition root does the same way: open the database and the event
store (migrating what the service owns), serve its API (``serve``), and run its projections and
workers with the Admin API beside them (``project``) until stopped."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import structlog
import uvloop

from shared.admin.log_audit import audit_side
from shared.admin.servicer import SERVICE as ADMIN
from shared.admin.servicer import AdminServicer
from shared.db import connect_pool, embedded
from shared.domain import paging
from shared.eventstore import EventStore
from shared.eventstore.audit.checkpoints import CheckpointFormatError
from shared.eventstore.postgres import PostgresEventStore
from shared.grpckit.auth import TokenTable, TokenTableError
from shared.grpckit.server import (
    GrpcServer,
    Limits,
    ServerTls,
    run_until_signalled,
    unless_stopped,
)
from shared.logs import configure
from shared.metrics import serve_metrics
from shared.migrations import migrate_database, wait_until_migrated
from shared.projections.lag import update_lag
from shared.projections.model import Projection
from shared.projections.runner import ProjectionRunner
from shared.projections.schema import ensure_schema
from shared.service import Api, ProcessRole, ServiceSpec
from shared.settings import Settings
from shared.supervision import Worker, sleep_unless_stopped, supervise

LAG_EVERY = 5.0  # seconds between projection-lag metric updates
READY_EVERY = 0.5  # seconds between readiness updates of a project role
log = structlog.get_logger(__name__)


@dataclass
class Runtime:
    dsn: str
    pool: asyncpg.Pool  # checkpoints and read models (PostgreSQL whatever the store backend)
    store: EventStore

    async def close(self) -> None:
        await self.store.close()
        await self.pool.close()  # already closed by a PostgreSQL store: a no-op then


async def connect(
    settings: Settings,
    *,
    migrations: Sequence[tuple[str, Path]] = (),
    projections: Sequence[Projection] = (),
) -> Runtime:
    """Connect (waiting for the database); migrate the store, the checkpoints and the service's
    own ``migrations`` (component, directory) and create the projections' schemas, or with
    MIGRATE_ON_START=false wait until the migrate command has (shared/migrations.py); build the
    store for ``EVENTSTORE_BACKEND``."""
    dsn = settings.database_url
    if not dsn:
        dsn, _ = embedded.start(embedded.default_data_dir())
    pool = await connect_pool(
        dsn,
        max_size=settings.db_pool_size,
        wait_seconds=120,
        statement_timeout=settings.db_statement_timeout_seconds,
    )
    in_store = settings.eventstore_backend == "postgres"
    try:
        if settings.migrate_on_start:
            async with pool.acquire() as conn:
                await migrate_database(conn, migrations, projections, store=in_store)
        else:
            await wait_until_migrated(pool, migrations, projections, store=in_store)
    except BaseException:  # stopped while waiting, or failed: the pool is nobody's then
        pool.terminate()
        raise
    store: Any
    if settings.eventstore_backend == "eventstoredb":
        from shared.eventstore.esdb import EventStoreDBStore

        if not settings.eventstore_url:
            raise SystemExit("EVENTSTORE_URL is required with EVENTSTORE_BACKEND=eventstoredb")
        store = await EventStoreDBStore.connect(settings.eventstore_url)
    else:
        store = PostgresEventStore(pool, dsn)
    return Runtime(dsn, pool, store)


async def serve(
    settings: Settings,
    stop: asyncio.Event,
    api: Api,
    connect: Callable[[Settings], Awaitable[Runtime]],
) -> None:
    """A serve role: the gRPC server starts at once (NOT_SERVING), the database is connected
    (and migrated) while it waits, then the API is bound and the server reports SERVING, until
    ``stop``. Refuses to start without a token table: an API nobody may call is a mistake."""
    server = GrpcServer(
        host=settings.grpc_host,
        port=settings.grpc_port,
        services=api.services,
        grace=settings.shutdown_grace_seconds,
        limits=Limits.of(settings),
        tokens=api_tokens(settings),
        tls=ServerTls.of(settings),
    )
    await server.start()
    serve_metrics(settings.metrics_port, settings.metrics_host)
    rt = await unless_stopped(connect(settings), stop)
    if rt is None:
        await server.stop()
        return
    await api.bind(rt, settings)
    await server.ready()
    log.info("serving", services=[name for name, _ in api.services], port=server.port)
    await stop.wait()
    await server.stop()
    await api.close()
    await rt.close()


def api_tokens(settings: Settings, *, required: bool = True) -> TokenTable:
    """The token table (shared/grpckit/auth.py); exits when it cannot be read, or when it is
    empty and ``required`` (a serve role; a project role's server answers health checks only)."""
    try:
        tokens = TokenTable.of(settings)
    except TokenTableError as exc:
        raise SystemExit(f"the token table cannot be read: {exc}") from None
    if required and not len(tokens):
        raise SystemExit(
            "no API tokens: set CRM_TOKENS or CRM_TOKENS_FILE (README, 'Calling the API')"
        )
    log.info("tokens.loaded", entries=len(tokens), names=sorted({t.name for t in tokens.tokens}))
    return tokens


@dataclass
class Work:
    """What a project role runs on its runtime: its projections (read models, engines,
    reactors), other supervised workers (name -> run until the role's stop event: timers), and
    what to close once they have stopped."""

    projections: Sequence[Projection]
    workers: Mapping[str, Callable[[], Awaitable[None]]] = field(default_factory=dict)
    close: Callable[[], Awaitable[None]] | None = None


async def project(
    settings: Settings,
    stop: asyncio.Event,
    connect: Callable[[Settings], Awaitable[Runtime]],
    work: Callable[[Runtime, Any, asyncio.Event], Work],
    *,
    service: str,
) -> None:
    """A project role: the gRPC server starts at once (NOT_SERVING) with health and the Admin
    API (shared/admin/) about this role's projections; the database is connected (and migrated)
    while it waits; ``work`` builds what the role runs, which runs (run_projections) until
    ``stop``. The Admin API answers from then on, also while a worker is down."""
    admin = AdminServicer(service)
    server = GrpcServer(
        host=settings.grpc_host,
        port=settings.grpc_port,
        services=admin.services,
        grace=1.0,
        limits=Limits.of(settings),
        tokens=api_tokens(settings, required=False),
        tls=ServerTls.of(settings),
        ungated=[ADMIN],
    )
    await server.start()
    serve_metrics(settings.metrics_port, settings.metrics_host)
    rt = await unless_stopped(connect(settings), stop)
    if rt is None:
        await server.stop()
        return
    jobs = work(rt, settings, stop)
    try:
        audit, signing_key = audit_side(rt.store, settings.checkpoint_signing_key)
    except CheckpointFormatError as exc:  # checkpoint_writer would stop the role: stop it now
        raise SystemExit(f"CHECKPOINT_SIGNING_KEY is set, but: {exc}") from None
    admin.bind(
        rt.store,
        rt.pool,
        rt.dsn,
        jobs.projections,
        settings.projection_batch_size,
        audit=audit,
        signing_key=signing_key,
    )
    try:
        await server.ready()
        await run_projections(
            rt, jobs.projections, settings, stop, server=server, workers=jobs.workers
        )
    finally:
        await admin.close()  # a rebuild it runs stops now, recorded as interrupted
        await server.stop()
        if jobs.close is not None:
            await jobs.close()
        await rt.close()


async def run_projections(
    rt: Runtime,
    projections: Sequence[Projection],
    settings: Settings,
    stop: asyncio.Event,
    *,
    server: GrpcServer | None = None,
    workers: Mapping[str, Callable[[], Awaitable[None]]] | None = None,
) -> None:
    """One supervised runner per projection (each leads or stands by, see the runner) plus the
    supervised ``workers`` (name -> run until ``stop``, e.g. timers), until ``stop``. Meanwhile
    ``server`` reports SERVING only while every one of them runs, and the lag metrics are
    measured from the checkpoints table and the store."""
    async with rt.pool.acquire() as conn:
        for projection in projections:  # idempotent: schemas connect() did not know about
            await ensure_schema(conn, projection, projection.schema)
    runners = [
        ProjectionRunner(
            rt.store,
            projection,
            pool=rt.pool,
            dsn=rt.dsn,
            batch_size=settings.projection_batch_size,
        )
        for projection in projections
    ]
    workers = {**checkpoint_writer(rt, settings, stop), **(workers or {})}
    others = {Worker(name): run for name, run in workers.items()}
    tasks = [asyncio.create_task(r.run(stop)) for r in runners]
    tasks += [asyncio.create_task(supervise(w, run, stop)) for w, run in others.items()]
    everyone = [*(r.worker for r in runners), *others]
    next_lag = 0.0
    await asyncio.sleep(0)  # let every worker start before readiness is first judged
    while not stop.is_set():
        if server is not None:
            await server.set_ready(
                all(w.healthy for w in everyone),
                why=", ".join(f"{w.name}: {w.last_error}" for w in everyone if not w.healthy),
            )
        if time.monotonic() >= next_lag:
            next_lag = time.monotonic() + LAG_EVERY
            try:  # bounded: a hanging database must not hold readiness back
                await asyncio.wait_for(update_lag(rt.pool, rt.store, projections), LAG_EVERY)
            except Exception as exc:  # the database is away: the workers' own logs say more
                log.warning("projection.lag_unmeasured", error=f"{type(exc).__name__}: {exc}")
        await sleep_unless_stopped(stop, READY_EVERY)
    await asyncio.gather(*tasks)


def checkpoint_writer(
    rt: Runtime, settings: Settings, stop: asyncio.Event
) -> dict[str, Callable[[], Awaitable[None]]]:
    """The signed-checkpoint writer (shared/eventstore/audit/worker.py) when this role's
    environment has ``CHECKPOINT_SIGNING_KEY``; a key that cannot be read, or a backend that
    keeps no checkpoints, stops the role at once."""
    if not settings.checkpoint_signing_key:
        return {}
    from shared.eventstore.audit.checkpoints import CheckpointFormatError, SigningKey
    from shared.eventstore.audit.port import CheckpointsUnsupported, audit_log
    from shared.eventstore.audit.worker import NAME, CheckpointWriter

    try:
        key = SigningKey.parse(settings.checkpoint_signing_key)
        audit = audit_log(rt.store)
    except (CheckpointFormatError, CheckpointsUnsupported) as exc:
        raise SystemExit(f"CHECKPOINT_SIGNING_KEY is set, but: {exc}") from None
    writer = CheckpointWriter(audit, key, rt.dsn, every=settings.checkpoint_interval_seconds)
    return {NAME: lambda: writer.run(stop)}


def main(argv: Sequence[str], spec: ServiceSpec) -> None:
    """``python -m services.<name> <role>``: settings from the environment, logging, uvloop,
    and the role run until SIGTERM/SIGINT."""
    role = argv[1] if len(argv) > 1 else ""
    if role not in spec.roles:
        raise SystemExit(f"usage: python -m services.{spec.name} {'|'.join(spec.roles)}")
    entry = spec.roles[role]
    if isinstance(entry, ProcessRole):  # its own program: this process becomes it
        sys.stdout.flush()
        os.execv(sys.executable, [sys.executable, "-m", entry.module, *argv[2:]])  # noqa: S606
    config = spec.settings()
    if role != "serve":  # long batches and rebuilds are normal off the API path; the
        # supervisor handles a database that hangs, and the lag metric shows it
        config = config.model_copy(update={"db_statement_timeout_seconds": 0.0})
    configure(config.log_level, config.log_format)
    paging.use_secret(config.page_token_secret)
    uvloop.install()
    run = entry
    asyncio.run(run_until_signalled(lambda stop: run(config, stop)))
