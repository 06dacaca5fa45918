"""RFM in rules: scores rank customers against each other, so they move when *other*
customers order. The engine re-scores everyone at an RfmRescoreScheduled event (one per slot,
however many replicas schedule it) and when a rule starts to read RFM; each move of membership
that follows is an event caused by it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crm.segmentation.v1 import events_pb2 as epb
from services.segmentation.adapters.rfm import RfmRescoreScheduler
from services.segmentation.tests.conftest import Env
from services.segmentation.tests.helpers import create, member, membership_events, register
from shared.testing import rpc

pytestmark = pytest.mark.timeout(120)


async def test_other_customers_orders_move_rfm_membership_at_the_next_rescore(
    env: Env,
) -> None:
    now = datetime.now(UTC)
    a, b = await register(env), await register(env)
    for n in range(3):
        await env.order(a, now - timedelta(days=10 - n))
    await env.order(b, now - timedelta(days=20))
    await env.settle()
    # Two customers: a's 3 orders beat b's 1 (frequency 1 + 5 * 1 // 2 = 3, b's 1).
    frequent = await create(env, "rfm_frequency.EUR >= 3")
    sleeping = await create(env, "rfm_group.EUR IN ('hibernating', 'at_risk')")
    await env.settle()
    assert await member(env, a, frequent.segment_id)
    assert not await member(env, b, frequent.segment_id)
    assert await member(env, b, sleeping.segment_id)  # recency 1, frequency 1: hibernating

    # c orders five times: nothing moves for a until the scores are computed again.
    c = await register(env)
    for n in range(5):
        await env.order(c, now - timedelta(days=5 - n))
    await env.settle()
    assert await member(env, a, frequent.segment_id)
    assert not await member(env, c, frequent.segment_id)

    scheduler = RfmRescoreScheduler(env.store, timedelta(hours=1), clock=env.clock)
    assert await scheduler.tick()
    assert not await scheduler.tick()  # the same slot: scheduled once
    await env.settle()
    # Three customers: frequencies 1, 3, 5 score 1, 2 and 4.
    assert not await member(env, a, frequent.segment_id)
    assert await member(env, c, frequent.segment_id)
    [rescore] = await env.store.read_stream(_slot_stream(scheduler, env))
    [left] = [
        e
        for e in await env.store.read_stream(f"segmentmembership-{a}")
        if e.type == "crm.segmentation.v1.ContactExitedSegment"
    ]
    assert left.data["segment_key"] == frequent.key
    assert left.data["cause"] == "MEMBERSHIP_CAUSE_EVENT"
    assert left.data["cause_event_id"] == str(rescore.event_id)
    assert left.metadata["causation_id"] == str(rescore.event_id)
    # Recency 2 (b's last order is older), frequency 2: a is hibernating now.
    assert await member(env, a, sleeping.segment_id)
    rpc.published_message(rescore, epb)
    assert ("ContactEnteredSegment", frequent.key, "MEMBERSHIP_CAUSE_EVENT") in (
        await membership_events(env, c)
    )
    # Nothing left to move: another slot re-scores and writes no membership event.
    before = [len(await membership_events(env, x)) for x in (a, b, c)]
    env.clock.offset = timedelta(hours=1)
    assert await scheduler.tick()
    await env.settle()
    assert [len(await membership_events(env, x)) for x in (a, b, c)] == before


def _slot_stream(scheduler: RfmRescoreScheduler, env: Env) -> str:
    return f"rfmrescore-{int(scheduler.slot_start(env.clock()).timestamp())}"
