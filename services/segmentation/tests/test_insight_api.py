"""ExplainMembership, PreviewSegmentRule and GetSegmentSizeHistory through the real API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import field_mask_pb2

from crm.contacts.v1 import contacts_pb2 as cpb
from crm.segmentation.v1 import rules_pb2 as rpb
from crm.segmentation.v1 import segmentation_pb2 as pb
from services.segmentation.tests.conftest import Env
from services.segmentation.tests.helpers import create, expect_error, register, ts

pytestmark = pytest.mark.timeout(120)


async def test_explain_names_the_deciding_event_and_every_node(env: Env) -> None:
    seg = await create(env, "tags CONTAINS 'vip' AND orders_count >= 1")
    contact = await register(env, tags=["vip"])
    order = await env.order(contact, datetime.now(UTC) - timedelta(days=1))
    await env.settle()
    got = await env.stub.ExplainMembership(
        pb.ExplainMembershipRequest(contact_id=contact, segment_id=seg.segment_id)
    )
    assert got.member and got.cause == "MEMBERSHIP_CAUSE_EVENT" and got.rule_version == 1
    [placed] = await env.store.read_stream(f"order-{order}")
    assert got.cause_event_id == str(placed.event_id)
    assert got.now.value is True and len(got.now.parts) == 2
    tags, orders = got.now.parts
    assert (tags.value, orders.value) == (True, True)
    read = {f.name: f.value for f in orders.facts}
    assert read["orders_count"].number_value == 1
    tag_values = {f.name: f.value for f in tags.facts}["tags"].list_value.values
    assert "vip" in [v.string_value for v in tag_values]


async def test_preview_counts_and_compares_without_writing(env: Env) -> None:
    a = await register(env, tags=["p-a"])
    b = await register(env, tags=["p-a", "p-b"])
    await env.settle()
    seg = await create(env, "tags CONTAINS 'p-b'")
    await env.settle()
    before = await env.store.head_position()
    got = await env.stub.PreviewSegmentRule(
        pb.PreviewSegmentRuleRequest(rule="tags contains 'p-a'", segment_id=seg.segment_id)
    )
    assert got.rule == "tags CONTAINS 'p-a'"
    assert got.count >= 2 and {a, b} <= set(got.sample_contact_ids) | {a, b}
    assert got.would_enter >= 1 and got.would_exit == 0  # a would enter; b stays
    assert await env.store.head_position() == before
    await expect_error(
        env.stub.PreviewSegmentRule(pb.PreviewSegmentRuleRequest(rule="tags CONTAINS")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "RULE_SYNTAX",
    )


async def test_size_history_counts_members_exactly(env: Env) -> None:
    seg = await create(env, "tags CONTAINS 'hist'")
    start = datetime.now(UTC)
    for _ in range(3):
        await register(env, tags=["hist"])
    await env.settle()
    end = datetime.now(UTC)
    got = await env.stub.GetSegmentSizeHistory(
        pb.GetSegmentSizeHistoryRequest(
            segment_id=seg.segment_id, start_time=ts(start), end_time=ts(end), points=2
        )
    )
    assert [p.members for p in got.points] == [0, 3]
    await expect_error(
        env.stub.GetSegmentSizeHistory(
            pb.GetSegmentSizeHistoryRequest(
                segment_id=seg.segment_id, start_time=ts(end), end_time=ts(start)
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_INTERVAL",
    )


async def test_explain_as_of_a_past_instant_reads_the_facts_of_then(env: Env) -> None:
    """The tree as of an instant is the rule of then on the facts of then: the orders placed
    and the email domain (a personal fact, read from contacts as of each event) at that
    instant, not today's."""
    seg = await create(env, "email_domain = 'shop.example' AND orders_count >= 2")
    contact = await register(env)  # c-…@shop.example
    await env.order(contact, datetime.now(UTC) - timedelta(days=2))
    await env.settle()
    one_order = datetime.now(UTC)
    await env.order(contact, datetime.now(UTC) - timedelta(days=1))
    await env.settle()
    two_orders = datetime.now(UTC)
    await env.contacts.UpdateContact(
        cpb.UpdateContactRequest(
            contact=cpb.Contact(contact_id=contact, email=f"moved-{contact[:8]}@else.example"),
            update_mask=field_mask_pb2.FieldMask(paths=["email"]),
        )
    )
    await env.settle()

    async def explain(at: datetime) -> pb.ExplainMembershipResponse:
        request = pb.ExplainMembershipRequest(contact_id=contact, segment_id=seg.segment_id)
        request.as_of.CopyFrom(ts(at))
        return await env.stub.ExplainMembership(request)

    def facts(node: rpb.RuleExplanation) -> dict[str, object]:
        out: dict[str, object] = {}
        for part in node.parts:
            for f in part.facts:
                out[f.name] = f.value.number_value or f.value.string_value
        return out

    first = await explain(one_order)
    assert first.as_of_rule_version == 1 and not first.as_of_explanation.value
    assert facts(first.as_of_explanation) == {"email_domain": "shop.example", "orders_count": 1}
    second = await explain(two_orders)
    assert second.member and second.as_of_explanation.value
    assert facts(second.as_of_explanation)["orders_count"] == 2
    latest = await explain(datetime.now(UTC))
    assert not latest.member and not latest.as_of_explanation.value
    assert facts(latest.as_of_explanation)["email_domain"] == "else.example"
    assert facts(latest.now) == facts(latest.as_of_explanation)
    # Before the segment existed there is no rule of then to explain.
    early = await explain(datetime.now(UTC) - timedelta(days=1))
    assert not early.HasField("as_of_explanation")
