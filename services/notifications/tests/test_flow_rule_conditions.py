"""A flow's rule condition on a real store: the run asks, the effects worker asks segmentation
(faked here behind its port) and the run goes on from the branch the answer names, its events,
row and new effects written with the ask deleted, exactly once; segmentation away, the ask
waits with backoff; a refused rule is kept; a paused flow's ask waits; a rebuild answers
nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.notifications.adapters import flow_run_tables as t
from services.notifications.adapters.flow_effects_table import PostgresEffects
from services.notifications.adapters.flow_engine import FlowEngine
from services.notifications.application.flow_effects import FlowEffects
from services.notifications.application.flows import FlowCommands
from services.notifications.domain.flows import flow as flows
from services.notifications.domain.flows import run as runs
from services.notifications.tests.flow_env import Env
from shared.domain.errors import Invalid
from shared.projections.runner import ProjectionRunner

ORDERS = "crm.orders.v1."
SEGMENTS = "crm.segmentation.v1."
RULE = "orders_count >= 3"
LOYAL = {
    "key": "loyal-thanks",
    "name": "Loyal thanks",
    "trigger": {"event": {"event_type": ORDERS + "OrderPlaced"}},
    "steps": [
        {"id": "check", "condition": {"rule": RULE, "if_true": "thank", "if_false": "nudge"}},
        {"id": "thank", "send": {"template_key": "loyal-thanks"}, "next": "vip"},
        {"id": "vip", "condition": {"in_segment": "vip", "if_true": "tag", "if_false": "done"}},
        {"id": "tag", "tag": {"add": ["loyal"]}, "next": "done"},
        {"id": "nudge", "send": {"template_key": "come-back"}, "next": "done"},
        {"id": "done", "exit": {}},
    ],
}


@pytest.fixture
def env(flow_env: Env) -> Env:
    return flow_env


async def ordered(env: Env) -> runs.Run:
    """An order of the contact starts a run, which asks at once."""
    order = str(uuid.uuid4())
    await env.publish(f"order-{order}", ORDERS + "OrderPlaced", order_id=order)
    [row] = await env.runs()
    assert (row.run.status, row.run.step) == (runs.ASKING, "check")
    return row.run


def walked(events: list[tuple[str, dict[str, object]]]) -> list[str]:
    return [str(d["step"]) for type_, d in events if type_ == runs.STEP]


async def test_a_rule_that_holds_takes_the_true_branch_once(env: Env) -> None:
    await FlowCommands(env.store).create(LOYAL)
    membership = f"segmentmembership-{env.contact}"
    await env.publish(membership, SEGMENTS + "ContactEnteredSegment", segment_key="vip")
    env.rules.holds[(env.contact, RULE)] = True
    run = await ordered(env)
    table = PostgresEffects(env.store)
    [ask] = await table.due(datetime.now(UTC), 10)
    assert (ask.effect["effect"], ask.effect["argument"]) == ("ask", RULE)

    assert await env.effects.tick() == 1  # the ask: answered, the walk written
    assert env.rules.asked == [(env.contact, RULE)]
    events = await env.run_events(run.run_id)
    # the rule held: thank, then the segment condition answered as the engine does: tag, done
    assert walked(events) == ["check", "thank", "vip", "tag", "done"]
    assert events[-1] == (runs.ENDED, {"run_id": run.run_id, "reason": runs.COMPLETED})
    [row] = await env.runs()
    stored = await env.store.read_stream(runs.stream_of(run.run_id))
    assert (row.run.status, row.version) == (runs.DONE, stored[-1].version)
    assert await env.effects.tick() == 2  # the send and the tag it enqueued
    assert [r.template_key for r in env.sent.requests] == ["loyal-thanks"]
    assert [(c, add) for c, add, _, _ in env.sent.tags] == [(env.contact, ["loyal"])]

    assert await table.answer(ask, True, datetime.now(UTC))  # the same ask again (a retry)
    assert await env.run_events(run.run_id) == events  # nothing written twice
    assert await env.effects.tick() == 0 and env.rules.asked == [(env.contact, RULE)]
    stored = await env.store.read_stream(runs.stream_of(run.run_id))
    answer = [e for e in stored if e.metadata.get("actor") == "notifications-flow-effects"]
    assert len(answer) == len(events) - 3  # after Started, Entered check, Asked
    assert {e.metadata["correlation_id"] for e in answer} == {run.trigger["event_id"]}


async def test_a_rule_that_does_not_hold_takes_the_false_branch(env: Env) -> None:
    await FlowCommands(env.store).create(LOYAL)
    run = await ordered(env)
    assert await env.effects.tick() == 1
    assert walked(await env.run_events(run.run_id)) == ["check", "nudge", "done"]
    assert await env.effects.tick() == 1
    assert [r.template_key for r in env.sent.requests] == ["come-back"]
    assert env.sent.tags == []


async def test_the_ask_waits_with_backoff_while_segmentation_is_away(env: Env) -> None:
    await FlowCommands(env.store).create(LOYAL)
    env.rules.holds[(env.contact, RULE)] = True
    now = datetime.now(UTC) + timedelta(seconds=1)
    effects = FlowEffects(
        PostgresEffects(env.store), env.sent, env.sent, env.rules, clock=lambda: now
    )
    run = await ordered(env)
    env.rules.away = True
    assert await effects.tick() == 1 and len(env.rules.asked) == 1
    assert await effects.tick() == 0  # backing off
    [row] = await env.runs()
    assert row.run.status == runs.ASKING and len(await env.run_events(run.run_id)) == 3
    env.rules.away = False
    now += timedelta(seconds=6)
    assert await effects.tick() == 1 and len(env.rules.asked) == 2
    assert walked(await env.run_events(run.run_id)) == ["check", "thank", "vip", "done"]


async def test_a_refused_rule_is_kept_and_the_run_keeps_asking(env: Env) -> None:
    await FlowCommands(env.store).create(LOYAL)

    class Refusing:
        async def evaluate(self, contact_id: str, rule: str) -> bool:
            raise Invalid([("rule", "UNKNOWN_FIELD", "no field orders_count")])

    effects = FlowEffects(PostgresEffects(env.store), env.sent, env.sent, Refusing())
    run = await ordered(env)
    assert await effects.tick() == 1
    assert await effects.tick() == 0  # kept, never tried again
    errors = await env.store.pool.fetch(f"SELECT error FROM {t.EFFECTS} WHERE error <> ''")
    assert [r["error"] for r in errors] == ["UNKNOWN_FIELD: rule: no field orders_count"]
    assert len(await env.run_events(run.run_id)) == 3


async def test_a_paused_flows_ask_waits_and_a_rebuild_answers_nothing(env: Env) -> None:
    flow_id = (await FlowCommands(env.store).create(LOYAL)).flow_id
    commands = FlowCommands(env.store)
    now = datetime.now(UTC) + timedelta(seconds=1)
    effects = FlowEffects(
        PostgresEffects(env.store), env.sent, env.sent, env.rules, clock=lambda: now
    )
    run = await ordered(env)
    await commands.change(flow_id, flows.decide_pause)
    await env.runner.catch_up()
    assert await effects.tick() == 1 and len(await env.run_events(run.run_id)) == 3
    await commands.change(flow_id, flows.decide_resume)
    await env.runner.catch_up()
    now += timedelta(seconds=6)
    assert await effects.tick() == 1
    assert walked(await env.run_events(run.run_id)) == ["check", "nudge", "done"]

    live = await env.runs()
    effects_before = await env.store.pool.fetchval(f"SELECT count(*) FROM {t.EFFECTS}")
    rebuilt = ProjectionRunner(
        env.store, FlowEngine(env.store), schema="flowruns_rebuilt", replay=True, name="rb"
    )
    await rebuilt.catch_up()
    rows = await env.store.pool.fetch("SELECT * FROM flowruns_rebuilt.runs ORDER BY start_time")
    assert [t.run_of(r) for r in rows] == live
    assert await env.store.pool.fetchval(f"SELECT count(*) FROM {t.EFFECTS}") == effects_before
