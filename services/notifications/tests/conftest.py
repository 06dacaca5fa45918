"""Notifications served from its spec over a real socket on a real PostgreSQL, its read model
running."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest

from crm.notifications.v1 import events_pb2 as epb
from crm.notifications.v1 import notifications_pb2 as pb
from crm.notifications.v1 import notifications_pb2_grpc as pb_grpc
from services.notifications import spec
from shared.eventstore.postgres import PostgresEventStore
from shared.testing import rpc
from shared.testing.service_env import Served, serving

DOMAIN = "notifications.crm"


@dataclass
class Env:
    stub: pb_grpc.NotificationsServiceStub
    store: PostgresEventStore
    served: Served

    async def settle(self) -> None:
        await self.served.settle()

    async def template_events(self) -> int:
        return int(
            await self.store.pool.fetchval(
                "SELECT count(*) FROM eventstore.events"
                " WHERE stream_id LIKE 'template-%' OR stream_id LIKE 'templatekey-%'"
            )
        )


@pytest.fixture
async def env(dsn: str) -> AsyncIterator[Env]:
    async with serving(spec.SPEC, dsn) as s:
        yield Env(pb_grpc.NotificationsServiceStub(s.channel), s.store, s)


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
