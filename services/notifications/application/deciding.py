"""Decisions written: for a batch of messages whose facts are gathered, ONE transaction with
their contacts locked: the marketing sends counted (one query for the batch), the policy
decided for each in turn, the MessageDecided events appended (one append), and for SENDs the
outbox rows, recipients and marketing sends written (one statement), for DEFERs the timers.
Two concurrent decisions for one contact therefore never both pass a cap; within a batch, a
marketing SEND counts for the next message of the same contact and channel, exactly as if
they had been decided one after the other."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from services.notifications.application.facts import Gathered, Pipeline, enqueue, outbox_row
from services.notifications.application.message_stream import MESSAGE
from services.notifications.application.ports import Deferred, PipelineTables, Queued
from services.notifications.domain import decision as d
from services.notifications.domain import policy, trail
from services.notifications.domain.variant import metric_label
from shared.application.commands import Event, apply
from shared.eventstore import StreamAppend, StreamState
from shared.metrics import NOTIFICATIONS_SENT


@dataclass(frozen=True)
class Pending:
    """A message to decide: ``key`` is the request id its event's id derives from, ``loaded``
    its stream as read (None: a new message), ``later`` the timer a DEFER writes."""

    subject: d.Subject
    facts: Gathered
    number: int
    key: str
    meta: Mapping[str, Any]
    loaded: trail.Trail | None
    later: Deferred


async def decide_all(
    tables: PipelineTables,
    pipeline: Pipeline,
    clock: Callable[[], datetime],
    batch: Sequence[Pending],
) -> list[trail.Trail]:
    """The batch decided in one transaction (see the module's docstring); each message's trail
    after its decision, in the batch's order. A conflict (a stream written meanwhile) fails
    the whole batch: nothing of it is written."""
    rules = pipeline.rules
    contact_ids = [p.facts.contact.contact_id for p in batch]
    async with tables.deciding(contact_ids) as tx:
        now = clock()
        keys = [(p.facts.contact.contact_id, p.subject.channel) for p in batch if _marketing(p)]
        sends = await tx.marketing_sends(list(dict.fromkeys(keys)), now - rules.cap_window)
        appends: list[StreamAppend] = []
        rows: list[tuple[Queued, datetime | None]] = []
        timers: list[Deferred] = []
        decided: list[tuple[Pending, Event, policy.Decision]] = []
        for p in batch:
            key = (p.facts.contact.contact_id, p.subject.channel)
            count, last = sends.get(key, (0, None))
            event, verdict = _decided(p, rules, now, count, last)
            stream = d.stream_of(p.subject.message_id)
            expected = p.loaded.version if p.loaded is not None else StreamState.NO_STREAM
            appends.append(
                StreamAppend(stream, MESSAGE.events(stream, [event], p.key, p.meta), expected)
            )
            if verdict.outcome == policy.SEND:
                assert p.facts.rendered is not None
                subject = replace(p.subject, locale=p.facts.rendered.locale)
                row = outbox_row(pipeline, now, subject, p.facts.address, p.facts.rendered)
                rows.append((row, now if _marketing(p) else None))
                if _marketing(p):
                    sends[key] = (count + 1, now)  # the next message of this batch sees it
            elif verdict.outcome == policy.DEFER:
                assert verdict.defer_until is not None
                timers.append(replace(p.later, decision=p.number + 1, due_at=verdict.defer_until))
            decided.append((p, event, verdict))
        await tx.append(appends)
        for p in batch:
            if p.loaded is not None:
                await tx.fired(p.subject.message_id)
        await enqueue(tx, pipeline, rows)
        for timer in timers:
            await tx.defer(timer)
    out = []
    for p, event, verdict in decided:
        if verdict.reason == policy.SUPPRESSED:
            label = metric_label(p.subject.channel)
            NOTIFICATIONS_SENT.labels(channel=label, outcome="suppressed").inc()
        version = (p.loaded.version if p.loaded else -1) + 1
        out.append(apply(MESSAGE, p.loaded, [event], now, version))
    return out


def _marketing(p: Pending) -> bool:
    return p.subject.kind == policy.MARKETING


def _decided(
    p: Pending, rules: policy.Rules, now: datetime, count: int, last: datetime | None
) -> tuple[Event, policy.Decision]:
    """The policy's verdict on one message and its MessageDecided (a render failure turns a
    SEND into a skip)."""
    contact, facts = p.facts.contact, p.facts
    consent = facts.consent or d.ConsentUsed()
    marketing = _marketing(p)
    policy_facts = policy.Facts(
        channel=p.subject.channel,
        kind=p.subject.kind,
        now=now,
        erased=contact.erased,
        archived=contact.archived,
        address=facts.address,
        consent_state=consent.state,
        suppressed=consent.suppressed,
        sends_in_window=count if marketing else 0,
        last_marketing_send=last if marketing else None,
        time_zone=contact.time_zone,
    )
    verdict = policy.decide(policy_facts, rules)
    detail = ""
    if verdict.outcome == policy.SEND and facts.failure is not None:
        verdict, detail = d.render_failed(verdict), d.failure_detail(facts.failure)
    subject = p.subject
    if facts.rendered is not None:
        subject = replace(subject, locale=facts.rendered.locale)
    event = d.decided(
        subject, policy_facts, verdict, consent=facts.consent, number=p.number, detail=detail
    )
    return event, verdict
