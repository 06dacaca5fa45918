"""The orders service's composition root: wires store, read models, gRPC, webhooks, timers."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import asyncpg
import structlog

from crm.orders.v1 import orders_pb2_grpc as pb_grpc
from services.orders.adapters.contacts_client import GrpcContactDirectory
from services.orders.adapters.platforms.shopify import Shopify
from services.orders.adapters.readmodel import CartsProjection, OrdersProjection
from services.orders.adapters.webhooks import WebhookServer, make_app
from services.orders.api.servicer import SERVICE, OrdersServicer
from services.orders.application.abandonment import AbandonmentTimer
from services.orders.application.commands import CartCommands, OrderCommands
from services.orders.application.ingest import Ingestor
from services.orders.application.queries import OrderQueries
from services.orders.application.recovery import RecoveryReactor
from shared.db import connect_pool, embedded, migrate
from shared.eventstore import EventStore
from shared.eventstore.postgres import MIGRATIONS as STORE_MIGRATIONS
from shared.eventstore.postgres import PostgresEventStore
from shared.grpckit.server import GrpcServer, unless_stopped
from shared.metrics import serve_metrics
from shared.projections.runner import ProjectionRunner, ensure_schema
from shared.projections.store import MIGRATIONS as PROJECTION_MIGRATIONS
from shared.settings import Settings

PROJECTIONS = (OrdersProjection(), CartsProjection())
log = structlog.get_logger(__name__)


class OrdersSettings(Settings):
    contacts_target: str = "127.0.0.1:50051"  # the contacts service's gRPC address
    webhook_port: int = 8080  # 0 disables the webhook endpoint
    shopify_webhook_secret: str = ""  # unset: every Shopify webhook is refused (401)
    cart_abandon_after_seconds: float = 3600.0
    cart_recovery_window_seconds: float = 5 * 86400.0
    abandonment_poll_seconds: float = 10.0


async def connect(settings: Settings) -> tuple[str, asyncpg.Pool, EventStore]:
    dsn = settings.database_url
    if not dsn:
        dsn, _ = embedded.start(embedded.default_data_dir())
    pool = await connect_pool(dsn, max_size=settings.db_pool_size, wait_seconds=120)
    async with pool.acquire() as conn:
        if settings.eventstore_backend == "postgres":
            await migrate(conn, "eventstore", STORE_MIGRATIONS)
        await migrate(conn, "projections", PROJECTION_MIGRATIONS)
        for projection in PROJECTIONS:
            await ensure_schema(conn, projection, projection.schema)
    if settings.eventstore_backend == "eventstoredb":
        from shared.eventstore.esdb import EventStoreDBStore

        if not settings.eventstore_url:
            raise SystemExit("EVENTSTORE_URL is required with EVENTSTORE_BACKEND=eventstoredb")
        return dsn, pool, await EventStoreDBStore.connect(settings.eventstore_url)
    return dsn, pool, PostgresEventStore(pool, dsn)


def commands(store: EventStore) -> tuple[CartCommands, OrderCommands]:
    return CartCommands(store), OrderCommands(store)


async def serve(settings: OrdersSettings, stop: asyncio.Event) -> None:
    servicer = OrdersServicer()
    server = GrpcServer(
        host=settings.grpc_host,
        port=settings.grpc_port,
        services=[(SERVICE, lambda s: pb_grpc.add_OrdersServiceServicer_to_server(servicer, s))],
        grace=settings.shutdown_grace_seconds,
    )
    await server.start()
    serve_metrics(settings.metrics_port)
    connected = await unless_stopped(connect(settings), stop)
    if connected is None:
        await server.stop()
        return
    _, pool, store = connected
    queries = OrderQueries(pool)
    carts, orders = commands(store)
    directory = GrpcContactDirectory(settings.contacts_target)
    servicer.bind(carts, orders, queries, directory)
    webhooks = None
    if settings.webhook_port:
        app = make_app(
            {"shopify": Shopify(settings.shopify_webhook_secret)}, Ingestor(orders, directory)
        )
        webhooks = WebhookServer(app, settings.grpc_host, settings.webhook_port)
        await webhooks.start()
    await server.ready()
    log.info("orders.serving", port=server.port, webhook_port=settings.webhook_port)
    await stop.wait()
    await server.stop()
    if webhooks is not None:
        await webhooks.stop()
    await directory.close()
    await store.close()
    if store is not pool:
        await pool.close()


async def project(settings: OrdersSettings, stop: asyncio.Event) -> None:
    """Projection runners (one active per projection across replicas: the two read models and
    the cart-recovery reactor) and the abandonment timer (safe on every replica)."""
    server = GrpcServer(host=settings.grpc_host, port=settings.grpc_port, grace=1.0)
    await server.start()
    serve_metrics(settings.metrics_port)
    connected = await unless_stopped(connect(settings), stop)
    if connected is None:
        await server.stop()
        return
    dsn, pool, store = connected
    reactor = RecoveryReactor(store, timedelta(seconds=settings.cart_recovery_window_seconds))
    async with pool.acquire() as conn:
        await ensure_schema(conn, reactor, reactor.schema)
    runners = [
        ProjectionRunner(store, p, pool=pool, dsn=dsn, batch_size=settings.projection_batch_size)
        for p in (*PROJECTIONS, reactor)
    ]
    queries = OrderQueries(pool)
    carts, _ = commands(store)
    timer = AbandonmentTimer(
        queries,
        carts,
        timedelta(seconds=settings.cart_abandon_after_seconds),
        settings.abandonment_poll_seconds,
    )
    await server.ready()
    tasks = [asyncio.create_task(r.run(stop)) for r in runners]
    tasks.append(asyncio.create_task(timer.run(stop)))
    while not stop.is_set():
        for r in runners:
            await r.update_lag()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 5)
    await asyncio.gather(*tasks)
    await server.stop()
    await store.close()
    if store is not pool:
        await pool.close()
