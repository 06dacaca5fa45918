"""The message pipeline's application on a real PostgreSQL store and its real tables, with
fakes behind the ports it calls out through: contacts, orders (metrics, carts, orders) and the delivery
workers. A movable clock drives caps, quiet hours, backoff and leases."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from services.notifications.adapters.pipeline_tables import SCHEMA, PostgresPipelineTables
from services.notifications.application.delivery import Outbound, Outcome
from services.notifications.application.dispatcher import Dispatcher, Dispatching
from services.notifications.application.ports import ContactFacts
from services.notifications.application.sending import MessageCommands, Pipeline, SendRequest
from services.notifications.application.templates import TemplateCommands
from services.notifications.domain import decision as d
from services.notifications.domain import policy
from services.notifications.domain.decision import ConsentUsed
from services.notifications.domain.template import Template
from services.notifications.domain.trail import Trail
from services.notifications.domain.unsubscribe import Unsubscribe
from services.notifications.domain.variant import EMAIL, SMS, Variant
from shared.eventstore import RecordedEvent
from shared.eventstore.postgres import PostgresEventStore

ADA = "6f1c0e2a-1b7d-4c55-9a0e-3e2d1c4b5a69"
NOON = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)  # 12:00 in Paris


@dataclass
class Clock:
    now: datetime = NOON

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> None:
        self.now += by


@dataclass
class FakeContacts:
    people: dict[str, ContactFacts] = field(default_factory=dict)
    merged: dict[str, str] = field(default_factory=dict)  # merged id -> survivor id
    ledger: dict[tuple[str, str], ConsentUsed] = field(default_factory=dict)
    identities: dict[tuple[str, str], str] = field(default_factory=dict)
    batches: list[list[str]] = field(default_factory=list)  # get_many's calls

    def add(self, contact_id: str = ADA, **kw: Any) -> ContactFacts:
        profile = {"first_name": kw.pop("first_name", "Ada"), "contact_id": contact_id}
        facts = ContactFacts(
            contact_id=contact_id,
            email=kw.pop("email", "ada@example.com"),
            phone=kw.pop("phone", "+33600000001"),
            time_zone=kw.pop("time_zone", "Europe/Paris"),
            profile=profile,
            **kw,
        )
        self.people[contact_id] = facts
        self.identities[("email", facts.email)] = contact_id
        for channel in (EMAIL, SMS):
            self.subscribe(contact_id, channel)
        return facts

    def subscribe(self, contact_id: str, channel: str, state: str = policy.SUBSCRIBED) -> None:
        self.ledger[(contact_id, channel)] = ConsentUsed(
            state=state,
            legal_basis="LEGAL_BASIS_CONSENT",
            policy_version="2026-01",
            update_time=NOON - timedelta(days=30),
        )

    async def get(self, contact_id: str) -> ContactFacts | None:
        return self.people.get(self.merged.get(contact_id, contact_id))

    async def find(self, kind: str, value: str) -> str | None:
        return self.identities.get((kind, value))

    async def consent(self, contact_id: str, channel: str) -> ConsentUsed:
        return self.ledger.get(
            (contact_id, channel), ConsentUsed(state="CONSENT_STATE_NEVER_SUBSCRIBED")
        )

    async def get_many(self, contact_ids: Sequence[str]) -> dict[str, ContactFacts]:
        self.batches.append(list(contact_ids))
        return {c: found for c in contact_ids if (found := await self.get(c)) is not None}

    async def consents(self, contact_ids: Sequence[str]) -> dict[str, dict[str, ConsentUsed]]:
        return {
            c: {ch: v for (who, ch), v in self.ledger.items() if who == c}
            for c in contact_ids
            if c in self.people
        }


class FakeOrders:
    def __init__(self) -> None:
        self.asked: list[str] = []
        self.carts: dict[str, dict[str, Any]] = {}
        self.orders: dict[str, dict[str, Any]] = {}

    async def metrics(self, contact_id: str) -> dict[str, Any]:
        self.asked.append(contact_id)
        return {"order_count": 3, "currencies": []}

    async def cart(self, cart_id: str) -> dict[str, Any] | None:
        return self.carts.get(cart_id)

    async def order(self, order_id: str) -> dict[str, Any] | None:
        return self.orders.get(order_id)


class FakeDelivery:
    """Answers ``status`` for every message (or what ``answers`` says for a message id); records
    every batch. ``hang`` makes deliver wait forever (a dispatcher stopped mid-call); ``down``
    makes it raise (the workers unreachable)."""

    def __init__(self) -> None:
        self.batches: list[list[Outbound]] = []
        self.status = "sent"
        self.detail = "250 2.0.0 OK"
        self.answers: dict[str, str] = {}
        self.provider_ids: dict[str, str] = {}  # message id -> the gateway's id it answers
        self.hang = False
        self.down = False
        self.reachable = True  # what ready() answers

    @property
    def sent(self) -> list[Outbound]:
        return [m for batch in self.batches for m in batch]

    async def ready(self) -> bool:
        return self.reachable

    async def deliver(self, messages: Sequence[Outbound]) -> list[Outcome]:
        self.batches.append(list(messages))
        if self.hang:
            await asyncio.Event().wait()
        if self.down:
            raise ConnectionError("delivery workers unreachable")
        return [
            Outcome(
                m.message_id,
                self.answers.get(m.message_id, self.status),  # type: ignore[arg-type]
                self.detail,
                self.provider_ids.get(m.message_id, ""),
            )
            for m in messages
        ]


@dataclass
class Pipe:
    store: PostgresEventStore
    tables: PostgresPipelineTables
    contacts: FakeContacts
    orders: FakeOrders
    delivery: FakeDelivery
    clock: Clock
    templates: TemplateCommands
    messages: MessageCommands
    dispatcher: Dispatcher

    async def template(self, key: str = "news", channel: str = EMAIL, **parts: str) -> Template:
        if channel == EMAIL:
            variant = Variant(
                "",
                subject=parts.get("subject", "Hi {{ contact.first_name }}"),
                text=parts.get("text", "Hello {{ contact.first_name }}: {{ data.offer }}"),
            )
        else:
            variant = Variant("", body=parts.get("body", "Hi {{ contact.first_name }}"))
        return await self.templates.create(key, channel, key.title(), [variant])

    async def send(self, template: Template, kind: str = policy.MARKETING, **kw: Any) -> Trail:
        meta = kw.pop("meta", {})
        request = SendRequest(
            kind=kind,
            contact_id=kw.pop("contact_id", ADA),
            template_id=template.template_id,
            data=kw.pop("data", {"offer": "tea"}),
            **kw,
        )
        return await self.messages.send(request, meta)

    async def events(self, message_id: str) -> list[RecordedEvent]:
        return await self.store.read_stream(d.stream_of(message_id))

    async def rows(self, table: str) -> list[dict[str, Any]]:
        return [dict(r) for r in await self.store.pool.fetch(f"SELECT * FROM {SCHEMA}.{table}")]


def build(
    store: PostgresEventStore,
    *,
    rules: policy.Rules | None = None,
    config: Dispatching | None = None,
    unsubscribe: Unsubscribe | None = None,
) -> Pipe:
    clock = Clock()
    tables = PostgresPipelineTables(store, store.pool)
    contacts, orders, delivery = FakeContacts(), FakeOrders(), FakeDelivery()
    templates = TemplateCommands(store)
    pipeline = Pipeline(rules or policy.Rules(), "Shop <news@shop.example>", "SHOP", unsubscribe)
    messages = MessageCommands(store, tables, contacts, orders, templates, pipeline, clock)
    dispatcher = Dispatcher(tables, delivery, messages, config or Dispatching(), clock)
    return Pipe(store, tables, contacts, orders, delivery, clock, templates, messages, dispatcher)


def with_cap(rules: policy.Rules, channel: str, cap: int) -> policy.Rules:
    channels = dict(rules.channels)
    channels[channel] = replace(channels[channel], cap=cap)
    return replace(rules, channels=channels)
