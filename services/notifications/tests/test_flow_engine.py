"""The flow engine on a real store: published events start runs of the flows they trigger and
advance the contact's open runs; timers in the runs' rows fire once; effects are written with
the runs' events and carried out through SendMessage with the run's origin; exit events end
runs; a rebuild folds the same rows from the log and writes no effect."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from services.notifications.adapters import flow_run_tables as t
from services.notifications.adapters.flow_effects_table import PostgresEffects
from services.notifications.adapters.flow_engine import FlowEngine
from services.notifications.application.flow_effects import FlowEffects
from services.notifications.application.flows import FlowCommands
from services.notifications.application.sending import SendRequest
from services.notifications.domain import decision as d
from services.notifications.domain.flows import run as runs
from services.notifications.tests.flow_env import Env
from services.notifications.tests.test_flow_definitions import EXAMPLES, json_form
from shared.domain.errors import Precondition
from shared.grpckit.errors import Unavailable
from shared.projections.runner import ProjectionRunner

ORDERS = "crm.orders.v1."
CONSENT = "crm.contacts.v1.ConsentGranted"
CONTACTS = "crm.contacts.v1.Contact"


@pytest.fixture
def env(flow_env: Env) -> Env:
    return flow_env


async def test_an_abandoned_cart_reminds_after_an_hour_and_an_order_ends_the_run(env: Env) -> None:
    flow_id = await env.flow("abandoned-cart")
    cart = str(uuid.uuid4())
    abandoned = await env.publish(f"cart-{cart}", ORDERS + "CartAbandoned", cart_id=cart)
    [row] = await env.runs()
    run = row.run
    assert (run.flow_id, run.flow_version, run.contact_id) == (flow_id, 1, env.contact)
    assert (run.status, run.step, row.trigger_key) == (runs.WAITING_STATE, "wait-an-hour", cart)
    assert run.wake_at == abandoned + timedelta(hours=1)
    events = await env.store.read_stream(runs.stream_of(run.run_id))
    assert [e.type for e in events] == [runs.STARTED, runs.STEP, runs.WAITING]
    cart_event = (await env.store.read_stream(f"cart-{cart}"))[0]
    assert {e.metadata["causation_id"] for e in events} == {str(cart_event.event_id)}

    assert await env.timers(abandoned + timedelta(minutes=59)).tick() == 0  # not yet
    assert await env.timers(run.wake_at).tick() == 1
    assert await env.timers(run.wake_at).tick() == 0  # once
    [row] = await env.runs()
    assert (row.run.step, row.run.wake_at) == ("wait-a-day", abandoned + timedelta(hours=24))
    assert await env.effects.tick() == 1
    [request] = env.sent.requests
    assert (request.template_key, request.contact_id, request.cart_id) == (
        "cart-reminder",
        env.contact,
        cart,
    )
    assert request.request_id == f"{run.run_id}:reminder:2"
    assert request.origin == d.Origin(
        d.FLOW, flow_id=flow_id, flow_version=1, step_id="reminder", run_id=run.run_id
    )
    assert await env.effects.tick() == 0  # done, deleted

    order = str(uuid.uuid4())
    await env.publish(f"order-{order}", ORDERS + "OrderPlaced", order_id=order, cart_id=cart)
    [row] = await env.runs()
    assert (row.run.status, row.run.ended, row.run.wake_at) == (runs.DONE, runs.EXITED, None)
    assert await env.timers(abandoned + timedelta(days=2)).tick() == 0
    assert await env.effects.tick() == 0 and len(env.sent.requests) == 1


async def test_one_run_per_cart_and_re_entry_after_exit(env: Env) -> None:
    await env.flow("abandoned-cart")
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    await env.publish(f"cart-{first}", ORDERS + "CartAbandoned", cart_id=first)
    await env.publish(f"cart-{first}", ORDERS + "CartAbandoned", cart_id=first)  # open: no
    await env.publish(f"cart-{second}", ORDERS + "CartAbandoned", cart_id=second)
    assert sorted(r.trigger_key for r in await env.runs()) == sorted([first, second])
    await env.publish(f"cart-{first}", ORDERS + "CartRecovered", cart_id=first, how="ordered")
    assert {r.run.status for r in await env.runs()} == {runs.DONE}  # ends every run
    await env.publish(f"cart-{first}", ORDERS + "CartAbandoned", cart_id=first)  # after exit
    assert len(await env.runs()) == 3


async def test_welcome_series_takes_the_order_branch_or_the_timeout(env: Env) -> None:
    await env.flow("welcome-series")
    granted = await env.publish(
        f"consent-{env.contact}", "crm.contacts.v1.ConsentGranted", channel="sms"
    )
    assert await env.runs() == []  # the filter wants email
    granted = await env.publish(
        f"consent-{env.contact}", "crm.contacts.v1.ConsentGranted", channel="email"
    )
    [row] = await env.runs()
    assert (row.run.step, row.run.waiting_for) == ("wait-for-order", ORDERS + "OrderPlaced")
    assert await env.effects.tick() == 1
    assert [r.template_key for r in env.sent.requests] == ["welcome-email"]
    # the timeout: tips, then the exit step
    assert await env.timers(granted + timedelta(days=3)).tick() == 1
    [row] = await env.runs()
    assert (row.run.status, row.run.ended) == (runs.DONE, runs.COMPLETED)
    assert await env.effects.tick() == 1
    assert [r.template_key for r in env.sent.requests] == ["welcome-email", "tips-email"]


async def test_an_order_within_the_wait_takes_the_event_branch(env: Env) -> None:
    await env.flow("welcome-series")
    await env.publish(f"consent-{env.contact}", "crm.contacts.v1.ConsentGranted", channel="email")
    order = str(uuid.uuid4())
    await env.publish(f"order-{order}", ORDERS + "OrderPlaced", order_id=order)
    [row] = await env.runs()
    assert (row.run.status, row.run.step) == (runs.DONE, "done")
    assert await env.effects.tick() == 1  # the welcome only
    assert [r.template_key for r in env.sent.requests] == ["welcome-email"]


async def test_a_paused_flow_starts_nothing_and_a_revision_leaves_open_runs_on_theirs(
    env: Env,
) -> None:
    from services.notifications.domain.flows import flow as flows

    flow_id = await env.flow("abandoned-cart")
    commands = FlowCommands(env.store)
    await commands.change(flow_id, flows.decide_pause)
    await env.publish(f"cart-{uuid.uuid4()}", ORDERS + "CartAbandoned", cart_id="c-paused")
    assert await env.runs() == []
    await commands.change(flow_id, flows.decide_resume)
    cart = str(uuid.uuid4())
    await env.publish(f"cart-{cart}", ORDERS + "CartAbandoned", cart_id=cart)
    definition = json_form((EXAMPLES[0].parent / "abandoned-cart.yaml").read_text())
    await commands.update({**definition, "name": "Abandoned cart, v2"})
    await env.runner.catch_up()
    [row] = await env.runs()
    assert row.run.flow_version == 1  # started on 1, stays on 1


async def test_a_rebuild_folds_the_same_rows_and_writes_no_effect(env: Env) -> None:
    await env.flow("abandoned-cart")
    cart = str(uuid.uuid4())
    abandoned = await env.publish(f"cart-{cart}", ORDERS + "CartAbandoned", cart_id=cart)
    await env.timers(abandoned + timedelta(hours=1)).tick()
    live = await env.runs()
    effects = await env.store.pool.fetchval(f"SELECT count(*) FROM {t.EFFECTS}")
    rebuilt = ProjectionRunner(
        env.store, FlowEngine(env.store), schema="flowruns_rebuilt", replay=True, name="rb"
    )
    await rebuilt.catch_up()
    rows = await env.store.pool.fetch("SELECT * FROM flowruns_rebuilt.runs ORDER BY start_time")
    assert [t.run_of(r) for r in rows] == live
    assert await env.store.pool.fetchval(f"SELECT count(*) FROM {t.EFFECTS}") == effects
    assert len(await env.store.read_stream(runs.stream_of(live[0].run.run_id))) == 6


VIP = {
    "key": "vip-thanks",
    "name": "VIP thanks",
    "trigger": {"event": {"event_type": ORDERS + "OrderPlaced"}},
    "steps": [
        {"id": "check", "condition": {"in_segment": "vip", "if_true": "thank", "if_false": "done"}},
        {"id": "thank", "send": {"template_key": "vip-thanks"}, "next": "tag"},
        {"id": "tag", "tag": {"add": ["thanked"], "remove": ["new"]}, "next": "done"},
        {"id": "done", "exit": {}},
    ],
    "re_entry": {"policy": "RE_ENTRY_POLICY_AFTER_EXIT"},
}
SEGMENTS = "crm.segmentation.v1."


async def test_a_segment_condition_is_answered_as_of_the_event(env: Env) -> None:
    await FlowCommands(env.store).create(VIP)
    first = str(uuid.uuid4())
    await env.publish(f"order-{first}", ORDERS + "OrderPlaced", order_id=first)
    assert await env.effects.tick() == 0  # not a member: straight to the exit
    membership = f"segmentmembership-{env.contact}"
    await env.publish(membership, SEGMENTS + "ContactEnteredSegment", segment_key="vip")
    second = str(uuid.uuid4())
    await env.publish(f"order-{second}", ORDERS + "OrderPlaced", order_id=second)
    assert await env.effects.tick() == 2
    [request] = env.sent.requests
    assert (request.template_key, request.order_id) == ("vip-thanks", second)
    [(contact, add, remove, _)] = env.sent.tags
    assert (contact, add, remove) == (env.contact, ["thanked"], ["new"])
    await env.publish(membership, SEGMENTS + "ContactExitedSegment", segment_key="vip")
    third = str(uuid.uuid4())
    await env.publish(f"order-{third}", ORDERS + "OrderPlaced", order_id=third)
    assert await env.effects.tick() == 0
    ended = [r.run for r in await env.runs()]
    assert [(r.status, r.step) for r in ended] == [(runs.DONE, "done")] * 3


class Flaky:
    def __init__(self, error: Exception) -> None:
        self.error, self.calls = error, 0

    async def send(self, request: SendRequest, meta: Mapping[str, Any] = {}) -> None:
        self.calls += 1
        if self.calls == 1:
            raise self.error

    async def tag(self, contact_id: str, add: Any, remove: Any, request_id: str) -> None:
        raise AssertionError("no tag step here")


async def test_an_effect_waits_while_its_upstream_is_away_and_a_refusal_is_kept(env: Env) -> None:
    await env.flow("welcome-series")
    sender = Flaky(Unavailable("CONTACTS_UNAVAILABLE", "away"))
    table = PostgresEffects(env.store)
    effects = FlowEffects(table, sender, sender, env.rules, clock=lambda: now)
    await env.publish(f"consent-{env.contact}", CONSENT, channel="email")
    now = datetime.now(UTC) + timedelta(seconds=1)
    assert await effects.tick() == 1 and sender.calls == 1
    assert await effects.tick() == 0  # backing off
    now += timedelta(seconds=6)
    assert await effects.tick() == 1 and sender.calls == 2
    assert await effects.tick() == 0  # done: deleted

    refusing = Flaky(Precondition("TEMPLATE_ARCHIVED", "template welcome-email is archived"))
    env.contact = str(uuid.uuid4())
    await env.publish(f"consent-{env.contact}", CONSENT, channel="email")
    refused = FlowEffects(
        table, refusing, refusing, env.rules, clock=lambda: now + timedelta(days=1)
    )
    assert await refused.tick() == 1
    assert await refused.tick() == 0 and refusing.calls == 1  # kept, never tried again
    errors = await env.store.pool.fetch(f"SELECT error FROM {t.EFFECTS} WHERE error <> ''")
    assert [r["error"] for r in errors] == ["TEMPLATE_ARCHIVED: template welcome-email is archived"]


async def test_a_paused_flows_runs_wait_and_archiving_ends_them(env: Env) -> None:
    from services.notifications.domain.flows import flow as flows

    flow_id = await env.flow("abandoned-cart")
    commands = FlowCommands(env.store)
    cart = str(uuid.uuid4())
    abandoned = await env.publish(f"cart-{cart}", ORDERS + "CartAbandoned", cart_id=cart)
    await commands.change(flow_id, flows.decide_pause)
    await env.runner.catch_up()
    due = abandoned + timedelta(hours=2)
    assert await env.timers(due).tick() == 0  # paused: the delay's end waits
    await commands.change(flow_id, flows.decide_resume)
    await env.runner.catch_up()
    assert await env.timers(due).tick() == 1  # resumed: it fires (late)
    [row] = await env.runs()
    assert row.run.step == "wait-a-day"
    await commands.change(flow_id, flows.decide_archive)
    await env.runner.catch_up()
    [row] = await env.runs()
    assert (row.run.status, row.run.ended, row.run.wake_at) == (runs.DONE, runs.ARCHIVED, None)
    assert await env.timers(abandoned + timedelta(days=3)).tick() == 0


async def test_timers_due_together_fire_in_one_tick_each_in_its_own_contacts_zone(
    env: Env,
) -> None:
    """A tick fires every due run in one batch: each run gets its own events, row and effect,
    and a delay until a local time reads the clock of the run's own contact."""
    await env.flow("review-request")  # a week, then until 10:00 local
    await env.flow("abandoned-cart")  # an hour, then a reminder
    zones = {}
    for name in ("Europe/Berlin", "America/New_York", ""):
        env.contact = str(uuid.uuid4())
        zones[env.contact] = ZoneInfo(name or "UTC")
        if name:
            await env.publish(f"contact-{env.contact}", CONTACTS + "Registered", time_zone=name)
        order, cart = str(uuid.uuid4()), str(uuid.uuid4())
        await env.publish(f"order-{order}", ORDERS + "OrderDelivered", order_id=order)
        await env.publish(f"cart-{cart}", ORDERS + "CartAbandoned", cart_id=cart)
    waiting = {r.run.run_id: r.run for r in await env.runs()}
    assert len(waiting) == 6

    assert await env.timers(max(r.wake_at for r in waiting.values() if r.wake_at)).tick() == 6
    for row in await env.runs():
        before = waiting[row.run.run_id]
        assert row.run.wake_at is not None and before.wake_at is not None
        events = await env.run_events(row.run.run_id)
        if before.trigger.get("order_id"):
            local = row.run.wake_at.astimezone(zones[row.run.contact_id])
            assert (row.run.step, local.time()) == ("morning", time(10, 0))
            assert timedelta(0) < row.run.wake_at - before.wake_at <= timedelta(days=1)
            assert [e[0] for e in events[3:]] == [runs.STEP, runs.WAITING]
        else:
            assert row.run.step == "wait-a-day"
            assert [e[0] for e in events[3:]] == [runs.STEP, runs.STEP, runs.WAITING]
    assert await env.effects.tick() == 3
    reminders = {(r.contact_id, r.request_id) for r in env.sent.requests}
    carts = [r for r in waiting.values() if r.trigger.get("cart_id")]
    assert reminders == {(r.contact_id, f"{r.run_id}:reminder:2") for r in carts}
