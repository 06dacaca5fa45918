"""The intake's endpoints served over a real socket (aiohttp, mounted at /intake/ as the serve
role's HTTP server mounts them), on a real PostgreSQL store, with contacts and notifications
served for real over gRPC. Messages are sent by the real dispatcher; the delivery workers
behind its Delivery port are faked (they answer "sent", with a gateway id for SMS)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from crm.contacts.v1 import consent_pb2 as kpb
from crm.contacts.v1 import consent_pb2_grpc as kpb_grpc
from crm.contacts.v1 import contacts_pb2 as cpb
from crm.contacts.v1 import contacts_pb2_grpc as cpb_grpc
from crm.notifications.v1 import events_pb2 as epb
from crm.notifications.v1 import notifications_pb2 as pb
from crm.notifications.v1 import notifications_pb2_grpc as pb_grpc
from services.notifications.adapters.contacts_client import GrpcContacts
from services.notifications.adapters.intake_http import make_intake_app
from services.notifications.adapters.intake_tables import PostgresIntakeTables
from services.notifications.adapters.pipeline_tables import PostgresPipelineTables
from services.notifications.application.delivery import Outbound, Outcome
from services.notifications.application.dispatcher import Dispatcher, Dispatching
from services.notifications.application.intake import Intake
from services.notifications.application.sending import MessageCommands, Pipeline
from services.notifications.application.templates import TemplateCommands
from services.notifications.domain import policy
from services.notifications.tests.pipeline_env import FakeOrders
from shared.eventstore.postgres import PostgresEventStore
from shared.testing import tokens
from shared.testing.service_env import Served

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # a Standard Webhooks test secret
SMS_TOKEN = "test-sms-auth-token"
PUBLIC = "https://crm.shop.example/intake"  # the public URL the gateway signs over
DOMAIN = "mail.shop.example"


class GatewayDelivery:
    """The Delivery port answering "sent" for every message; SMS get a gateway id ``SM…``."""

    def __init__(self) -> None:
        self.sids: dict[str, str] = {}

    async def ready(self) -> bool:
        return True

    async def deliver(self, messages: Sequence[Outbound]) -> list[Outcome]:
        out = []
        for m in messages:
            sid = ""
            if m.channel == "CHANNEL_SMS":
                sid = self.sids.setdefault(m.message_id, "SM" + uuid.uuid4().hex)
            out.append(Outcome(m.message_id, "sent", "accepted", sid))
        return out


@dataclass
class IntakeEnv:
    http: aiohttp.ClientSession
    url: str  # the intake's root on the socket, e.g. http://127.0.0.1:1234/intake
    store: PostgresEventStore
    stub: pb_grpc.NotificationsServiceStub
    contacts: cpb_grpc.ContactsServiceStub
    consent: kpb_grpc.ConsentServiceStub
    served: Served
    dispatcher: Dispatcher
    delivery: GatewayDelivery

    async def post(
        self, path: str, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        h = {"Content-Type": content_type, **(headers or {})}
        async with self.http.post(self.url + path, data=body, headers=h) as r:
            return r.status, await r.json()

    async def signed(
        self, path: str, body: bytes, content_type: str = "application/json", **kw: Any
    ) -> tuple[int, dict[str, Any]]:
        """POSTed with Standard Webhooks headers computed by the reference library."""
        return await self.post(path, body, content_type, sign(body, **kw))

    async def contact(self, email: str, phone: str = "") -> str:
        made = await self.contacts.RegisterContact(
            cpb.RegisterContactRequest(email=email, phone=phone, time_zone="Europe/Paris")
        )
        return str(made.contact.contact_id)

    async def template(self, channel: epb.Channel.ValueType) -> str:
        if channel == epb.CHANNEL_EMAIL:
            variant = epb.TemplateVariant(subject="Your order", text="It ships today.")
        else:
            variant = epb.TemplateVariant(body="It ships today.")
        made = await self.stub.CreateTemplate(
            pb.CreateTemplateRequest(
                key=f"t-{uuid.uuid4().hex[:8]}", name="Order", channel=channel, variants=[variant]
            )
        )
        return str(made.template.template_id)

    async def send(self, contact_id: str, template_id: str, dispatch: bool = True) -> pb.Message:
        """A transactional message (no caps), dispatched and sent unless told otherwise."""
        sent = await self.stub.SendMessage(
            pb.SendMessageRequest(
                contact_id=contact_id,
                template_id=template_id,
                kind=epb.MESSAGE_KIND_TRANSACTIONAL,
                request_id=uuid.uuid4().hex,
            )
        )
        if dispatch:
            await self.dispatcher.dispatch_due()
        return sent.message

    async def suppression(
        self, contact_id: str, channel: kpb.Channel.ValueType
    ) -> tuple[bool, int]:
        got = await self.consent.GetConsent(kpb.GetConsentRequest(contact_id=contact_id))
        for c in got.channels:
            if c.channel == channel:
                return c.suppressed, c.suppression_reason
        return False, 0

    async def events(self, message_id: str) -> list[str]:
        return [e.type for e in await self.store.read_stream(f"message-{message_id}")]

    async def written(self) -> int:
        """Message events and intake rows: what a refused request must leave as it was."""
        return int(
            await self.store.pool.fetchval(
                "SELECT (SELECT count(*) FROM eventstore.events WHERE stream_id LIKE 'message-%')"
                " + (SELECT count(*) FROM notifications_intake.soft_bounces)"
            )
        )


def sign(
    body: bytes, webhook_id: str = "", at: datetime | None = None, secret: str = SECRET
) -> dict[str, str]:
    webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    at = at or datetime.now(UTC)
    signature = Webhook(secret).sign(webhook_id, at, body.decode())
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
    }


@asynccontextmanager
async def intake_server(
    store: PostgresEventStore,
    notifications: Served,
    contacts: Served,
    *,
    contacts_target: str = "",
    secret: str = SECRET,
) -> AsyncIterator[tuple[str, GrpcContacts]]:
    """The intake app on a socket; its contacts client calls ``contacts_target`` (default: the
    served contacts)."""
    client = GrpcContacts(contacts_target or contacts.target, tokens.SERVICE_TOKEN)
    intake = Intake(store, PostgresIntakeTables(store, store.pool), client)
    root = web.Application()
    root.add_subapp(
        "/intake/",
        make_intake_app(
            intake,
            webhook_secret=secret,
            sms_auth_token=SMS_TOKEN,
            sms_status_url=PUBLIC + "/sms/status",
        ),
    )
    runner = web.AppRunner(root, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = int(runner.addresses[0][1])
    try:
        yield f"http://127.0.0.1:{port}/intake", client
    finally:
        await runner.cleanup()
        await client.close()


def dispatcher_for(store: PostgresEventStore, contacts: GrpcContacts) -> tuple[Dispatcher, Any]:
    """The real dispatcher over the real outbox, its Delivery port faked (GatewayDelivery)."""
    tables = PostgresPipelineTables(store, store.pool)
    pipeline = Pipeline(policy.Rules(), "Shop <news@shop.example>", "SHOP", None)
    commands = MessageCommands(
        store, tables, contacts, FakeOrders(), TemplateCommands(store), pipeline
    )
    delivery = GatewayDelivery()
    return Dispatcher(tables, delivery, commands, Dispatching()), delivery
