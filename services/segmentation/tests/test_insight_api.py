"""ExplainMembership, PreviewSegmentRule and GetSegmentSizeHistory through the real API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest

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
