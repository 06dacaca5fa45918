"""The contacts service's two gRPC APIs over a real socket, against a real PostgreSQL: ``env``
serves ContactsService (its projection running), ``consent_env`` ConsentService (its projection
caught up on demand, and a clock the test can move)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import grpc
import pytest

from crm.contacts.v1 import consent_pb2 as cpb
from crm.contacts.v1 import consent_pb2_grpc as cpb_grpc
from crm.contacts.v1 import contacts_pb2 as pb
from crm.contacts.v1 import contacts_pb2_grpc as pb_grpc
from services.contacts.adapters.consent_readmodel import ConsentProjection
from services.contacts.adapters.readmodel import ContactsProjection
from services.contacts.app import ContactsApi
from services.contacts.spec import SPEC
from services.contacts.tests.helpers import CONSENT, EMAIL, SUB, ts
from shared.eventstore import NewEvent, StreamState
from shared.eventstore.postgres import PostgresEventStore
from shared.projections.runner import ProjectionRunner
from shared.testing.clock import MovableClock
from shared.testing.service_env import Served, serving

SERVICE = "crm.contacts.v1.ContactsService"


# --- ContactsService ----------------------------------------------------------------------------


@dataclass
class Env:
    stub: pb_grpc.ContactsServiceStub
    store: PostgresEventStore
    served: Served
    channel: grpc.aio.Channel
    target: str

    async def event_count(self) -> int:
        return await self.served.event_count()

    async def settle(self) -> None:
        await self.served.settle()


@pytest.fixture
async def env(dsn: str) -> AsyncIterator[Env]:
    async with serving(SPEC, dsn) as s:
        yield Env(pb_grpc.ContactsServiceStub(s.channel), s.store, s, s.channel, s.target)


# --- ConsentService -----------------------------------------------------------------------------


@dataclass
class ConsentEnv:
    stub: cpb_grpc.ConsentServiceStub
    store: PostgresEventStore
    runner: ProjectionRunner
    clock: MovableClock

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
    """ConsentService with a clock the test moves; its read model is caught up on demand."""
    clock = MovableClock()
    async with serving(SPEC, dsn, api=ContactsApi(clock=clock), projections=[]) as s:
        yield ConsentEnv(
            cpb_grpc.ConsentServiceStub(s.channel),
            s.store,
            ProjectionRunner(s.store, ConsentProjection()),
            clock,
        )


# --- both services, read models caught up on demand ---------------------------------------------


@dataclass
class World:
    served: Served
    contacts: pb_grpc.ContactsServiceStub
    consent: cpb_grpc.ConsentServiceStub
    runners: list[ProjectionRunner]

    @property
    def store(self) -> PostgresEventStore:
        return self.served.store

    async def project(self) -> None:
        """Bring both read models up to every event committed so far."""
        for r in self.runners:
            await r.catch_up()

    async def register(self, **kw: object) -> str:
        r = await self.contacts.RegisterContact(pb.RegisterContactRequest(**kw))  # type: ignore[arg-type]
        return r.contact.contact_id

    async def subscribe(self, cid: str, channel: int, state: int = SUB) -> None:
        await self.consent.RecordConsent(
            cpb.RecordConsentRequest(
                contact_id=cid,
                channel=channel,  # type: ignore[arg-type]
                state=state,  # type: ignore[arg-type]
                legal_basis=CONSENT if state == SUB else 0,  # type: ignore[arg-type]
            )
        )


@pytest.fixture
async def world(dsn: str) -> AsyncIterator[World]:
    """Both services; the read models catch up only when the test calls ``project``, so what
    is written after that is what they lag, every time."""
    async with serving(SPEC, dsn, projections=[]) as s:
        w = World(
            s,
            pb_grpc.ContactsServiceStub(s.channel),
            cpb_grpc.ConsentServiceStub(s.channel),
            [ProjectionRunner(s.store, p) for p in (ContactsProjection(), ConsentProjection())],
        )
        await w.project()  # creates the read models' tables
        yield w
