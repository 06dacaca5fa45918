"""A flow run, pure: what happens when a run starts, when its timer is due, when an event of its
contact arrives, and when a condition it asked about is answered. Each returns the run's new
events and the effects the engine must carry out (messages, tags, webhooks, questions to
segmentation); the engine appends the events and carries out the effects with request ids
derived from the run, the step and the visit, so that doing one again after a crash does it
once. A run follows the flow version it started on, whatever is saved later.

A walk goes from step to step at once until the run must wait (a delay, a wait for an event),
must ask (a segment or rule condition), or ends (an exit step, a step with no next). Loops that
never wait are refused when a flow is saved (check.py), so a walk is bounded; MAX_WALK guards it
anyway."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, NamedTuple

from services.notifications.domain.flows import definition as fd
from services.notifications.domain.flows.definition import Flow, Step
from services.notifications.domain.flows.trigger import ends_runs, matches
from shared.domain.timestamps import timestamp_text

PREFIX = "crm.notifications.v1."
STARTED = PREFIX + "FlowRunStarted"
STEP = PREFIX + "FlowRunStepEntered"
WAITING = PREFIX + "FlowRunWaiting"
ASKED = PREFIX + "FlowRunAsked"
ENDED = PREFIX + "FlowRunEnded"
RUNNING, WAITING_STATE, ASKING, DONE = "running", "waiting", "asking", "ended"
COMPLETED, EXITED, TIMED_OUT, ARCHIVED = "completed", "exit_event", "walk_limit", "flow_archived"
MAX_WALK = 500

Event = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class Send:
    step: str
    template_key: str
    kind: str
    request_id: str


@dataclass(frozen=True)
class Tag:
    step: str
    add: tuple[str, ...]
    remove: tuple[str, ...]
    request_id: str


@dataclass(frozen=True)
class CallWebhook:
    step: str
    url: str
    template_key: str
    request_id: str


@dataclass(frozen=True)
class Ask:
    """A condition segmentation answers (in_segment, rule): then ``answered``."""

    step: str
    test: str
    argument: str


Effect = Send | Tag | CallWebhook | Ask


class Run(NamedTuple):
    """A run as its events leave it (a tuple: folds build many, and a tuple is cheap)."""

    run_id: str
    flow_id: str
    flow_version: int
    contact_id: str
    trigger: Mapping[str, Any]  # event_type, event_id, and the event's top-level fields
    status: str = RUNNING
    step: str = ""
    visits: int = 0  # steps entered so far: makes each visit's request ids distinct
    wake_at: datetime | None = None
    waiting_for: str = ""  # the event type a wait step waits for
    ended: str = ""  # why it ended


def stream_of(run_id: str) -> str:
    return f"flowrun-{run_id}"


def _iso(at: datetime) -> str:
    return timestamp_text(at)


def next_local(now: datetime, tz: tzinfo, at: time | None, weekday: int | None) -> datetime:
    """The first instant after ``now`` when the contact's clock reads ``at`` (00:00 when
    unset), on ``weekday`` when given (0 = Monday). A wall time a DST jump skips is read with
    the offset before the jump; one it repeats is its first occurrence."""
    wall = at or time(0, 0)
    today: date = now.astimezone(tz).date()
    for k in range(9):
        day = today + timedelta(days=k)
        if weekday is not None and day.weekday() != weekday:
            continue
        instant = datetime.combine(day, wall, tzinfo=tz).astimezone(UTC)
        if instant > now:
            return instant
    raise AssertionError("a wall time recurs within 8 days")


def start(
    run_id: str,
    flow: Flow,
    flow_id: str,
    version: int,
    contact_id: str,
    trigger: Mapping[str, Any],
    now: datetime,
    tz: tzinfo,
    key: str = "",
) -> tuple[list[Event], list[Effect]]:
    """A new run: FlowRunStarted, then a walk from the first step. ``key``: what the run is
    about (trigger.py), one run per (flow, contact, key)."""
    started = {
        "run_id": run_id,
        "flow_id": flow_id,
        "flow_version": version,
        "contact_id": contact_id,
        "trigger_key": key or contact_id,
        "trigger": dict(trigger),
        "start_time": _iso(now),
    }
    run = evolve(None, STARTED, started)
    events, effects = walk(run, flow, flow.steps[0].id, now, tz)
    return [(STARTED, started), *events], effects


def walk(
    run: Run, flow: Flow, first: str, now: datetime, tz: tzinfo
) -> tuple[list[Event], list[Effect]]:
    """From step ``first`` until the run waits, asks or ends."""
    steps = {s.id: s for s in flow.steps}
    events: list[Event] = []
    effects: list[Effect] = []
    current: str = first
    for _ in range(MAX_WALK):
        step = steps[current]
        entered = {"run_id": run.run_id, "step": step.id, "visit": run.visits + 1}
        events.append((STEP, entered))
        run = evolve(run, STEP, entered)
        key = f"{run.run_id}:{step.id}:{run.visits}"
        a = step.action
        if isinstance(a, fd.Delay | fd.WaitForEvent):
            until = _until(a, now, tz)
            waiting = {"run_id": run.run_id, "step": step.id, "until_time": _iso(until)}
            if isinstance(a, fd.WaitForEvent):
                waiting["event_type"] = a.event_type
            return [*events, (WAITING, waiting)], effects
        if isinstance(a, fd.Condition) and a.test in ("in_segment", "rule"):
            asked = {"run_id": run.run_id, "step": step.id, "test": a.test}
            return [*events, (ASKED, asked)], [*effects, Ask(step.id, a.test, a.argument)]
        if isinstance(a, fd.Condition):  # trigger_field: answered from the trigger's data
            holds = str(run.trigger.get(a.argument, "")) == a.value
            nxt = a.if_true if holds else a.if_false
        elif isinstance(a, fd.Send):
            effects.append(Send(step.id, a.template_key, a.kind, key))
            nxt = step.next
        elif isinstance(a, fd.Tag):
            effects.append(Tag(step.id, a.add, a.remove, key))
            nxt = step.next
        elif isinstance(a, fd.Webhook):
            effects.append(CallWebhook(step.id, a.url, a.template_key, key))
            nxt = step.next
        else:  # exit
            nxt = ""
        if not nxt:
            return [*events, (ENDED, {"run_id": run.run_id, "reason": COMPLETED})], effects
        current = nxt
    return [*events, (ENDED, {"run_id": run.run_id, "reason": TIMED_OUT})], effects


def _until(a: fd.Delay | fd.WaitForEvent, now: datetime, tz: tzinfo) -> datetime:
    if isinstance(a, fd.WaitForEvent):
        assert a.timeout is not None  # checked on save
        return now + a.timeout
    if a.duration is not None:
        return now + a.duration
    return next_local(now, tz, a.until_local_time, a.until_weekday)


def _step(flow: Flow, step_id: str) -> Step:
    return next(s for s in flow.steps if s.id == step_id)


def timer_due(run: Run, flow: Flow, now: datetime, tz: tzinfo) -> tuple[list[Event], list[Effect]]:
    """The run's wait is over: a delay goes on to its next step, a wait for an event takes its
    timeout branch. Nothing when the run is not waiting or not yet due (a stale timer)."""
    if run.status != WAITING_STATE or run.wake_at is None or run.wake_at > now:
        return [], []
    step = _step(flow, run.step)
    a = step.action
    nxt = a.on_timeout if isinstance(a, fd.WaitForEvent) else step.next
    if not nxt:
        return [(ENDED, {"run_id": run.run_id, "reason": COMPLETED})], []
    return walk(run, flow, nxt, now, tz)


def event_seen(
    run: Run,
    flow: Flow,
    event_type: str,
    data: Mapping[str, Any],
    event_id: str,
    now: datetime,
    tz: tzinfo,
) -> tuple[list[Event], list[Effect]]:
    """An event of the run's contact: an exit event ends the run (so do a withdrawn consent and
    an erasure, for a flow that sends marketing); the event a wait step waits for (its filter
    matching) takes the wait's event branch; anything else changes nothing."""
    if run.status == DONE:
        return [], []
    if ends_runs(flow, event_type):
        ended = {"run_id": run.run_id, "reason": EXITED, "event_type": event_type}
        return [(ENDED, {**ended, "event_id": event_id})], []
    if run.status != WAITING_STATE or run.waiting_for != event_type:
        return [], []
    a = _step(flow, run.step).action
    assert isinstance(a, fd.WaitForEvent)
    if not matches(a.filter, data):
        return [], []
    return walk(run, flow, a.on_event, now, tz)


