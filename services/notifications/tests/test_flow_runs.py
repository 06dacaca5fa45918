"""Flow runs, pure (domain/flows/run.py): the seeds' journeys walked step by step through their
timers, events and answers; exit events; stale timers; local times across DST; re-entry; and
for random flows, a walk always stops waiting, asking or ended, each effect's request id used
once in a run's life."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.notifications.domain.flows import definition as fd
from services.notifications.domain.flows import run as r
from services.notifications.domain.flows.check import checked
from services.notifications.tests.test_flow_definitions import _flow, graphs, json_form

EXAMPLES = Path(__file__).parents[1] / "examples" / "flows"
NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
PARIS = ZoneInfo("Europe/Paris")
TRIGGER = {"event_type": "crm.orders.v1.CartAbandoned", "event_id": "e-1", "cart_id": "c-1"}


def example(name: str) -> fd.Flow:
    flow, problems = checked(json_form((EXAMPLES / f"{name}.yaml").read_text()))
    assert problems == []
    return flow


class Driver:
    """A run as the engine would keep it: its events folded, its effects collected."""

    def __init__(self, flow: fd.Flow, trigger: dict[str, Any] = TRIGGER) -> None:
        self.flow, self.events = flow, list[r.Event]()
        self.effects: list[r.Effect] = []
        self.take(r.start("run-1", flow, "flow-1", 1, "ada", trigger, NOW, PARIS))

    def take(self, out: tuple[list[r.Event], list[r.Effect]]) -> list[str]:
        events, effects = out
        self.events += events
        self.effects += effects
        return [t.removeprefix(r.PREFIX) for t, _ in events]

    @property
    def run(self) -> r.Run:
        run = r.fold(self.events)
        assert run is not None
        return run

    def sends(self) -> list[str]:
        return [e.template_key for e in self.effects if isinstance(e, r.Send)]


def test_the_abandoned_cart_follow_up_reminds_twice_through_its_timers() -> None:
    d = Driver(example("abandoned-cart"))
    assert d.run.status == r.WAITING_STATE and d.run.wake_at == NOW + timedelta(hours=1)
    assert d.take(r.timer_due(d.run, d.flow, NOW + timedelta(minutes=59), PARIS)) == []  # stale
    later = NOW + timedelta(hours=1)
    assert d.take(r.timer_due(d.run, d.flow, later, PARIS)) == [
        "FlowRunStepEntered",
        "FlowRunStepEntered",
        "FlowRunWaiting",
    ]
    assert d.sends() == ["cart-reminder"] and d.run.wake_at == later + timedelta(hours=23)
    d.take(r.timer_due(d.run, d.flow, later + timedelta(hours=23), PARIS))
    assert d.sends() == ["cart-reminder", "cart-incentive"]
    assert (d.run.status, d.run.ended) == (r.DONE, r.COMPLETED)
    assert [e.kind for e in d.effects if isinstance(e, r.Send)] == [fd.MARKETING] * 2


def test_an_exit_event_ends_a_waiting_run_and_its_timer_then_does_nothing() -> None:
    d = Driver(example("abandoned-cart"))
    d.take(r.event_seen(d.run, d.flow, "crm.orders.v1.OrderPlaced", {}, "e-2", NOW, PARIS))
    assert (d.run.status, d.run.ended) == (r.DONE, r.EXITED)
    assert d.events[-1][1]["event_id"] == "e-2"
    assert d.take(r.timer_due(d.run, d.flow, NOW + timedelta(days=2), PARIS)) == []
    assert d.sends() == []


def test_the_welcome_series_waits_for_an_order_or_sends_tips() -> None:
    ordered = Driver(example("welcome-series"))
    assert (
        ordered.sends() == ["welcome-email"]
        and ordered.run.waiting_for == "crm.orders.v1.OrderPlaced"
    )
    other = r.event_seen(
        ordered.run, ordered.flow, "crm.orders.v1.CartAbandoned", {}, "x", NOW, PARIS
    )
    assert other == ([], [])
    ordered.take(
        r.event_seen(ordered.run, ordered.flow, "crm.orders.v1.OrderPlaced", {}, "e", NOW, PARIS)
    )
    assert ordered.sends() == ["welcome-email"] and ordered.run.status == r.DONE
    waited = Driver(example("welcome-series"))
    waited.take(r.timer_due(waited.run, waited.flow, NOW + timedelta(days=3), PARIS))
    assert waited.sends() == ["welcome-email", "tips-email"] and waited.run.status == r.DONE


def _flow_of(steps: list[dict[str, Any]], **extra: Any) -> fd.Flow:
    flow, problems = checked(
        {
            "key": "f",
            "name": "F",
            "trigger": {"event": {"event_type": "crm.orders.v1.CartAbandoned"}},
            "steps": steps,
            **extra,
        }
    )
    assert problems == []
    return flow


def test_conditions_ask_segmentation_or_read_the_trigger() -> None:
    flow = _flow_of(
        [
            {"id": "vip", "condition": {"in_segment": "vip", "if_true": "a", "if_false": "b"}},
            {"id": "a", "send": {"template_key": "vip-offer"}},
            {
                "id": "b",
                "condition": {
                    "trigger_field": {"field": "cart_id", "value": "c-1"},
                    "if_true": "c",
                    "if_false": "a",
                },
            },
            {"id": "c", "tag": {"add": ["cart-c1"]}},
        ]
    )
    d = Driver(flow)
    assert d.run.status == r.ASKING and d.effects == [r.Ask("vip", "in_segment", "vip")]
    assert r.answered(d.run, flow, "other-step", True, NOW, PARIS) == ([], [])
    d.take(r.answered(d.run, flow, "vip", False, NOW, PARIS))
    assert [type(e).__name__ for e in d.effects] == ["Ask", "Tag"] and d.run.status == r.DONE
    assert r.answered(d.run, flow, "vip", True, NOW, PARIS) == ([], [])  # asked once


def test_a_wait_takes_its_event_branch_only_for_a_matching_event() -> None:
    flow = _flow_of(
        [
            {
                "id": "w",
                "wait_for_event": {
                    "event_type": "crm.orders.v1.OrderPlaced",
                    "filter": {"currency": "EUR"},
                    "timeout": "60s",
                    "on_event": "yes",
                    "on_timeout": "no",
                },
            },
            {"id": "yes", "send": {"template_key": "thanks"}},
            {"id": "no", "exit": {}},
        ]
    )
    d = Driver(flow)
    event = "crm.orders.v1.OrderPlaced"
    assert r.event_seen(d.run, flow, event, {"currency": "USD"}, "e", NOW, PARIS) == ([], [])
    d.take(r.event_seen(d.run, flow, event, {"currency": "EUR"}, "e", NOW, PARIS))
    assert d.sends() == ["thanks"]


def test_request_ids_differ_per_visit_so_a_loop_sends_each_time() -> None:
    flow = _flow_of(
        [
            {"id": "send", "send": {"template_key": "t"}, "next": "pause"},
            {"id": "pause", "delay": {"duration": "3600s"}, "next": "send"},
        ]
    )
    d = Driver(flow)
    for hours in range(1, 4):
        d.take(r.timer_due(d.run, flow, NOW + timedelta(hours=hours), PARIS))
    ids = [e.request_id for e in d.effects if isinstance(e, r.Send)]
    assert len(ids) == 4 == len(set(ids))


@pytest.mark.parametrize(
    "now,at,weekday,expected",
    [
        # before 10:00 Paris (CET, +1): today; after: tomorrow
        (
            datetime(2026, 11, 27, 8, 0, tzinfo=UTC),
            time(10),
            None,
            datetime(2026, 11, 27, 9, 0, tzinfo=UTC),
        ),
        (
            datetime(2026, 11, 27, 9, 0, tzinfo=UTC),
            time(10),
            None,
            datetime(2026, 11, 28, 9, 0, tzinfo=UTC),
        ),
        # 2026-03-29: 02:00 → 03:00 in Paris; 02:30 does not exist: read with the offset before
        (
            datetime(2026, 3, 28, 23, 0, tzinfo=UTC),
            time(2, 30),
            None,
            datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
        ),
        # the day after the jump, CEST (+2)
        (
            datetime(2026, 3, 29, 12, 0, tzinfo=UTC),
            time(10),
            None,
            datetime(2026, 3, 30, 8, 0, tzinfo=UTC),
        ),
        # 2026-10-25: 03:00 → 02:00; 02:30 happens twice: the first
        (
            datetime(2026, 10, 24, 23, 0, tzinfo=UTC),
            time(2, 30),
            None,
            datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
        ),
        # the next Monday at 09:00 (2026-11-27 is a Friday)
        (
            datetime(2026, 11, 27, 8, 0, tzinfo=UTC),
            time(9),
            0,
            datetime(2026, 11, 30, 8, 0, tzinfo=UTC),
        ),
        # a Friday already past 09:00 local, asking for Friday: next week's
        (
            datetime(2026, 11, 27, 8, 30, tzinfo=UTC),
            time(9),
            4,
            datetime(2026, 12, 4, 8, 0, tzinfo=UTC),
        ),
    ],
)
def test_local_times_and_weekdays(
    now: datetime, at: time, weekday: int | None, expected: datetime
) -> None:
    assert r.next_local(now, PARIS, at, weekday) == expected


def test_re_entry() -> None:
    start, day = NOW - timedelta(days=10), timedelta(days=1)
    assert r.may_start([], fd.NEVER, 0, NOW)
    assert not r.may_start([(start, True)], fd.NEVER, 0, NOW)
    assert not r.may_start([(start, False)], fd.AFTER_EXIT, 0, NOW)
    assert r.may_start([(start, True)], fd.AFTER_EXIT, 0, NOW)
    assert r.may_start([(start, True)], fd.AFTER_DAYS, 10, NOW)
    assert not r.may_start([(start, True), (NOW - day, True)], fd.AFTER_DAYS, 10, NOW)


@given(graphs, st.lists(st.sampled_from(["timer", "event", "yes", "no"]), max_size=12))
def test_any_saved_flow_walks_to_a_stop_and_uses_each_request_id_once(
    graph: list[tuple[bool, list[int]]], inputs: list[str]
) -> None:
    flow, problems = checked(_flow(graph))
    if problems:  # flows that would not be saved are not run
        return
    d = Driver(flow)
    at = NOW
    for kind in inputs:
        assert d.run.status in (r.WAITING_STATE, r.ASKING, r.DONE)
        at += timedelta(hours=1)
        if kind == "timer":
            d.take(r.timer_due(d.run, flow, at, PARIS))
        elif kind == "event":
            d.take(r.event_seen(d.run, flow, "crm.orders.v1.OrderPlaced", {}, "e", at, PARIS))
        else:
            d.take(r.answered(d.run, flow, d.run.step, kind == "yes", at, PARIS))
    assert d.run.status in (r.WAITING_STATE, r.ASKING, r.DONE)
    keys = [e.request_id for e in d.effects if not isinstance(e, r.Ask)]
    assert len(keys) == len(set(keys))
    assert d.run.ended != r.TIMED_OUT
