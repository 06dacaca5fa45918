"""The orders suite against real parts: PostgreSQL, the contacts service over gRPC, the orders
service over gRPC, its webhook endpoint over HTTP, and both orders projections running."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import grpc
import pytest

from crm.contacts.v1 import contacts_pb2_grpc as cpb_grpc
from crm.orders.v1 import orders_pb2_grpc as pb_grpc
from services.contacts.adapters.keys import DataKeys
from services.contacts.adapters.readmodel import ContactsProjection
from services.contacts.api.servicer import ContactsServicer
from services.contacts.application.commands import ContactCommands
from services.contacts.application.queries import ContactQueries
from services.orders.adapters.contacts_client import GrpcContactDirectory
from services.orders.adapters.platforms.shopify import Shopify
from services.orders.adapters.readmodel import CartsProjection, OrdersProjection
from services.orders.adapters.webhooks import WebhookServer, make_app
from services.orders.api.servicer import SERVICE, OrdersServicer
from services.orders.application.commands import CartCommands, OrderCommands
from services.orders.application.ingest import Ingestor
from services.orders.application.queries import OrderQueries
from services.orders.application.recovery import CartRecovery
from shared.eventstore.postgres import PostgresEventStore
from shared.grpckit.server import GrpcServer
from shared.projections.reactor import Reactor
from shared.projections.runner import ProjectionRunner, ensure_schema

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
        return int(await self.store.pool.fetchval("SELECT count(*) FROM eventstore.events"))

    async def settle(self) -> None:
        head = await self.store.head_position()
        for r in self.runners:
            await r.wait_for(head)


@pytest.fixture
async def env(dsn: str) -> AsyncIterator[Env]:
    store = await PostgresEventStore.connect(dsn, max_size=10)
    # The contacts service, for real: orders resolves customers through its gRPC API.
    contacts = ContactsServicer()
    contacts_server = GrpcServer(
        host="127.0.0.1",
        port=0,
        services=[
            (
                "crm.contacts.v1.ContactsService",
                lambda s: cpb_grpc.add_ContactsServiceServicer_to_server(contacts, s),
            )
        ],
        grace=1,
    )
    await contacts_server.start()
    contacts.bind(ContactCommands(store, DataKeys(store.pool)), ContactQueries(store.pool), None)
    await contacts_server.ready()
    contacts_target = f"127.0.0.1:{contacts_server.port}"

    servicer = OrdersServicer()
    server = GrpcServer(
        host="127.0.0.1",
        port=0,
        services=[(SERVICE, lambda s: pb_grpc.add_OrdersServiceServicer_to_server(servicer, s))],
        grace=1,
    )
    await server.start()
    queries = OrderQueries(store.pool)
    carts = CartCommands(store)
    orders = OrderCommands(store)
    directory = GrpcContactDirectory(contacts_target)
    servicer.bind(carts, orders, queries, directory)
    await server.ready()
    shopify = Shopify(SECRET)
    webhooks = WebhookServer(
        make_app({"shopify": shopify}, Ingestor(orders, directory)), "127.0.0.1", 0
    )
    port = await webhooks.start()

    reactor = Reactor(CartRecovery(store, timedelta(days=5)))
    async with store.pool.acquire() as conn:
        await ensure_schema(conn, reactor, reactor.schema)
    runners = [
        ProjectionRunner(store, OrdersProjection()),
        ProjectionRunner(store, CartsProjection()),
        ProjectionRunner(store, reactor),
        ProjectionRunner(store, ContactsProjection()),
    ]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(r.run(stop)) for r in runners]
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    cchannel = grpc.aio.insecure_channel(contacts_target)
    yield Env(
        pb_grpc.OrdersServiceStub(channel),
        cpb_grpc.ContactsServiceStub(cchannel),
        store,
        queries,
        carts,
        orders,
        runners[:3],
        f"http://127.0.0.1:{port}/webhooks/shopify",
        shopify,
    )
    stop.set()
    await asyncio.gather(*tasks)
    await channel.close()
    await cchannel.close()
    await webhooks.stop()
    await directory.close()
    await server.stop()
    await contacts_server.stop()
    await store.close()
