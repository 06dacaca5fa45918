"""Membership through the real gRPC API: a contact enters a segment when its order arrives,
leaves it at the exact instant the window passes, and is a member as of each instant."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from crm.segmentation.v1 import events_pb2 as epb
from crm.segmentation.v1 import segmentation_pb2 as pb
from services.segmentation.tests.conftest import Env
from services.segmentation.tests.helpers import (
    create,
    expect_error,
    member,
    membership_events,
    register,
)
from shared.domain.timestamps import timestamp_from_text
from shared.testing import rpc

pytestmark = pytest.mark.timeout(120)


async def test_an_order_enters_and_the_window_passing_exits_at_the_exact_instant(
    env: Env,
) -> None:
    seg = await create(env, "orders_count >= 1 AND last_order_at > -30d")
    contact = await register(env)
    # Placed 30 days minus 2 s ago: the condition flips 2 s from now, with no event.
    placed = datetime.now(UTC) - timedelta(days=30) + timedelta(seconds=2)
    await env.order(contact, placed)
    await env.settle()
    assert await member(env, contact, seg.segment_id)
    assert await membership_events(env, contact) == [
        ("ContactEnteredSegment", seg.key, "MEMBERSHIP_CAUSE_EVENT")
    ]
    # Nothing is due yet; then the clock passes the instant and the timer fires once.
    assert await env.timers.tick() == 0
    env.clock.offset = timedelta(seconds=5)
    assert await env.timers.tick() == 1
    assert await env.timers.tick() == 0
    await env.settle()
    events = await env.store.read_stream(f"segmentmembership-{contact}")
    exit_ = events[-1]
    assert exit_.type == "crm.segmentation.v1.ContactExitedSegment"
    assert exit_.data["cause"] == "MEMBERSHIP_CAUSE_TIME_PASSED"
    flipped = timestamp_from_text(exit_.data["effective_time"])
    assert flipped == placed + timedelta(days=30)  # the exact instant, not when it fired
    # Membership as of each instant.
    assert await member(env, contact, seg.segment_id, flipped - timedelta(milliseconds=1))
    assert not await member(env, contact, seg.segment_id, flipped)
    entered = timestamp_from_text(events[0].data["effective_time"])
    assert not await member(env, contact, seg.segment_id, entered - timedelta(milliseconds=1))


async def test_two_timers_of_one_contact_due_in_one_tick_exit_each_segment_once(
    env: Env,
) -> None:
    """Both windows pass at the same instant: one tick fires both timers, and the contact
    leaves each segment exactly once (the second decision sees what the first decided)."""
    recent = await create(env, "last_order_at > -30d")
    tea = await create(env, "purchased(sku = 'TEA-1', within 30d)")
    contact = await register(env)
    placed = datetime.now(UTC) - timedelta(days=30) + timedelta(seconds=2)
    await env.order(contact, placed)
    await env.settle()
    env.clock.offset = timedelta(seconds=5)
    assert await env.timers.tick() == 2
    assert await env.timers.tick() == 0
    events = await membership_events(env, contact)
    exits = sorted(key for kind, key, _ in events if kind == "ContactExitedSegment")
    assert exits == sorted([recent.key, tea.key])
    assert len(events) == 4


async def test_a_new_segment_backfills_and_an_archived_one_lets_everyone_go(env: Env) -> None:
    contact = await register(env, tags=["vip"])
    await env.settle()
    seg = await create(env, "tags CONTAINS 'vip'")
    await env.settle()
    assert await member(env, contact, seg.segment_id)
    [(kind, key, cause)] = await membership_events(env, contact)
    assert (kind, key, cause) == ("ContactEnteredSegment", seg.key, "MEMBERSHIP_CAUSE_BACKFILL")
    [entered] = await env.store.read_stream(f"segmentmembership-{contact}")
    assert entered.metadata["backfill"] is True
    members = await env.stub.ListSegmentMembers(
        pb.ListSegmentMembersRequest(segment_id=seg.segment_id)
    )
    assert contact in members.contact_ids
    await env.stub.ArchiveSegment(pb.ArchiveSegmentRequest(segment_id=seg.segment_id))
    await env.settle()
    assert not await member(env, contact, seg.segment_id)
    assert (await membership_events(env, contact))[-1][2] == "MEMBERSHIP_CAUSE_RULE_CHANGED"


async def test_a_rule_change_re_evaluates_and_segments_can_build_on_segments(env: Env) -> None:
    base = await create(env, "tags CONTAINS 'a'")
    on_top = await create(env, f"in_segment('{base.key}') AND NOT tags CONTAINS 'b'")
    contact = await register(env, tags=["a"])
    await env.settle()
    assert await member(env, contact, base.segment_id)
    assert await member(env, contact, on_top.segment_id)
    changed = await env.stub.UpdateSegment(
        pb.UpdateSegmentRequest(
            segment_id=base.segment_id, name=base.name, rule="tags CONTAINS 'z'"
        )
    )
    assert changed.segment.rule_version == 2
    await env.settle()
    assert not await member(env, contact, base.segment_id)
    # A cycle is refused, with nothing written.
    await expect_error(
        env.stub.UpdateSegment(
            pb.UpdateSegmentRequest(
                segment_id=base.segment_id, name=base.name, rule=f"in_segment('{on_top.key}')"
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "SEGMENT_CYCLE",
    )


async def test_bad_input_is_refused_with_line_and_column(env: Env) -> None:
    fields = await expect_error(
        env.stub.CreateSegment(pb.CreateSegmentRequest(key="x1", name="x", rule="orders_count >")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "RULE_SYNTAX",
    )
    assert fields == ["rule"]
    seg = await create(env, "orders_count >= 1", key="taken-key")
    await expect_error(
        env.stub.CreateSegment(
            pb.CreateSegmentRequest(key=seg.key, name="y", rule="archived = true")
        ),
        grpc.StatusCode.ALREADY_EXISTS,
        "SEGMENT_KEY_TAKEN",
    )
    await expect_error(
        env.stub.GetSegment(pb.GetSegmentRequest(segment_id=str(uuid.uuid4()))),
        grpc.StatusCode.NOT_FOUND,
        "SEGMENT_NOT_FOUND",
    )


async def test_every_published_event_decodes_as_its_proto(env: Env) -> None:
    seg = await create(env, "archived = false")
    contact = await register(env)
    await env.settle()
    assert await member(env, contact, seg.segment_id)
    streams = (f"segment-{seg.segment_id}", f"segmentkey-{seg.key}", f"segmentmembership-{contact}")
    for stream in streams:
        for e in await env.store.read_stream(stream):
            rpc.published_message(e, epb)


async def test_a_rule_given_as_a_tree_is_the_same_rule(env: Env) -> None:
    text = "orders_count >= 2 AND NOT tags CONTAINS 'staff'"
    by_text = await create(env, text)
    tree = pb.CreateSegmentRequest(key=f"t-{uuid.uuid4().hex[:8]}", name="tree")
    tree.rule_tree.CopyFrom(by_text.rule_tree)
    by_tree = (await env.stub.CreateSegment(tree)).segment
    assert by_tree.rule == by_text.rule == text
    both = pb.CreateSegmentRequest(key="both", name="both", rule=text)
    both.rule_tree.CopyFrom(by_text.rule_tree)
    await expect_error(
        env.stub.CreateSegment(both), grpc.StatusCode.INVALID_ARGUMENT, "RULE_AMBIGUOUS"
    )
    bad = pb.CreateSegmentRequest(key="bad-tree", name="bad")
    bad.rule_tree.CopyFrom(by_text.rule_tree)
    bad.rule_tree.all.rules[0].comparison.field = "nope"
    fields = await expect_error(
        env.stub.CreateSegment(bad), grpc.StatusCode.INVALID_ARGUMENT, "UNKNOWN_FIELD"
    )
    assert fields and fields[0].startswith("rule_tree")
