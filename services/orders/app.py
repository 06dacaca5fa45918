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
from shared.grpckit.client import ClientTls, service_token
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


class OrdersApi:
    """OrdersService and the webhook endpoint: the serve role's APIs. ``any_webhook_port``
    (tests) takes a free port instead of ``WEBHOOK_PORT``; ``webhook_port`` is the bound one."""

    def __init__(self, *, any_webhook_port: bool = False) -> None:
        self.orders = OrdersServicer()
        self.services = [
            (SERVICE, lambda s: pb_grpc.add_OrdersServiceServicer_to_server(self.orders, s))
        ]
        self.any_webhook_port = any_webhook_port
        self.webhooks: WebhookServer | None = None
        self.directory: GrpcContactDirectory | None = None
        self.shopify: Shopify | None = None
        self.webhook_port = 0

    async def bind(self, rt: Runtime, settings: OrdersSettings) -> None:
        queries = OrderQueries(rt.pool)
        carts, orders = CartCommands(rt.store), OrderCommands(rt.store)
        self.directory = GrpcContactDirectory(
            settings.contacts_target,
            service_token(settings, "the contacts API"),
            ClientTls.of(settings),
        )
        self.orders.bind(carts, orders, queries, self.directory)
        if settings.webhook_port or self.any_webhook_port:
            self.shopify = shopify(settings)
            app = make_app({"shopify": self.shopify}, Ingestor(orders, self.directory))
            port = 0 if self.any_webhook_port else settings.webhook_port
            self.webhooks = WebhookServer(app, settings.grpc_host, port)
            self.webhook_port = await self.webhooks.start()

    async def close(self) -> None:
        if self.webhooks is not None:
            await self.webhooks.stop()
        if self.directory is not None:
            await self.directory.close()


async def serve(settings: OrdersSettings, stop: asyncio.Event) -> None:
    await runtime.serve(settings, stop, OrdersApi(), connect)


def work(rt: Runtime, settings: OrdersSettings, stop: asyncio.Event) -> runtime.Work:
    """Projection runners (one active per projection across replicas: the two read models and
    the cart-recovery reactor) and the abandonment timer (safe on every replica)."""
    window = timedelta(seconds=settings.cart_recovery_window_seconds)
    reactor = Reactor(CartRecovery(rt.store, window))
    timer = AbandonmentTimer(
        OrderQueries(rt.pool),
        CartCommands(rt.store),
        timedelta(seconds=settings.cart_abandon_after_seconds),
        settings.abandonment_poll_seconds,
    )
    return runtime.Work((*PROJECTIONS, reactor), {"abandonment-timer": lambda: timer.run(stop)})


async def project(settings: OrdersSettings, stop: asyncio.Event) -> None:
    await runtime.project(settings, stop, connect, work, service="orders")
