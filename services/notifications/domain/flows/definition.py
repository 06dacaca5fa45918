"""A flow definition as the domain reads it: frozen dataclasses built from the flow's JSON form
(the protobuf JSON mapping of crm.notifications.v1.FlowDefinition with its field names, which
the API and the event both hold). Reading never raises: what cannot be read is a problem
(field path, reason, description), reported with the checks of check.py."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time, timedelta
from typing import Any

from shared.domain.errors import quote

Problem = tuple[str, str, str]  # (field path, reason, description)

WEEKDAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
MARKETING, TRANSACTIONAL = "MESSAGE_KIND_MARKETING", "MESSAGE_KIND_TRANSACTIONAL"
NEVER, AFTER_EXIT, AFTER_DAYS = "never", "after_exit", "after_days"


@dataclass(frozen=True)
class EventTrigger:
    event_type: str
    filter: Mapping[str, str] = field(default_factory=dict)
    segment: str = ""
    include_backfill: bool = False


@dataclass(frozen=True)
class DateTrigger:
    attribute: str
    offset_days: int = 0
    local_time: time | None = None
    yearly: bool = False


@dataclass(frozen=True)
class Delay:
    duration: timedelta | None = None
    until_local_time: time | None = None
    until_weekday: int | None = None  # 0 = Monday


@dataclass(frozen=True)
class WaitForEvent:
    event_type: str
    filter: Mapping[str, str] = field(default_factory=dict)
    timeout: timedelta | None = None
    on_event: str = ""
    on_timeout: str = ""


@dataclass(frozen=True)
class Condition:
    test: str  # in_segment | rule | trigger_field | "" (none given)
    argument: str = ""  # the segment key, the rule text, or the trigger field
    value: str = ""  # for trigger_field
    if_true: str = ""
    if_false: str = ""


@dataclass(frozen=True)
class Send:
    template_key: str
    kind: str


@dataclass(frozen=True)
class Tag:
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True)
class Webhook:
    url: str
    template_key: str = ""


@dataclass(frozen=True)
class Exit:
    pass


Action = Delay | WaitForEvent | Condition | Send | Tag | Webhook | Exit


@dataclass(frozen=True)
class Step:
    id: str
    action: Action | None
    next: str = ""

    def successors(self) -> tuple[str, ...]:
        """The steps a run may go to from here, in the order written."""
        a = self.action
        found: tuple[str, ...]
        if isinstance(a, Condition):
            found = (a.if_true, a.if_false)
        elif isinstance(a, WaitForEvent):
            found = (a.on_event, a.on_timeout)
        else:
            found = (self.next,)
        return tuple(s for s in found if s)

    @property
    def waits(self) -> bool:
        """A run stays here for a while (a loop through such a step is not a busy loop)."""
        return isinstance(self.action, Delay | WaitForEvent)


@dataclass(frozen=True)
class Flow:
    key: str
    name: str
    trigger: EventTrigger | DateTrigger | None
    steps: tuple[Step, ...]
    exit_events: tuple[str, ...] = ()
    re_entry: str = NEVER
    re_entry_days: int = 0


_CLOCK = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
_DURATION = re.compile(r"(-?\d+(?:\.\d{1,9})?)s")


class _Reader:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def clock(self, where: str, text: str) -> time | None:
        if not text:
            return None
        m = _CLOCK.fullmatch(text)
        if m is None:
            self.problems.append((where, "LOCAL_TIME_INVALID", f"{quote(text)} is not HH:MM"))
            return None
        return time(int(m[1]), int(m[2]))

    def duration(self, where: str, text: str | None) -> timedelta | None:
        if text is None:
            return None
        m = _DURATION.fullmatch(text)
        if m is None:
            self.problems.append((where, "DURATION_INVALID", f"{quote(text)} is not a duration"))
            return None
        return timedelta(seconds=float(m[1]))

    def trigger(self, d: Mapping[str, Any]) -> EventTrigger | DateTrigger | None:
        if "event" in d:
            e = d["event"]
            return EventTrigger(
                e.get("event_type", ""),
                dict(e.get("filter", {})),
                e.get("segment", ""),
                bool(e.get("include_backfill", False)),
            )
        if "date" in d:
            e = d["date"]
            return DateTrigger(
                e.get("attribute", ""),
                int(e.get("offset_days", 0)),
                self.clock("trigger.date.local_time", e.get("local_time", "")),
                bool(e.get("yearly", False)),
            )
        return None

    def action(self, where: str, d: Mapping[str, Any]) -> Action | None:
        if "delay" in d:
            e = d["delay"]
            weekday = e.get("until_weekday", "WEEKDAY_UNSPECIFIED").removeprefix("WEEKDAY_")
            return Delay(
                self.duration(f"{where}.delay.duration", e.get("duration")),
                self.clock(f"{where}.delay.until_local_time", e.get("until_local_time", "")),
                WEEKDAYS.index(weekday) if weekday in WEEKDAYS else None,
            )
        if "wait_for_event" in d:
            e = d["wait_for_event"]
            return WaitForEvent(
                e.get("event_type", ""),
                dict(e.get("filter", {})),
                self.duration(f"{where}.wait_for_event.timeout", e.get("timeout")),
                e.get("on_event", ""),
                e.get("on_timeout", ""),
            )
        if "condition" in d:
            return _condition(d["condition"])
        if "send" in d:
            e = d["send"]
            kind = TRANSACTIONAL if e.get("transactional") else MARKETING
            return Send(e.get("template_key", ""), kind)
        if "tag" in d:
            e = d["tag"]
            return Tag(tuple(e.get("add", ())), tuple(e.get("remove", ())))
        if "webhook" in d:
            e = d["webhook"]
            return Webhook(e.get("url", ""), e.get("template_key", ""))
        if "exit" in d:
            return Exit()
        return None


def _condition(e: Mapping[str, Any]) -> Condition:
    branches = {"if_true": e.get("if_true", ""), "if_false": e.get("if_false", "")}
    if "in_segment" in e:
        return Condition("in_segment", e["in_segment"], **branches)
    if "rule" in e:
        return Condition("rule", e["rule"], **branches)
    if "trigger_field" in e:
        f = e["trigger_field"]
        return Condition("trigger_field", f.get("field", ""), f.get("value", ""), **branches)
    return Condition("", **branches)


def read(d: Mapping[str, Any]) -> tuple[Flow, list[Problem]]:
    """The flow in ``d`` (its JSON form, field names as in the proto), and what could not be
    read."""
    r = _Reader()
    steps = tuple(
        Step(s.get("id", ""), r.action(f"steps[{i}]", s), s.get("next", ""))
        for i, s in enumerate(d.get("steps", ()))
    )
    re_entry = d.get("re_entry", {})
    policy = re_entry.get("policy", "RE_ENTRY_POLICY_UNSPECIFIED").removeprefix("RE_ENTRY_POLICY_")
    flow = Flow(
        key=d.get("key", ""),
        name=d.get("name", ""),
        trigger=r.trigger(d.get("trigger", {})),
        steps=steps,
        exit_events=tuple(d.get("exit_events", ())),
        re_entry={"UNSPECIFIED": NEVER}.get(policy, policy.lower()),
        re_entry_days=int(re_entry.get("days", 0)),
    )
    return flow, r.problems
