"""Campaigns for real: contacts, orders and segmentation served beside notifications (the
membership engine running, so segments have members), the campaign engine run in the test with
a clock it moves, its messages decided by the real pipeline over gRPC."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from crm.contacts.v1 import consent_pb2 as kpb
from crm.contacts.v1 import consent_pb2_grpc as kpb_grpc
from crm.contacts.v1 import contacts_pb2 as cpb
from crm.contacts.v1 import contacts_pb2_grpc as cpb_grpc
from crm.notifications.v1 import campaigns_pb2 as pb
from crm.notifications.v1 import campaigns_pb2_grpc as pb_grpc
from crm.notifications.v1 import events_pb2 as epb
from crm.notifications.v1 import notifications_pb2 as npb
from crm.notifications.v1 import notifications_pb2_grpc as npb_grpc
from crm.segmentation.v1 import segmentation_pb2 as spb
from crm.segmentation.v1 import segmentation_pb2_grpc as spb_grpc
from services.contacts import spec as contacts_spec
from services.notifications import spec
from services.notifications.adapters.campaign_tables import TABLE, PostgresRecipients
from services.notifications.app import Upstreams
from services.notifications.application.batch_sending import BatchSender
from services.notifications.application.campaign_engine import CampaignEngine
from services.notifications.application.campaigns import CampaignCommands
from services.notifications.settings import NotificationsSettings
from services.orders import spec as orders_spec
from services.segmentation import spec as segmentation_spec
from services.segmentation.adapters.contacts_client import GrpcContactVersions
from services.segmentation.adapters.engine import MembershipEngine
from shared.eventstore.postgres import PostgresEventStore
from shared.runtime import Runtime
from shared.testing import tokens
from shared.testing.service_env import Served, serving


@dataclass
class Clock:
    offset: timedelta = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@dataclass
class CampaignEnv:
    stub: pb_grpc.CampaignsServiceStub
    messages: npb_grpc.NotificationsServiceStub
    segments: spb_grpc.SegmentationServiceStub
    contacts: cpb_grpc.ContactsServiceStub
    consent: kpb_grpc.ConsentServiceStub
    store: PostgresEventStore
    served: list[Served]
    upstreams: Upstreams
    settings: NotificationsSettings
    dsn: str
    clock: Clock = field(default_factory=Clock)

    async def settle(self) -> None:
        for s in self.served:
            await s.settle()

    def engine(self) -> CampaignEngine:
        """A campaign engine as the project role builds it (a new one is a restart)."""
        rt = Runtime(self.dsn, self.store.pool, self.store)
        commands = self.upstreams.commands(rt, self.settings)
        campaigns = CampaignCommands(self.store, commands.templates, self.upstreams.segments)
        recipients = PostgresRecipients(self.store.pool)
        return CampaignEngine(
            campaigns, self.upstreams.segments, recipients, BatchSender(commands), clock=self.clock
        )

    async def contact(
        self, tags: list[str], *, subscribed: bool = True, time_zone: str = "Europe/Paris"
    ) -> str:
        made = await self.contacts.RegisterContact(
            cpb.RegisterContactRequest(
                email=f"{uuid.uuid4().hex[:10]}@example.com",
                first_name="Ada",
                time_zone=time_zone,
                tags=tags,
            )
        )
        cid = str(made.contact.contact_id)
        if subscribed:
            await self.consent.RecordConsent(
                kpb.RecordConsentRequest(
                    contact_id=cid,
                    channel=kpb.CHANNEL_EMAIL,
                    state=kpb.CONSENT_STATE_SUBSCRIBED,
                    legal_basis=kpb.LEGAL_BASIS_CONSENT,
                    policy_version="v1",
                )
            )
        return cid

    async def segment(self, key: str, tag: str) -> str:
        made = await self.segments.CreateSegment(
            spb.CreateSegmentRequest(key=key, name=key, rule=f"tags contains '{tag}'")
        )
        await self.settle()  # segments are listed (their keys resolved) from a read model
        return str(made.segment.segment_id)

    async def template(self, key: str) -> None:
        variant = epb.TemplateVariant(subject="Hi {{ contact.first_name }}", text="Sale: " + key)
        await self.messages.CreateTemplate(
            npb.CreateTemplateRequest(
                key=key, name=key, channel=epb.CHANNEL_EMAIL, variants=[variant]
            )
        )

    async def recipients(self, campaign_id: str) -> dict[str, dict[str, Any]]:
        rows = await self.store.pool.fetch(
            f"SELECT contact_id::text, variant, due_at, outcome FROM {TABLE}"
            " WHERE campaign_id = $1::uuid",
            campaign_id,
        )
        return {r[0]: dict(r) for r in rows}

    async def decisions(self, campaign_id: str) -> list[dict[str, Any]]:
        """Every MessageDecided asking for this campaign: its contact, outcome and origin."""
        rows = await self.store.pool.fetch(
            """SELECT data FROM eventstore.events
                WHERE type = 'crm.notifications.v1.MessageDecided'
                  AND data -> 'trigger' ->> 'campaign_id' = $1""",
            campaign_id,
        )
        return [orjson.loads(r[0]) for r in rows]

    async def create(self, **definition: Any) -> pb.Campaign:
        made = await self.stub.CreateCampaign(
            pb.CreateCampaignRequest(definition=epb.CampaignDefinition(**definition))
        )
        return made.campaign


@asynccontextmanager
async def campaign_env(dsn: str) -> AsyncIterator[CampaignEnv]:
    store = await PostgresEventStore.connect(dsn, max_size=20)
    async with (
        serving(contacts_spec.SPEC, dsn, store=store, projections=[]) as contacts,
        serving(
            orders_spec.SPEC,
            dsn,
            store=store,
            projections=[],
            settings={"contacts_target": contacts.target, "webhook_port": 0},
        ) as orders,
    ):
        directory = GrpcContactVersions(contacts.target, tokens.SERVICE_TOKEN)
        engine = MembershipEngine(store, directory)
        targets: dict[str, Any] = {
            "contacts_target": contacts.target,
            "orders_target": orders.target,
        }
        async with serving(
            segmentation_spec.SPEC,
            dsn,
            store=store,
            extra=[engine],
            settings={"contacts_target": contacts.target},
        ) as seg:
            targets["segmentation_target"] = seg.target
            async with serving(spec.SPEC, dsn, store=store, settings=targets) as s:
                settings = NotificationsSettings(database_url=dsn, **tokens.SETTINGS, **targets)
                upstreams = Upstreams(settings)
                try:
                    yield CampaignEnv(
                        pb_grpc.CampaignsServiceStub(s.channel),
                        npb_grpc.NotificationsServiceStub(s.channel),
                        spb_grpc.SegmentationServiceStub(seg.channel),
                        cpb_grpc.ContactsServiceStub(contacts.channel),
                        kpb_grpc.ConsentServiceStub(contacts.channel),
                        store,
                        [seg, s],
                        upstreams,
                        settings,
                        dsn,
                    )
                finally:
                    await upstreams.close()
        await directory.close()
    await store.close()
