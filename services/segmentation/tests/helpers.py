"""Helpers the segmentation tests share (their fixtures are in conftest.py)."""

from __future__ import annotations

import uuid
from datetime import datetime

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from crm.contacts.v1 import contacts_pb2 as cpb
from crm.segmentation.v1 import segmentation_pb2 as pb
from services.segmentation.tests.conftest import Env
from shared.testing import rpc


async def expect_error(call: object, code: grpc.StatusCode, reason: str) -> list[str]:
    return await rpc.expect_error(call, code, reason, "segmentation.crm")  # type: ignore[arg-type]


def ts(at: datetime) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(at)
    return t


async def register(env: Env, **kw: object) -> str:
    tag = uuid.uuid4().hex[:8]
    r = await env.contacts.RegisterContact(
        cpb.RegisterContactRequest(email=f"c-{tag}@shop.example", **kw)  # type: ignore[arg-type]
    )
    return str(r.contact.contact_id)


async def create(env: Env, rule: str, key: str = "") -> pb.Segment:
    key = key or f"s-{uuid.uuid4().hex[:8]}"
    r = await env.stub.CreateSegment(pb.CreateSegmentRequest(key=key, name=key, rule=rule))
    return r.segment


async def member(env: Env, contact_id: str, segment_id: str, at: datetime | None = None) -> bool:
    req = pb.IsMemberRequest(contact_id=contact_id, segment_id=segment_id)
    if at is not None:
        req.as_of.CopyFrom(ts(at))
    return bool((await env.stub.IsMember(req)).member)


async def membership_events(env: Env, contact_id: str) -> list[tuple[str, str, str]]:
    events = await env.store.read_stream(f"segmentmembership-{contact_id}")
    return [(e.type.rsplit(".", 1)[-1], e.data["segment_key"], e.data["cause"]) for e in events]