def flow_archived(run: Run) -> list[Event]:
    """The run's flow was archived: the run ends where it is (nothing more is sent)."""
    if run.status == DONE:
        return []
    return [(ENDED, {"run_id": run.run_id, "reason": ARCHIVED})]


def answered(
    run: Run, flow: Flow, step_id: str, holds: bool, now: datetime, tz: tzinfo
) -> tuple[list[Event], list[Effect]]:
    """Segmentation answered the condition the run asked at ``step_id``."""
    if run.status != ASKING or run.step != step_id:
        return [], []
    a = _step(flow, step_id).action
    assert isinstance(a, fd.Condition)
    return walk(run, flow, a.if_true if holds else a.if_false, now, tz)


def may_start(previous: list[tuple[datetime, bool]], policy: str, days: int, now: datetime) -> bool:
    """Whether a contact may start the flow (for one trigger key) again, given its earlier runs
    there: (start time, ended) each. never: no earlier run; after_exit: every earlier run has
    ended; after_days: that, and the latest started ``days`` ago or more."""
    if not previous:
        return True
    if policy == fd.NEVER or not all(ended for _, ended in previous):
        return False
    if policy == fd.AFTER_DAYS:
        return now - max(at for at, _ in previous) >= timedelta(days=days)
    return True


def evolve(run: Run | None, type_: str, data: Mapping[str, Any]) -> Run:
    if type_ == STARTED:
        return Run(
            run_id=data["run_id"],
            flow_id=data["flow_id"],
            flow_version=int(data["flow_version"]),
            contact_id=data["contact_id"],
            trigger=data.get("trigger", {}),
        )
    assert run is not None, f"{type_} before FlowRunStarted"
    # Built field by field rather than with _replace: a dry run folds millions of these, and
    # _replace costs several times a plain construction.
    r = run
    if type_ == STEP:
        step, visits = data["step"], int(data["visit"])
        return Run(r[0], r[1], r[2], r[3], r[4], RUNNING, step, visits, None, "", r[10])
    if type_ == WAITING:
        until = datetime.fromisoformat(data["until_time"])
        waits = data.get("event_type", "")
        return Run(r[0], r[1], r[2], r[3], r[4], WAITING_STATE, r[6], r[7], until, waits, r[10])
    if type_ == ASKED:
        return Run(r[0], r[1], r[2], r[3], r[4], ASKING, r[6], r[7], r[8], r[9], r[10])
    if type_ == ENDED:
        reason = data["reason"]
        return Run(r[0], r[1], r[2], r[3], r[4], DONE, r[6], r[7], None, "", reason)
    return run


def fold(events: list[Event]) -> Run | None:
    run = None
    for type_, data in events:
        run = evolve(run, type_, data)
    return run
