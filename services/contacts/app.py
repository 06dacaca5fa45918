"""The contacts service's composition root: wires store, read model, gRPC and projections."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog

from crm.contacts.v1 import consent_pb2_grpc as consent_grpc
from crm.contacts.v1 import contacts_pb2_grpc as pb_grpc
from services.contacts.adapters.consent_readmodel import ConsentProjection
from services.contacts.adapters.keys import MIGRATIONS as KEY_MIGRATIONS
from services.contacts.adapters.keys import DataKeys
from services.contacts.adapters.readmodel import ContactsProjection
from services.contacts.api.consent_servicer import SERVICE as CONSENT
from services.contacts.api.consent_servicer import ConsentServicer
from services.contacts.api.servicer import ContactsServicer
from services.contacts.application.commands import ContactCommands
from services.contacts.application.consent import ConsentLedgers
from services.contacts.application.importer import ContactImporter
from services.contacts.application.queries import ContactQueries
from shared.db import connect_pool, embedded, migrate
from shared.eventstore import EventStore
from shared.eventstore.postgres import MIGRATIONS as STORE_MIGRATIONS
from shared.eventstore.postgres import PostgresEventStore
from shared.grpckit.server import GrpcServer, unless_stopped
from shared.metrics import serve_metrics
from shared.projections.runner import ProjectionRunner, ensure_schema
from shared.projections.store import MIGRATIONS as PROJECTION_MIGRATIONS
from shared.settings import Settings

SERVICE = "crm.contacts.v1.ContactsService"
PROJECTIONS = (ContactsProjection(), ConsentProjection())
log = structlog.get_logger(__name__)


@dataclass
class Runtime:
    dsn: str
    pool: asyncpg.Pool
    store: EventStore


async def connect(settings: Settings) -> Runtime:
    """Connect (waiting for the database), migrate what this service owns, build the store."""
    dsn = settings.database_url
    if not dsn:
        dsn, _ = embedded.start(embedded.default_data_dir())
    pool = await connect_pool(dsn, max_size=settings.db_pool_size, wait_seconds=120)
    async with pool.acquire() as conn:
        if settings.eventstore_backend == "postgres":
            await migrate(conn, "eventstore", STORE_MIGRATIONS)
        await migrate(conn, "projections", PROJECTION_MIGRATIONS)
        await migrate(conn, "contacts", KEY_MIGRATIONS)
        for projection in PROJECTIONS:
            await ensure_schema(conn, projection, projection.schema)
    store: Any
    if settings.eventstore_backend == "eventstoredb":
        from shared.eventstore.esdb import EventStoreDBStore

        if not settings.eventstore_url:
            raise SystemExit("EVENTSTORE_URL is required with EVENTSTORE_BACKEND=eventstoredb")
        store = await EventStoreDBStore.connect(settings.eventstore_url)
    else:
        store = PostgresEventStore(pool, dsn)
    return Runtime(dsn, pool, store)


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    servicer, consent = ContactsServicer(), ConsentServicer()
    server = GrpcServer(
        host=settings.grpc_host,
        port=settings.grpc_port,
        services=[
            (SERVICE, lambda s: pb_grpc.add_ContactsServiceServicer_to_server(servicer, s)),
            (CONSENT, lambda s: consent_grpc.add_ConsentServiceServicer_to_server(consent, s)),
        ],
        grace=settings.shutdown_grace_seconds,
    )
    await server.start()  # health: NOT_SERVING until the database is reachable and migrated
    serve_metrics(settings.metrics_port)
    rt = await unless_stopped(connect(settings), stop)
    if rt is None:
        await server.stop()
        return
    keys = DataKeys(rt.pool)
    commands = ContactCommands(rt.store, keys)
    importer = (
        ContactImporter(rt.store, keys, commands)
        if isinstance(rt.store, PostgresEventStore)
        else None
    )
    servicer.bind(commands, ContactQueries(rt.pool), importer)
    consent.bind(ConsentLedgers(rt.store, rt.pool))
    await server.ready()
    log.info("contacts.serving", port=server.port)
    await stop.wait()
    await server.stop()
    await rt.store.close()
    if rt.store is not rt.pool:
        await rt.pool.close()


async def project(settings: Settings, stop: asyncio.Event) -> None:
    server = GrpcServer(host=settings.grpc_host, port=settings.grpc_port, grace=1.0)
    await server.start()
    serve_metrics(settings.metrics_port)
    rt = await unless_stopped(connect(settings), stop)
    if rt is None:
        await server.stop()
        return
    runners = [
        ProjectionRunner(
            rt.store,
            projection,
            pool=rt.pool,
            dsn=rt.dsn,
            batch_size=settings.projection_batch_size,
        )
        for projection in PROJECTIONS
    ]
    await server.ready()
    tasks = [asyncio.create_task(r.run(stop)) for r in runners]
    while not stop.is_set():
        for r in runners:
            await r.update_lag()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 5)
    await asyncio.gather(*tasks)
    await server.stop()
    await rt.store.close()
