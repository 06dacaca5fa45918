"""The orders suite against real parts: PostgreSQL, the contacts service over gRPC, the orders
service over gRPC, its webhook endpoint over HTTP, and both orders projections running."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import pytest

from crm.contacts.v1 import contacts_pb2_grpc as cpb_grpc
from crm.orders.v1 import orders_pb2_grpc as pb_grpc
from services.contacts import spec as contacts
from services.orders import spec as orders
from services.orders.adapters.platforms.shopify import Shopify
from services.orders.app import OrdersApi
from services.orders.application.commands import CartCommands, OrderCommands
from services.orders.application.queries import OrderQueries
from services.orders.application.recovery import CartRecovery
from shared.eventstore.postgres import PostgresEventStore
from shared.grpckit.audit import CATEGORY
from shared.projections.reactor import Reactor
from shared.projections.runner import ProjectionRunner
from shared.testing.service_env import serving

SECRET = "shpss_test_secret"


@dataclass
class Env:
    stub: pb_grpc.OrdersServiceStub
    contacts: cpb_grpc.ContactsServiceStub
    store: PostgresEventStore
    queries: OrderQueries
    carts: CartCommands
    orders: OrderCommands
    runners: list[ProjectionRunner]
    webhook_url: str
    shopify: Shopify

    async def event_count(self) -> int:
        """Events appended, but for the reads of personal data contacts records (resolving a
        customer reads one: tests/test_service_token.py counts those)."""
        return int(
            await self.store.pool.fetchval(
                "SELECT count(*) FROM eventstore.events WHERE category <> $1", CATEGORY
            )
        )

    async def settle(self) -> None:
        head = await self.store.head_position()
        for r in self.runners:
            await r.wait_for(head)


@pytest.fixture
async def env(dsn: str) -> AsyncIterator[Env]:
    """Orders served from its spec, the contacts service for real beside it (orders resolves
    customers through its gRPC API), the read models and the cart-recovery reactor running."""
    store = await PostgresEventStore.connect(dsn, max_size=10)
    reactor = Reactor(CartRecovery(store, timedelta(days=5)))
    api = OrdersApi(any_webhook_port=True)
    async with (
        serving(contacts.SPEC, dsn, store=store) as contacts_service,
        serving(
            orders.SPEC,
            dsn,
            store=store,
            api=api,
            settings={
                "contacts_target": contacts_service.target,
                "shopify_webhook_secret": SECRET,
            },
            extra=[reactor],
        ) as orders_service,
    ):
        assert api.shopify is not None
        yield Env(
            pb_grpc.OrdersServiceStub(orders_service.channel),
            cpb_grpc.ContactsServiceStub(contacts_service.channel),
            store,
            OrderQueries(store.pool),
            CartCommands(store),
            OrderCommands(store),
            orders_service.runners,
            f"http://127.0.0.1:{api.webhook_port}/webhooks/shopify",
            api.shopify,
        )
    await store.close()
