"""Notifications served from its spec over a real socket on a real PostgreSQL, its read models
running, with contacts and orders served for real beside it (SendMessage reads them over
gRPC)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest

from crm.contacts.v1 import consent_pb2_grpc as kpb_grpc
from crm.contacts.v1 import contacts_pb2_grpc as cpb_grpc
from crm.notifications.v1 import events_pb2 as epb
from crm.notifications.v1 import notifications_pb2 as pb
from crm.notifications.v1 import notifications_pb2_grpc as pb_grpc
from services.contacts import spec as contacts_spec
from services.notifications import spec
from services.notifications.tests.flow_env import Env as FlowEnv
from services.notifications.tests.pipeline_env import Pipe, build
from services.orders import spec as orders_spec
from shared.eventstore.postgres import PostgresEventStore
from shared.testing import rpc
from shared.testing.batches import fresh_store
from shared.testing.postgres import DatabaseFactory
from shared.testing.service_env import Served, serving

DOMAIN = "notifications.crm"


@dataclass
class Env:
    stub: pb_grpc.NotificationsServiceStub
    store: PostgresEventStore
    served: Served
    contacts: cpb_grpc.ContactsServiceStub
    consent: kpb_grpc.ConsentServiceStub
    contacts_served: Served
    orders_served: Served | None = None

    async def settle(self) -> None:
        await self.served.settle()

    async def template_events(self) -> int:
        return int(
            await self.store.pool.fetchval(
                "SELECT count(*) FROM eventstore.events"
                " WHERE stream_id LIKE 'template-%' OR stream_id LIKE 'templatekey-%'"
            )
        )

    async def written(self) -> int:
        """Notifications' events and pipeline rows: what a failed call must leave as it was."""
        events = await self.store.pool.fetchval(
            "SELECT count(*) FROM eventstore.events WHERE stream_id LIKE 'template-%'"
            " OR stream_id LIKE 'templatekey-%' OR stream_id LIKE 'message-%'"
        )
        rows = await self.store.pool.fetchval(
            "SELECT (SELECT count(*) FROM notifications_pipeline.outbox)"
            " + (SELECT count(*) FROM notifications_pipeline.timers)"
            " + (SELECT count(*) FROM notifications_pipeline.recipients)"
        )
        return int(events) + int(rows)


@pytest.fixture
async def env(dsn: str) -> AsyncIterator[Env]:
    store = await PostgresEventStore.connect(dsn, max_size=10)
    async with (
        serving(contacts_spec.SPEC, dsn, store=store) as contacts,
        serving(
            orders_spec.SPEC,
            dsn,
            store=store,
            settings={"contacts_target": contacts.target, "webhook_port": 0},
        ) as orders,
        serving(
            spec.SPEC,
            dsn,
            store=store,
            settings={"contacts_target": contacts.target, "orders_target": orders.target},
        ) as s,
    ):
        yield Env(
            pb_grpc.NotificationsServiceStub(s.channel),
            s.store,
            s,
            cpb_grpc.ContactsServiceStub(contacts.channel),
            kpb_grpc.ConsentServiceStub(contacts.channel),
            contacts,
            orders,
        )
    await store.close()


@pytest.fixture
async def pipe(dsn: str) -> AsyncIterator[Pipe]:
    """The message pipeline's application on a real store, contacts, orders and delivery faked."""
    store = await PostgresEventStore.connect(dsn, max_size=10)
    try:
        yield build(store)
    finally:
        await store.close()


async def expect_error(call: object, code: grpc.StatusCode, reason: str) -> list[str]:
    return await rpc.expect_error(call, code, reason, DOMAIN)  # type: ignore[arg-type]


def email(locale: str = "", subject: str = "Hi {{ contact.first_name }}") -> epb.TemplateVariant:
    return epb.TemplateVariant(
        locale=locale,
        subject=subject,
        text="Hello {{ contact.first_name }}, {{ count }} items",
        html="<p>Hello {{ contact.first_name }}</p>",
    )


async def create_email(env: Env, key: str = "", **kw: object) -> pb.Template:
    key = key or f"t-{uuid.uuid4().hex[:8]}"
    variants = kw.pop("variants", [email(), email("fr", "Bonjour {{ contact.first_name }}")])
    r = await env.stub.CreateTemplate(
        pb.CreateTemplateRequest(
            key=key,
            name="Welcome",
            channel=epb.CHANNEL_EMAIL,
            variants=variants,  # type: ignore[arg-type]
            **kw,  # type: ignore[arg-type]
        )
    )
    return r.template


@pytest.fixture
async def flow_env(databases: DatabaseFactory) -> AsyncIterator[FlowEnv]:
    """A flow engine on a store of its own (tests/flow_env.py)."""
    async with fresh_store(databases) as store:
        yield FlowEnv(store)
