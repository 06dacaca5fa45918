"""Notifications as real processes for the end-to-end tests: contacts served, the notifications
API (serve), the project role (read models and the dispatcher) and the delivery workers, each
its own process (tests/e2e/processes.py), sending to an SMTP server (aiosmtpd,
services/notifications/tests/smtp_sink.py) and a Twilio-style SMS gateway (sms_gateway.py),
both real servers in their own processes, so they outlive any process a test kills and count
what reached them. Then what the event store says happened to each message (``Ledger``)."""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from google.protobuf import struct_pb2

from crm.contacts.v1 import consent_pb2 as kpb
from crm.contacts.v1 import consent_pb2_grpc as kpb_grpc
from crm.contacts.v1 import contacts_pb2 as cpb
from crm.contacts.v1 import contacts_pb2_grpc as cpb_grpc
from crm.contacts.v1 import events_pb2 as cepb
from crm.notifications.v1 import events_pb2 as epb
from crm.notifications.v1 import notifications_pb2 as pb
from crm.notifications.v1 import notifications_pb2_grpc as pb_grpc
from services.notifications.domain import decision as d
from services.notifications.tests.delivery_env import SmtpSink
from shared.db import connect_pool
from tests.e2e.processes import SERVING, Proc, free_port
from tests.e2e.sms_gateway import SMS_LOGIN, SmsGateway

MAIL_DOMAIN = "mail.shop.example"
TRACKING = {
    "TRACKING_BASE_URL": "https://t.shop.example",
    "TRACKING_SECRET": "e2e-tracking-secret",
    "UNSUBSCRIBE_MAILTO": "unsubscribe@shop.example",
}
# What SendMessage decides on (serve) and decides again on after a deferral (project).
POLICY = {
    "EMAIL_FROM": "Shop <news@shop.example>",
    "SMS_FROM": "SHOP",
    "SMS_QUIET_HOURS": "21:00-08:00",
    **TRACKING,
}


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"not reached in time: {what}"
        await asyncio.sleep(0.1)


MESSAGE_ID = re.compile(rb"^Message-ID: <([^@>]+)@", re.MULTILINE | re.IGNORECASE)


def message_ids(sink: SmtpSink) -> list[str]:
    """The message id of every email the sink accepted (from ``<message_id@MAIL_DOMAIN>``),
    read from the raw bytes: quick enough to poll while a batch is arriving."""
    out = []
    for r in sink.received():
        found = MESSAGE_ID.search(base64.b64decode(r["data"]))
        assert found is not None, "an email without a Message-ID"
        out.append(found.group(1).decode())
    return out


def message_id_of(email: EmailMessage) -> str:
    value = str(email["Message-ID"])
    assert value.startswith("<") and value.endswith(f"@{MAIL_DOMAIN}>"), value
    return value[1:].split("@")[0]


