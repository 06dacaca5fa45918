"""ExplainMembership shows the facts a rule read, and a contact's attributes and email domain
are personal data: a service or an operator (with a reason) sees them and the read is recorded;
an auditor sees the rest of the explanation with those values left out."""

from __future__ import annotations

import grpc
import pytest

from crm.audit.v1 import events_pb2 as audit_pb2
from crm.contacts.v1 import events_pb2 as cevents
from crm.segmentation.v1 import segmentation_pb2 as pb
from crm.segmentation.v1 import segmentation_pb2_grpc as pb_grpc
from services.segmentation.tests.conftest import Env
from services.segmentation.tests.helpers import create, expect_error, register
from shared.grpckit.audit import CATEGORY
from shared.testing import tokens
from shared.testing.events import read_everything
from shared.testing.rpc import published_message

pytestmark = pytest.mark.timeout(60)
RULE = "attributes.vip_level >= 2 AND email_domain = 'shop.example' AND tags CONTAINS 'x'"


async def explain(
    env: Env, role: str, reason: str, contact: str, seg: str
) -> pb.ExplainMembershipResponse:
    async with env.served.channel_as(role, reason=reason) as ch:
        request = pb.ExplainMembershipRequest(contact_id=contact, segment_id=seg)
        return await pb_grpc.SegmentationServiceStub(ch).ExplainMembership(request)


def facts(got: pb.ExplainMembershipResponse) -> dict[str, tuple[bool, bool]]:
    """fact name -> (has a value, redacted), over every node."""
    return {f.name: (f.HasField("value"), f.redacted) for part in got.now.parts for f in part.facts}


EXPLAIN = "crm.segmentation.v1.SegmentationService/ExplainMembership"


async def reads(env: Env, before: int) -> list[audit_pb2.PersonalDataRead]:
    """The reads segmentation recorded (contacts records its own answers to segmentation's
    calls for personal facts as of the past: reads by the service, whoever asked)."""
    events = (await read_everything(env.store, categories=[CATEGORY]))[before:]
    found = [published_message(e, audit_pb2) for e in events]
    assert all(
        r.method == EXPLAIN or r.principal == tokens.NAMES["service"]  # type: ignore[attr-defined]
        for r in found
    )
    return [r for r in found if r.method == EXPLAIN]  # type: ignore[attr-defined, misc]


async def test_personal_facts_are_recorded_or_redacted(env: Env) -> None:
    seg = await create(env, RULE)
    contact = await register(
        env, tags=["x"], attributes={"vip_level": cevents.AttributeValue(number_value=3)}
    )
    await env.settle()
    before = len(await read_everything(env.store, categories=[CATEGORY]))

    audited = await explain(env, "auditor", "", contact, seg.segment_id)
    assert audited.member and audited.now.value is True  # the answer is all there …
    assert facts(audited) == {  # … but the personal values
        "attributes.vip_level": (False, True),
        "email_domain": (False, True),
        "tags": (True, False),
    }
    assert await reads(env, before) == []

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await explain(env, "operator", "", contact, seg.segment_id)
    await expect_error(_raise(info.value), grpc.StatusCode.INVALID_ARGUMENT, "REASON_REQUIRED")

    shown = await explain(env, "operator", "checking the VIP rule", contact, seg.segment_id)
    assert set(facts(shown).values()) == {(True, False)}
    [read] = await reads(env, before)
    assert (read.principal, read.method, list(read.contact_ids), read.reason) == (
        tokens.NAMES["operator"],
        EXPLAIN,
        [contact],
        "checking the VIP rule",
    )


async def _raise(err: grpc.aio.AioRpcError) -> None:
    raise err
