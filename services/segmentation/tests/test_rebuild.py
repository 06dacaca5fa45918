"""A rebuild of the membership engine writes nothing to the log (contacts records the reads of
personal facts it makes), gives the same facts and memberships as the live engine, and keeps
the timers (so a clock flip still fires)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.segmentation.adapters.rfm import RfmRescoreScheduler
from services.segmentation.tests.conftest import Env
from services.segmentation.tests.helpers import create, member, register
from shared.grpckit.audit import CATEGORY
from shared.projections.rebuild import rebuild
from shared.testing.events import read_everything

pytestmark = pytest.mark.timeout(120)
TABLES = ("contacts", "orders", "purchases", "carts", "memberships", "segments", "rfm_scores")


async def snapshot(env: Env) -> dict[str, list[str]]:
    out = {}
    for t in TABLES:
        rows = await env.store.pool.fetch(f"SELECT t::text FROM segmentation_facts.{t} t")
        out[t] = sorted(r[0] for r in rows)
    return out


async def timers(env: Env) -> list[tuple[str, str, datetime]]:
    rows = await env.store.pool.fetch(
        "SELECT segment_id::text, contact_id::text, due_at FROM segmentation_facts.timers"
    )
    return sorted((r[0], r[1], r[2]) for r in rows)


async def test_a_rebuild_appends_nothing_and_keeps_facts_memberships_and_timers(
    env: Env,
) -> None:
    seg = await create(env, "orders_count >= 1 AND last_order_at > -30d")
    await create(env, "tags CONTAINS 'vip'")
    best = await create(env, "rfm_frequency.EUR >= 3")  # of two customers, the one with more
    contact = await register(env, tags=["vip"])
    placed = datetime.now(UTC) - timedelta(days=1)
    await env.order(contact, placed)
    other = await register(env)
    await env.order(other, placed - timedelta(days=3))
    await env.order(other, placed - timedelta(days=2))
    await env.settle()
    assert await member(env, contact, seg.segment_id)
    # A re-score in the log: the rebuild re-scores at the same place and finds the same.
    assert await RfmRescoreScheduler(env.store, timedelta(hours=1), clock=env.clock).tick()
    await env.settle()
    assert await member(env, other, best.segment_id)
    before, head, due = await snapshot(env), await env.store.head_position(), await timers(env)
    assert (seg.segment_id, contact, placed + timedelta(days=30)) in due

    engine = next(r.projection for r in env.served.runners if r.name == "segmentation-engine")
    await rebuild(env.store, engine)

    # No event written by the rebuild; contacts records its reads of personal facts.
    written = await read_everything(env.store)
    assert [e for e in written if e.position > head and not e.stream.startswith(CATEGORY)] == []
    assert await snapshot(env) == before
    assert await timers(env) == due
