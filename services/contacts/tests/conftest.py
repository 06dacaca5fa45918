"""The contacts service's two gRPC APIs over a real socket, against a real PostgreSQL: ``env``
serves ContactsService (its projection running), ``consent_env`` ConsentService (its projection
caught up on demand, and a clock the test can move)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest

from crm.contacts.v1 import consent_pb2 as cpb
from crm.contacts.v1 import consent_pb2_grpc as cpb_grpc
from crm.contacts.v1 import contacts_pb2_grpc as pb_grpc
from services.contacts.adapters import keys
from services.contacts.adapters.consent_readmodel import ConsentProjection
from services.contacts.adapters.readmodel import ContactsProjection
from services.contacts.api.consent_servicer import SERVICE as CONSENT_SERVICE
from services.contacts.api.consent_servicer import ConsentServicer
from services.contacts.api.servicer import ContactsServicer
from services.contacts.application.commands import ContactCommands
from services.contacts.application.consent import ConsentLedgers
from services.contacts.application.importer import ContactImporter
from services.contacts.application.queries import ContactQueries
from services.contacts.tests.helpers import CONSENT, EMAIL, SUB, ts
from shared.db import migrate
from shared.eventstore import NewEvent, StreamState
from shared.eventstore.postgres import PostgresEventStore
from shared.grpckit.server import GrpcServer
from shared.projections.runner import ProjectionRunner, ensure_schema

SERVICE = "crm.contacts.v1.ContactsService"


# --- ContactsService ----------------------------------------------------------------------------


@dataclass
class Env:
    stub: pb_grpc.ContactsServiceStub
    store: PostgresEventStore
    runner: ProjectionRunner
    channel: grpc.aio.Channel
    target: str

    async def event_count(self) -> int:
        return int(await self.store.pool.fetchval("SELECT count(*) FROM eventstore.events"))

    async def settle(self) -> None:
        await self.runner.wait_for(await self.store.head_position())


@pytest.fixture
async def env(dsn: str) -> AsyncIterator[Env]:
    store = await PostgresEventStore.connect(dsn, max_size=10)
    servicer = ContactsServicer()
    server = GrpcServer(
        host="127.0.0.1",
        port=0,
        services=[(SERVICE, lambda s: pb_grpc.add_ContactsServiceServicer_to_server(servicer, s))],
        grace=1,
    )
    await server.start()
    data_keys = keys.DataKeys(store.pool)
    commands = ContactCommands(store, data_keys)
    servicer.bind(commands, ContactQueries(store.pool), ContactImporter(store, data_keys, commands))
    await server.ready()
    runner = ProjectionRunner(store, ContactsProjection())
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    target = f"127.0.0.1:{server.port}"
    channel = grpc.aio.insecure_channel(target)
    yield Env(pb_grpc.ContactsServiceStub(channel), store, runner, channel, target)
    stop.set()
    await task
    await channel.close()
    await server.stop()
    await store.close()


# --- ConsentService -----------------------------------------------------------------------------


@dataclass
class Clock:
    """Real time plus an offset the test can move forward."""

    offset: timedelta = field(default_factory=timedelta)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@dataclass
class ConsentEnv:
    stub: cpb_grpc.ConsentServiceStub
    store: PostgresEventStore
    runner: ProjectionRunner
    clock: Clock

    async def event_count(self) -> int:
        return int(await self.store.pool.fetchval("SELECT count(*) FROM eventstore.events"))

    async def settle(self) -> None:
        await self.runner.catch_up()

    async def contact(self) -> str:
        """A registered contact with a data key (as the contacts service leaves it)."""
        cid = str(uuid.uuid4())
        event = NewEvent("crm.contacts.v1.ContactRegistered", {"contact_id": cid})
        await self.store.append(f"contact-{cid}", [event], StreamState.NO_STREAM)
        await self.store.pool.execute(  # as the contacts service does when registering
            "INSERT INTO contacts_keys.data_keys (contact_id, key) VALUES ($1, $2)",
            uuid.UUID(cid),
            os.urandom(32),
        )
        return cid

    async def erase(self, cid: str) -> None:
        event = NewEvent("crm.contacts.v1.ContactErased", {"contact_id": cid, "reason": "gdpr"})
        await self.store.append(f"contact-{cid}", [event], StreamState.ANY)
        await self.store.pool.execute(
            "UPDATE contacts_keys.data_keys SET key = NULL, destroyed_at = now()"
            " WHERE contact_id = $1",
            uuid.UUID(cid),
        )

    async def record(self, cid: str, **kw: Any) -> cpb.RecordConsentResponse:
        kw.setdefault("channel", EMAIL)
        kw.setdefault("state", SUB)
        if kw["state"] == SUB:
            kw.setdefault("legal_basis", CONSENT)
        return await self.stub.RecordConsent(cpb.RecordConsentRequest(contact_id=cid, **kw))

    async def consent(
        self, cid: str, as_of: datetime | None = None
    ) -> dict[int, cpb.ChannelConsent]:
        req = cpb.GetConsentRequest(contact_id=cid)
        if as_of is not None:
            req.as_of_time.CopyFrom(ts(as_of))
        r = await self.stub.GetConsent(req)
        return {c.channel: c for c in r.channels}


@pytest.fixture
async def consent_env(dsn: str) -> AsyncIterator[ConsentEnv]:
    store = await PostgresEventStore.connect(dsn, max_size=10)
    async with store.pool.acquire() as conn:
        # The key table comes with the contacts service's migrations; the test template may
        # not have it yet.
        if await conn.fetchval("SELECT to_regclass('contacts_keys.data_keys')") is None:
            await migrate(conn, "contacts", keys.MIGRATIONS)
        # What migrate_everything / the service's connect() will do once ConsentProjection is
        # wired in (a no-op when the schema exists).
        await ensure_schema(conn, ConsentProjection(), ConsentProjection.schema)
    servicer = ConsentServicer()
    server = GrpcServer(
        host="127.0.0.1",
        port=0,
        services=[
            (CONSENT_SERVICE, lambda s: cpb_grpc.add_ConsentServiceServicer_to_server(servicer, s))
        ],
        grace=1,
    )
    await server.start()
    clock = Clock()
    servicer.bind(ConsentLedgers(store, store.pool, clock=clock))
    await server.ready()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    yield ConsentEnv(
        cpb_grpc.ConsentServiceStub(channel),
        store,
        ProjectionRunner(store, ConsentProjection()),
        clock,
    )
    await channel.close()
    await server.stop()
    await store.close()
