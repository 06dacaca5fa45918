"""The checks a flow definition passes before it is saved. Each problem names where it is
(``steps[2].wait_for_event.on_event``) and why, so that INVALID_ARGUMENT can list them all:

- a key, a name, a trigger (an event type of the suite, a segment for segment events; or a date
  attribute and a local time), at least one step;
- step ids well formed and unique; every step has an action; every `next` and branch names a
  step of the flow; condition and wait steps branch (both ways named), the others use `next`,
  exit has none;
- every step reachable from the first;
- no loop a run could go round without waiting: every cycle passes a delay or a wait step;
- each action complete: a positive duration, or a local time / weekday, for a delay; a positive
  timeout for a wait; a template for a send; a tag to add or remove; an http(s) URL
  for a webhook; re-entry days for AFTER_DAYS.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from services.notifications.domain.flows import definition as fd
from services.notifications.domain.flows.definition import Flow, Problem, Step
from shared.domain.errors import quote

KEY = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
STEP_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
EVENT_TYPE = re.compile(r"crm\.[a-z]+\.v[1-9][0-9]*\.[A-Z][A-Za-z0-9]*")
ATTRIBUTE = re.compile(r"[a-z][a-z0-9_]{0,63}")  # as contacts names attributes
SEGMENT_EVENTS = (
    "crm.segmentation.v1.ContactEnteredSegment",
    "crm.segmentation.v1.ContactExitedSegment",
)
MAX_STEPS = 200
LOOP_SHOWN = 8  # steps of a loop an error names


def checked(d: Mapping[str, Any]) -> tuple[Flow, list[Problem]]:
    """The flow in its JSON form and every problem found in it (none: it may be saved)."""
    flow, problems = fd.read(d)
    return flow, problems + problems_of(flow)


def problems_of(flow: Flow) -> list[Problem]:
    found: list[Problem] = []
    if not KEY.fullmatch(flow.key):
        found.append(("key", "FLOW_KEY_INVALID", "lowercase letters, digits, _ . -; 1-64"))
    if not flow.name.strip():
        found.append(("name", "FLOW_NAME_REQUIRED", "a flow needs a name"))
    found += _trigger(flow)
    for i, event_type in enumerate(flow.exit_events):
        if not EVENT_TYPE.fullmatch(event_type):
            found.append((f"exit_events[{i}]", "EVENT_TYPE_INVALID", _type_hint(event_type)))
    if flow.re_entry == fd.AFTER_DAYS and flow.re_entry_days < 1:
        found.append(("re_entry.days", "RE_ENTRY_DAYS_INVALID", "at least 1 day"))
    if not flow.steps:
        return [*found, ("steps", "STEPS_REQUIRED", "a flow needs at least one step")]
    if len(flow.steps) > MAX_STEPS:
        return [*found, ("steps", "TOO_MANY_STEPS", f"at most {MAX_STEPS} steps")]
    found += _steps(flow.steps)
    return found


def _attribute_hint(name: str) -> str:
    return f"{quote(name)} is not a contact attribute name (a-z 0-9 _, a letter first, 1..64)"


def _type_hint(event_type: str) -> str:
    return f"{quote(event_type)} is not an event type (crm.<service>.v1.<Event>)"


def _trigger(flow: Flow) -> list[Problem]:
    t = flow.trigger
    if t is None:
        return [("trigger", "TRIGGER_REQUIRED", "an event or a date trigger")]
    if isinstance(t, fd.EventTrigger):
        if not EVENT_TYPE.fullmatch(t.event_type):
            return [("trigger.event.event_type", "EVENT_TYPE_INVALID", _type_hint(t.event_type))]
        if t.event_type in SEGMENT_EVENTS and not t.segment:
            return [("trigger.event.segment", "SEGMENT_REQUIRED", "which segment's entries")]
        if t.segment and t.event_type not in SEGMENT_EVENTS:
            return [("trigger.event.segment", "SEGMENT_UNUSED", "only for segment events")]
        return []
    found: list[Problem] = []
    if not t.attribute:
        found.append(("trigger.date.attribute", "ATTRIBUTE_REQUIRED", "the date attribute"))
    elif not ATTRIBUTE.fullmatch(t.attribute):
        found.append(("trigger.date.attribute", "ATTRIBUTE_INVALID", _attribute_hint(t.attribute)))
    if t.local_time is None:
        found.append(("trigger.date.local_time", "LOCAL_TIME_REQUIRED", "HH:MM, local"))
    if abs(t.offset_days) > 366:
        found.append(("trigger.date.offset_days", "OFFSET_INVALID", "at most 366 days"))
    return found


def _steps(steps: Sequence[Step]) -> list[Problem]:
    found: list[Problem] = []
    index: dict[str, int] = {}
    for i, s in enumerate(steps):
        if not STEP_ID.fullmatch(s.id):
            found.append((f"steps[{i}].id", "STEP_ID_INVALID", "lowercase letters, digits, _ -"))
        elif s.id in index:
            found.append(
                (f"steps[{i}].id", "STEP_ID_DUPLICATE", f"{s.id!r} is steps[{index[s.id]}]")
            )
        else:
            index[s.id] = i
    for i, s in enumerate(steps):
        found += _action(f"steps[{i}]", s, index)
    if found:  # the graph checks need every step to be named and linked
        return found
    return _unreachable(steps, index) + _busy_loops(steps, index)


def _link(where: str, target: str, index: Mapping[str, int], required: bool) -> list[Problem]:
    if not target:
        return [(where, "STEP_REQUIRED", "name the step to go to")] if required else []
    if target not in index:
        return [(where, "STEP_UNKNOWN", f"no step {quote(target)} in this flow")]
    return []


def _action(where: str, s: Step, index: Mapping[str, int]) -> list[Problem]:
    a = s.action
    if a is None:
        return [(where, "STEP_ACTION_REQUIRED", "delay, wait_for_event, condition, send, ...")]
    branches = isinstance(a, fd.Condition | fd.WaitForEvent)
    if s.next and (branches or isinstance(a, fd.Exit)):
        return [(f"{where}.next", "NEXT_NOT_ALLOWED", "this step branches or ends the run")]
    found = [] if branches else _link(f"{where}.next", s.next, index, required=False)
    if isinstance(a, fd.Delay):
        if a.duration is None and a.until_local_time is None and a.until_weekday is None:
            found.append((f"{where}.delay", "DELAY_REQUIRED", "a duration, a time or a weekday"))
        elif a.duration is not None and (a.until_local_time or a.until_weekday is not None):
            found.append((f"{where}.delay", "DELAY_AMBIGUOUS", "a duration, or a time/weekday"))
        elif a.duration is not None and a.duration <= timedelta(0):
            found.append((f"{where}.delay.duration", "DURATION_INVALID", "more than zero"))
    elif isinstance(a, fd.WaitForEvent):
        w = f"{where}.wait_for_event"
        if not EVENT_TYPE.fullmatch(a.event_type):
            found.append((f"{w}.event_type", "EVENT_TYPE_INVALID", _type_hint(a.event_type)))
        if a.timeout is None or a.timeout <= timedelta(0):
            found.append((f"{w}.timeout", "TIMEOUT_REQUIRED", "how long to wait, more than zero"))
        found += _link(f"{w}.on_event", a.on_event, index, required=True)
        found += _link(f"{w}.on_timeout", a.on_timeout, index, required=True)
    elif isinstance(a, fd.Condition):
        c = f"{where}.condition"
        if not a.test:
            found.append((c, "CONDITION_REQUIRED", "in_segment, rule or trigger_field"))
        elif not a.argument.strip():
            found.append((f"{c}.{a.test}", "CONDITION_REQUIRED", "what to test"))
        found += _link(f"{c}.if_true", a.if_true, index, required=True)
        found += _link(f"{c}.if_false", a.if_false, index, required=True)
    elif isinstance(a, fd.Send):
        if not a.template_key:
            found.append((f"{where}.send.template_key", "TEMPLATE_REQUIRED", "which template"))
    elif isinstance(a, fd.Tag):
        if (not a.add and not a.remove) or not all(t.strip() for t in (*a.add, *a.remove)):
            found.append((f"{where}.tag", "TAG_REQUIRED", "tags to add or remove, not blank"))
    elif isinstance(a, fd.Webhook) and not re.fullmatch(r"https?://[^\s/]+\S*", a.url):
        found.append((f"{where}.webhook.url", "URL_INVALID", "an http(s) URL"))
    return found


def _unreachable(steps: Sequence[Step], index: Mapping[str, int]) -> list[Problem]:
    seen, todo = {steps[0].id}, [steps[0].id]
    while todo:
        for nxt in steps[index[todo.pop()]].successors():
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return [
        (f"steps[{i}]", "STEP_UNREACHABLE", f"no path from {steps[0].id!r} reaches {s.id!r}")
        for i, s in enumerate(steps)
        if s.id not in seen
    ]


def _busy_loops(steps: Sequence[Step], index: Mapping[str, int]) -> list[Problem]:
    """Cycles that pass no waiting step: each reported once, at its first step in the flow."""
    edges = {s.id: () if s.waits else s.successors() for s in steps}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    found: list[Problem] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        path.append(node)
        for nxt in edges[node]:
            if state.get(nxt) == 1:
                loop = path[path.index(nxt) :]
                first = min(loop, key=index.__getitem__)
                shown = [*loop, nxt] if len(loop) <= LOOP_SHOWN else [*loop[:LOOP_SHOWN], "…"]
                cycle = " -> ".join(shown)
                found.append(
                    (f"steps[{index[first]}]", "LOOP_WITHOUT_DELAY", f"{cycle} never waits")
                )
            elif nxt not in state:
                visit(nxt, path)
        path.pop()
        state[node] = 2

    for s in steps:
        if s.id not in state:
            visit(s.id, [])
    return found
