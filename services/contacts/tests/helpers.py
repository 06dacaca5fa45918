"""Helpers the contacts tests share (their fixtures are in conftest.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from crm.contacts.v1 import consent_pb2 as cpb
from crm.contacts.v1 import contacts_pb2 as pb
from shared.testing import rpc

if TYPE_CHECKING:
    from services.contacts.tests.conftest import Env

# ConsentService shorthands
EMAIL, SMS, PUSH = cpb.CHANNEL_EMAIL, cpb.CHANNEL_SMS, cpb.CHANNEL_PUSH
SUB, UNSUB = cpb.CONSENT_STATE_SUBSCRIBED, cpb.CONSENT_STATE_UNSUBSCRIBED
NEVER, PENDING = cpb.CONSENT_STATE_NEVER_SUBSCRIBED, cpb.CONSENT_STATE_PENDING_CONFIRMATION
CONSENT = cpb.LEGAL_BASIS_CONSENT
IP, UA = "203.0.113.77", "Mozilla/5.0 (SecretAgent 9.1)"


async def expect_error(call: Any, code: grpc.StatusCode, reason: str) -> list[str]:
    return await rpc.expect_error(call, code, reason, "contacts.crm")


async def register(env: Env, **kw: object) -> pb.Contact:
    r = await env.stub.RegisterContact(pb.RegisterContactRequest(**kw))  # type: ignore[arg-type]
    return r.contact


def ts(at: datetime) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(at)
    return t


def dt(t: Timestamp) -> datetime:
    return t.ToDatetime(tzinfo=UTC)