@dataclass
class Suite:
    """The processes of one test, started on free ports (``procs`` kills them at the end)."""

    dsn: str
    tmp: Path
    procs: list[Proc]
    project_env: dict[str, str] = field(default_factory=dict)
    smtp_delay: float = 0.0  # seconds the SMTP server takes over each message
    with_orders: bool = False  # run orders too (serve and project), carts abandoned fast
    with_segmentation: bool = False  # run segmentation too (serve and project): campaigns
    with_http: bool = False  # the serve role's HTTP port, where the tracking URLs point

    sinks: list[SmtpSink | SmsGateway] = field(default_factory=list)  # to stop at the end

    async def start(self) -> None:
        self.smtp = SmtpSink(self.tmp, env={"SMTP_SINK_DELAY_SECONDS": str(self.smtp_delay)})
        self.sinks.append(self.smtp)
        self.gateway = SmsGateway(self.tmp)
        self.sinks.append(self.gateway)
        self.contacts = Proc("serve", self.dsn)
        self.procs.append(self.contacts)
        to_contacts = {"CONTACTS_TARGET": f"127.0.0.1:{self.contacts.grpc_port}"}
        self.policy, serve_env = dict(POLICY), {}
        if self.with_http:
            serve_env["HTTP_PORT"] = str(free_port())
            self.policy["TRACKING_BASE_URL"] = f"http://127.0.0.1:{serve_env['HTTP_PORT']}"
        orders_target = f"127.0.0.1:{free_port()}"  # unless asked for, orders is never called
        if self.with_orders:
            # carts abandoned after a second of idleness (the abandonment timer polls fast)
            self.orders = Proc("serve", self.dsn, "orders", **to_contacts)
            self.orders_project = Proc(
                "project",
                self.dsn,
                "orders",
                **to_contacts,
                CART_ABANDON_AFTER_SECONDS="1",
                ABANDONMENT_POLL_SECONDS="0.2",
            )
            self.procs += [self.orders, self.orders_project]
            await self.orders.wait_health(SERVING, timeout=60)
            await self.orders_project.wait_health(SERVING, timeout=60)
            orders_target = f"127.0.0.1:{self.orders.grpc_port}"
        self.upstream = {**to_contacts, "ORDERS_TARGET": orders_target}
        if self.with_segmentation:  # memberships evaluated fast (timers polled every 0.1 s)
            self.segmentation = Proc("serve", self.dsn, "segmentation", **to_contacts)
            seg = Proc("project", self.dsn, "segmentation", TIMER_POLL_SECONDS="0.1", **to_contacts)
            self.procs += [self.segmentation, seg]
            for p in (self.segmentation, seg):
                await p.wait_health(SERVING, timeout=60)
            self.upstream["SEGMENTATION_TARGET"] = f"127.0.0.1:{self.segmentation.grpc_port}"
        self.delivery = Proc(
            "delivery",
            self.dsn,
            "notifications",
            SMTP_HOST="127.0.0.1",
            SMTP_PORT=str(self.smtp.port),
            SMTP_TIMEOUT_SECONDS="10",
            MESSAGE_ID_DOMAIN=MAIL_DOMAIN,
            SMS_BASE_URL=self.gateway.base_url,
            SMS_ACCOUNT_SID=SMS_LOGIN[0],
            SMS_AUTH_TOKEN=SMS_LOGIN[1],
            HTTP_TIMEOUT_SECONDS="10",
        )
        self.serve = Proc(
            "serve", self.dsn, "notifications", **self.upstream, **self.policy, **serve_env
        )
        self.procs += [self.delivery, self.serve]
        for p in (self.contacts, self.delivery, self.serve):
            await p.wait_health(SERVING, timeout=60)

    async def start_project(self) -> Proc:
        """The project role: read models and the dispatcher (one leader), polling fast."""
        self.project = Proc(
            "project",
            self.dsn,
            "notifications",
            DELIVERY_URL=f"127.0.0.1:{self.delivery.grpc_port}",
            DISPATCH_POLL_SECONDS="0.1",
            **self.upstream,
            **self.policy,
            **self.project_env,
        )
        self.procs.append(self.project)
        await self.project.wait_health(SERVING, timeout=60)
        return self.project

    def stop_sinks(self) -> None:
        while self.sinks:
            self.sinks.pop().stop()

    def contacts_stubs(self, channel: Any) -> tuple[Any, Any]:
        return cpb_grpc.ContactsServiceStub(channel), kpb_grpc.ConsentServiceStub(channel)

    async def register(
        self, email: str, phone: str, time_zone: str, first_name: str, last_name: str = ""
    ) -> str:
        """A contact registered through contacts, subscribed to email and SMS."""
        return await self.register_with({}, email, phone, time_zone, first_name, last_name)

    async def register_with(
        self,
        attributes: Mapping[str, str],
        email: str,
        phone: str,
        time_zone: str,
        first_name: str,
        last_name: str = "",
    ) -> str:
        """``register`` with text ``attributes``."""
        async with self.contacts.channel() as ch:
            contacts, consent = self.contacts_stubs(ch)
            made = await contacts.RegisterContact(
                cpb.RegisterContactRequest(
                    email=email,
                    phone=phone,
                    first_name=first_name,
                    last_name=last_name,
                    time_zone=time_zone,
                    attributes={
                        k: cepb.AttributeValue(string_value=v) for k, v in attributes.items()
                    },
                )
            )
            cid = str(made.contact.contact_id)
            for channel in (kpb.CHANNEL_EMAIL, kpb.CHANNEL_SMS):
                await consent.RecordConsent(
                    kpb.RecordConsentRequest(
                        contact_id=cid,
                        channel=channel,
                        state=kpb.CONSENT_STATE_SUBSCRIBED,
                        legal_basis=kpb.LEGAL_BASIS_CONSENT,
                        policy_version="e2e-1",
                    )
                )
        return cid

    async def template(self, key: str, channel: int, **variant: str) -> str:
        async with self.serve.channel() as ch:
            made = await pb_grpc.NotificationsServiceStub(ch).CreateTemplate(
                pb.CreateTemplateRequest(
                    key=key,
                    name=key.title(),
                    channel=channel,  # type: ignore[arg-type]
                    variants=[epb.TemplateVariant(**variant)],
                )
            )
        return str(made.template.template_id)

    async def listed(self, contact_ids: set[str]) -> dict[str, pb.Message]:
        """Every message of these contacts as ListMessages answers (the read model)."""
        out: dict[str, pb.Message] = {}
        async with self.serve.channel() as ch:
            api = pb_grpc.NotificationsServiceStub(ch)
            for cid in sorted(contact_ids):
                token = ""
                while True:
                    page = await api.ListMessages(
                        pb.ListMessagesRequest(contact_id=cid, page_size=100, page_token=token)
                    )
                    out.update((m.message_id, m) for m in page.messages)
                    if not (token := page.next_page_token):
                        break
        return out


