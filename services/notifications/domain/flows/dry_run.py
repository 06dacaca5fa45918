"""A flow's dry run over recorded history, pure: the published events between two instants go
through the same trigger, run and policy functions as live (trigger.py, run.py, policy.py),
with the runs, their timers and the facts of the past (history.py) in memory. Each send step a
run reaches becomes the decision the policy would have taken then — outcome and reason — and
nothing is sent, scheduled or appended: the log is only read.

Timers fire in time order between events (a run's delay ending at 10:00 fires before an event
recorded at 10:01); runs started before the window are not known (a dry run starts empty), but
the facts are folded from the log's beginning, so consent and caps are as they stood. A rule
condition cannot be answered over history (segmentation evaluates rules on current facts
only): the ask is listed with its rule and the reason RULE_NOT_EVALUATED, and that run goes no
further; a segment condition is answered from the memberships as they stood."""

from __future__ import annotations

import heapq
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.notifications.domain import policy
from services.notifications.domain.flows import definition as fd
from services.notifications.domain.flows import run as runs
from services.notifications.domain.flows import trigger
from services.notifications.domain.flows.history import History

NS = uuid.UUID("5d0f7a3e-1b6c-4c1f-9f0e-8a3b2c4d5e6f")  # dry runs' own: never a live id
UTC = ZoneInfo("UTC")
RULE_NOT_EVALUATED = "RULE_NOT_EVALUATED"  # a rule condition reached: the run stops there


@dataclass(frozen=True)
class Would:
    """A step a run would have carried out."""

    at: datetime
    contact_id: str
    run_id: str
    step: str
    effect: str  # send, callwebhook, tag, ask
    template_key: str = ""
    channel: str = ""
    kind: str = ""
    outcome: str = ""  # the policy's, for a send
    reason: str = ""
    defer_until: datetime | None = None
    rule: str = ""  # for a rule condition's ask: its rule, not evaluated over history


@dataclass
class DryRun:
    flow: fd.Flow
    flow_id: str
    version: int
    channels: Mapping[str, str]  # template key -> channel
    rules: policy.Rules
    start: datetime
    end: datetime
    history: History = field(default_factory=History)
    known: dict[str, runs.Run] = field(default_factory=dict)  # the runs so far
    by_contact: dict[str, list[str]] = field(default_factory=dict)
    keys: dict[str, tuple[str, datetime]] = field(default_factory=dict)  # run -> (key, start)
    timers: list[tuple[datetime, str, int]] = field(default_factory=list)
    would: list[Would] = field(default_factory=list)
    started: int = 0
    ended: int = 0
    events_read: int = 0

    def see(
        self,
        type_: str,
        event_id: str,
        data: Mapping[str, Any],
        meta: Mapping[str, Any],
        at: datetime,
    ) -> None:
        """One published event of the log, in order (those after ``end`` are not passed)."""
        self.events_read += 1
        self._fire(at)
        self.history.see(type_, data, at)
        if at < self.start:
            return
        contact_id = str(data.get("contact_id", ""))
        s = trigger.starts(self.flow, type_, event_id, data, meta)
        started = ""
        if s is not None and self._may_start(s.contact_id, s.trigger_key, at):
            started = str(uuid.uuid5(NS, f"{self.flow_id}:{event_id}"))
            tz = self._tz(s.contact_id)
            walked = runs.start(
                started,
                self.flow,
                self.flow_id,
                self.version,
                s.contact_id,
                s.trigger,
                at,
                tz,
                s.trigger_key,
            )
            self.keys[started] = (s.trigger_key, at)
            self.by_contact.setdefault(s.contact_id, []).append(started)
            self.started += 1
            self._apply(None, walked, at)
        for run_id in self.by_contact.get(contact_id, ()):
            run = self.known[run_id]
            if run.run_id != started and run.status != runs.DONE:
                tz = self._tz(contact_id)
                self._apply(run, runs.event_seen(run, self.flow, type_, data, event_id, at, tz), at)

    def finish(self) -> None:
        """The timers due by the end of the window fire."""
        self._fire(self.end)

    def _may_start(self, contact_id: str, key: str, at: datetime) -> bool:
        earlier = [
            (self.keys[rid][1], self.known[rid].status == runs.DONE)
            for rid in self.by_contact.get(contact_id, ())
            if self.keys[rid][0] == key
        ]
        return runs.may_start(earlier, self.flow.re_entry, self.flow.re_entry_days, at)

    def _tz(self, contact_id: str) -> tzinfo:
        name = self.history.zones.get(contact_id, "")
        try:
            return ZoneInfo(name) if name else UTC
        except (ZoneInfoNotFoundError, ValueError):
            return UTC

    def _fire(self, until: datetime) -> None:
        while self.timers and self.timers[0][0] <= until:
            wake, run_id, visits = heapq.heappop(self.timers)
            run = self.known[run_id]
            if run.visits != visits or run.wake_at != wake:
                continue  # the run moved on
            self._apply(run, runs.timer_due(run, self.flow, wake, self._tz(run.contact_id)), wake)

    def _apply(
        self,
        run: runs.Run | None,
        walked: tuple[list[runs.Event], list[runs.Effect]],
        at: datetime,
    ) -> None:
        events, effects = walked
        for type_, data in events:
            run = runs.evolve(run, type_, data)
        if run is None:
            return
        for effect in effects:
            if isinstance(effect, runs.Ask) and effect.test == "in_segment":
                holds = (effect.argument, run.contact_id) in self.history.members
                more = runs.answered(
                    run, self.flow, effect.step, holds, at, self._tz(run.contact_id)
                )
                self.known[run.run_id] = run
                self._apply(run, more, at)
                return
            self._would(run, effect, at)
        if events and events[-1][0] == runs.ENDED:
            self.ended += 1
        self.known[run.run_id] = run
        if run.wake_at is not None:
            heapq.heappush(self.timers, (run.wake_at, run.run_id, run.visits))

    def _would(self, run: runs.Run, effect: runs.Effect, at: datetime) -> None:
        name = type(effect).__name__.lower()

        def would(**how: Any) -> None:
            self.would.append(Would(at, run.contact_id, run.run_id, effect.step, name, **how))

        if isinstance(effect, runs.Send | runs.CallWebhook):
            kind = effect.kind if isinstance(effect, runs.Send) else policy.TRANSACTIONAL
            key = effect.template_key
            channel = self.channels.get(key, "")
            if not channel:
                would(template_key=key, kind=kind, outcome=policy.SKIP, reason="TEMPLATE_NOT_FOUND")
                return
            facts = self.history.facts(run.contact_id, channel, kind, at, self.rules.cap_window)
            verdict = policy.decide(facts, self.rules)
            if verdict.outcome == policy.SEND and kind == policy.MARKETING:
                self.history.sent(run.contact_id, channel, at)
            would(
                template_key=key,
                channel=channel,
                kind=kind,
                outcome=verdict.outcome,
                reason=verdict.reason,
                defer_until=verdict.defer_until,
            )
        elif isinstance(effect, runs.Ask):
            # Segmentation evaluates rules on contacts' current facts only, never as they stood
            # in the window: the ask is listed, named, and the run goes no further.
            would(reason=RULE_NOT_EVALUATED, rule=effect.argument)
        else:
            would()
