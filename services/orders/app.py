"""The orders service's composition root: wires store, read models, gRPC, webhooks, timers."""

from __future__ import annotations

import asyncio
from datetime import timedelta

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
from services.orders.application.recovery import CartRecovery
from shared import runtime
from shared.grpckit.server import GrpcServer, Limits, unless_stopped
from shared.metrics import serve_metrics
from shared.projections.reactor import Reactor
from shared.runtime import Runtime
from shared.settings import Settings

PROJECTIONS = (OrdersProjection(), CartsProjection())
log = structlog.get_logger(__name__)


class OrdersSettings(Settings):
    contacts_target: str = "127.0.0.1:50051"  # the contacts service's gRPC address
    webhook_port: int = 8080  # 0 disables the webhook endpoint
    shopify_webhook_secret: str = ""  # unset: every Shopify webhook is refused (401)
    # Comma-separated shop domains (x.myshopify.com) whose webhooks are taken; others get 403.
    # Unset: every Shopify webhook is refused. The HMAC covers the body only, not this header.
    shopify_shop_domains: str = ""
    cart_abandon_after_seconds: float = 3600.0
    cart_recovery_window_seconds: float = 5 * 86400.0
    abandonment_poll_seconds: float = 10.0


def shopify(settings: OrdersSettings) -> Shopify:
    return Shopify(settings.shopify_webhook_secret, settings.shopify_shop_domains.split(","))


async def connect(settings: Settings) -> Runtime:
    """Connect (waiting for the database) and migrate what this service owns."""
    return await runtime.connect(settings, projections=PROJECTIONS)


async def serve(settings: OrdersSettings, stop: asyncio.Event) -> None:
    servicer = OrdersServicer()
    server = GrpcServer(
        host=settings.grpc_host,
        port=settings.grpc_port,
        services=[(SERVICE, lambda s: pb_grpc.add_OrdersServiceServicer_to_server(servicer, s))],
        grace=settings.shutdown_grace_seconds,
        limits=Limits.of(settings),
    )
    await server.start()
    serve_metrics(settings.metrics_port, settings.metrics_host)
    rt = await unless_stopped(connect(settings), stop)
    if rt is None:
        await server.stop()
        return
    queries = OrderQueries(rt.pool)
    carts, orders = CartCommands(rt.store), OrderCommands(rt.store)
    directory = GrpcContactDirectory(settings.contacts_target)
    servicer.bind(carts, orders, queries, directory)
    webhooks = None
    if settings.webhook_port:
        app = make_app({"shopify": shopify(settings)}, Ingestor(orders, directory))
        webhooks = WebhookServer(app, settings.grpc_host, settings.webhook_port)
        await webhooks.start()
    await server.ready()
    log.info("orders.serving", port=server.port, webhook_port=settings.webhook_port)
    await stop.wait()
    await server.stop()
    if webhooks is not None:
        await webhooks.stop()
    await directory.close()
    await rt.close()


async def project(settings: OrdersSettings, stop: asyncio.Event) -> None:
    """Projection runners (one active per projection across replicas: the two read models and
    the cart-recovery reactor) and the abandonment timer (safe on every replica)."""
    server = GrpcServer(host=settings.grpc_host, port=settings.grpc_port, grace=1.0)
    await server.start()
    serve_metrics(settings.metrics_port, settings.metrics_host)
    rt = await unless_stopped(connect(settings), stop)
    if rt is None:
        await server.stop()
        return
    window = timedelta(seconds=settings.cart_recovery_window_seconds)
    reactor = Reactor(CartRecovery(rt.store, window))
    timer = AbandonmentTimer(
        OrderQueries(rt.pool),
        CartCommands(rt.store),
        timedelta(seconds=settings.cart_abandon_after_seconds),
        settings.abandonment_poll_seconds,
    )
    await server.ready()
    await runtime.run_projections(
        rt,
        (*PROJECTIONS, reactor),
        settings,
        stop,
        server=server,
        workers={"abandonment-timer": lambda: timer.run(stop)},
    )
    await server.stop()
    await rt.close()