STEPS = {d.DISPATCHED: "dispatched", d.SENT: "sent", d.FAILED: "failed"}


def data(**values: Any) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(values)
    return s


@dataclass
class Ledger:
    """What the event store holds about the messages: each one's events, in order."""

    events: dict[str, list[tuple[str, dict[str, Any]]]]

    @classmethod
    async def read(cls, dsn: str) -> Ledger:
        pool = await connect_pool(dsn, min_size=1, max_size=1)
        try:
            rows = await pool.fetch(
                "SELECT stream_id, type, data::text AS data FROM eventstore.events"
                " WHERE stream_id LIKE 'message-%' ORDER BY position"
            )
        finally:
            await pool.close()
        events: dict[str, list[tuple[str, dict[str, Any]]]] = collections.defaultdict(list)
        for r in rows:
            events[r["stream_id"].removeprefix("message-")].append(
                (r["type"], json.loads(r["data"]))
            )
        return cls(dict(events))

    def of(self, message_id: str, event_type: str) -> list[dict[str, Any]]:
        return [data for t, data in self.events.get(message_id, []) if t == event_type]

    def in_doubt(self, message_id: str) -> int:
        """How many times the message was dispatched again after an attempt with no outcome."""
        return sum(1 for e in self.of(message_id, d.DISPATCHED) if e.get("in_doubt"))

    def steps(self, message_id: str) -> list[str]:
        """The message's delivery steps as GetMessage names them, in the log's order."""
        return [STEPS[t] for t, _ in self.events.get(message_id, []) if t in STEPS]

    def contacts(self) -> set[str]:
        return {e["contact_id"] for m in self.events for e in self.of(m, d.DECIDED)}


async def outbox_rows(dsn: str, in_flight_only: bool = False) -> int:
    pool = await connect_pool(dsn, min_size=1, max_size=1)
    try:
        where = " WHERE in_flight" if in_flight_only else ""
        return int(
            await pool.fetchval(f"SELECT count(*) FROM notifications_pipeline.outbox{where}")
        )
    finally:
        await pool.close()
