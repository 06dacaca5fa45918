"""The intake: bounce and complaint reports, and the SMS gateway's status callbacks, recorded on
the message they name and, when they call for it, the channel suppressed at contacts.

A report's message is found by reading its stream (consistent: no projection lag). Every
message a document names is checked before anything is written, so a refused document wrote
nothing. Then, per report: its event is appended (id derived from the message and the report's
kind: a redelivery finds it recorded, and a concurrent one loses the append), a soft bounce is
counted in the same transaction with the contact locked; AFTER the commit, a report whose event
says so suppresses the channel at contacts, with a request id derived from the event, so a
retry after contacts was away (the event already there) completes the suppression once."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from services.notifications.application.message_stream import MESSAGE
from services.notifications.domain import decision as d
from services.notifications.domain import intake
from services.notifications.domain.bounces import Report, SoftBounces
from services.notifications.domain.variant import EMAIL, SMS
from shared.domain.errors import DomainError, Invalid, NotFound, Precondition
from shared.eventstore import DuplicateEventId, EventStore, StreamAppend, StreamState
from shared.metrics import NOTIFICATIONS_INTAKE

log = structlog.get_logger(__name__)
ACTOR = {"actor": "notifications-intake"}


def _now() -> datetime:
    return datetime.now(UTC)


class Suppressing(Protocol):
    async def suppress(
        self, contact_id: str, channel: str, reason: str, note: str, request_id: str
    ) -> bool:
        """contacts' SuppressChannel; whether it changed anything. Raises a DomainError for a
        refusal (an erased contact), anything else when contacts cannot be reached."""
        ...


class Recording(Protocol):
    async def soft_bounces(
        self, contact_id: str, channel: str, other_than: str
    ) -> list[datetime]: ...

    async def count_soft_bounce(
        self, contact_id: str, channel: str, message_id: str, at: datetime
    ) -> None: ...

    async def append(self, appends: Sequence[StreamAppend]) -> None: ...


class IntakeTables(Protocol):
    def recording(self, contact_id: str) -> AbstractAsyncContextManager[Recording]:
        """A transaction of the event store, the contact locked when given."""
        ...

    async def message_of(self, provider_id: str) -> str | None:
        """The message the SMS gateway knows by ``provider_id``."""
        ...


@dataclass(frozen=True, slots=True)
class Done:
    """What became of one report or callback (the HTTP answer lists them)."""

    message_id: str
    kind: str
    result: str  # recorded, already_recorded, ignored
    suppressed: bool = False  # the channel is suppressed at contacts because of it

    def to_json(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "kind": self.kind,
            "result": self.result,
            "suppressed": self.suppressed,
        }


def _target(message_id: str, rows: Sequence[Any]) -> intake.Target:
    decisions = [r.data for r in rows if r.type == d.DECIDED]
    if not decisions:
        raise NotFound("UNKNOWN_MESSAGE", "no such message", message_id=message_id)
    last = decisions[-1]
    return intake.Target(
        message_id=message_id,
        contact_id="" if last.get("test") else str(last.get("contact_id", "")),
        channel=str(last.get("channel", "")),
        steps=tuple((r.type, dict(r.data)) for r in rows if r.type != d.DECIDED),
    )


class Intake:
    def __init__(
        self,
        store: EventStore,
        tables: IntakeTables,
        contacts: Suppressing,
        clock: Callable[[], datetime] = _now,
        soft_bounces: SoftBounces = SoftBounces(),  # noqa: B008 - frozen, shared safely
    ) -> None:
        self.store, self.tables, self.contacts, self.clock = store, tables, contacts, clock
        self.soft_bounces = soft_bounces

    async def _read(self, message_id: str) -> intake.Target:
        return _target(message_id, await self.store.read_stream(d.stream_of(message_id)))

    async def reports(self, reports: Sequence[Report], source: str) -> list[Done]:
        """Bounces and complaints (``source``: json, dsn, arf). NotFound UNKNOWN_MESSAGE,
        Invalid for a message on a channel that cannot bounce or that was never sent: nothing
        written. A Suppressing failure propagates after the events committed (retry)."""
        unique: dict[str, Report] = {}
        for r in reports:  # the same report twice in a document is one report
            unique.setdefault(intake.report_key(r), r)
        reports = list(unique.values())
        targets: dict[str, intake.Target] = {}
        for r in reports:
            if r.message_id not in targets:
                targets[r.message_id] = await self._read(r.message_id)
            t = targets[r.message_id]
            if t.channel not in (EMAIL, SMS):
                raise Invalid([("message_id", "WRONG_CHANNEL", f"a {t.channel} cannot bounce")])
            if t.recorded(d.DISPATCHED) is None:
                raise Precondition("MESSAGE_NOT_SENT", "the message was never dispatched")
        done = []
        for r in reports:
            done.append(await self._report(targets[r.message_id], r, source))
        return done

    async def _report(self, target: intake.Target, report: Report, source: str) -> Done:
        kind = report.kind
        existing = intake.recorded(target, report)
        result = "already_recorded"
        if existing is None:
            result = "recorded"
            try:
                existing = await self._append(target, report, source)
            except DuplicateEventId:  # a concurrent delivery of the same report won
                result = "already_recorded"
                existing = intake.recorded(await self._read(target.message_id), report)
                assert existing is not None, "the report's event id is taken by another event"
        type_ = intake.COMPLAINED if kind == "complaint" else intake.BOUNCED
        suppressed = False
        if intake.suppression_of((type_, existing)) and target.contact_id:
            suppressed = await self._suppress(target, report, existing)
        outcome = "suppressed" if suppressed else result
        NOTIFICATIONS_INTAKE.labels(kind=kind, outcome=outcome).inc()
        log.info("intake.report", message_id=target.message_id, kind=kind, result=result)
        return Done(target.message_id, kind, result, suppressed)

    async def _append(self, target: intake.Target, report: Report, source: str) -> dict[str, Any]:
        soft = report.kind == "soft_bounce" and bool(target.contact_id)
        stream = d.stream_of(target.message_id)
        async with self.tables.recording(target.contact_id) as tx:
            now = self.clock()
            earlier = []
            if soft:
                earlier = await tx.soft_bounces(
                    target.contact_id, target.channel, target.message_id
                )
            event = intake.report_event(report, source, earlier, now, self.soft_bounces)
            own = MESSAGE.events(stream, [event], intake.report_key(report), ACTOR)
            await tx.append([StreamAppend(stream, own, StreamState.EXISTS)])
            if soft:
                await tx.count_soft_bounce(
                    target.contact_id, target.channel, target.message_id, now
                )
        return event[1]

    async def _suppress(
        self, target: intake.Target, report: Report, data: Mapping[str, Any]
    ) -> bool:
        reason = intake.SUPPRESSION_REASONS[report.kind]
        note = f"{report.kind.replace('_', ' ')} of message {target.message_id}"
        if report.kind == "soft_bounce":
            note += f" ({data.get('soft_bounce_count', 0)} soft bounces within 7 days)"
        request_id = f"notifications-{intake.report_key(report).replace(':', '-')}"
        try:
            await self.contacts.suppress(
                target.contact_id, target.channel, reason, note, request_id
            )
        except DomainError as refusal:  # e.g. the contact was erased: nothing to suppress
            log.warning(
                "intake.suppression_refused", message_id=target.message_id, reason=refusal.reason
            )
            return False
        return True

    async def sms_status(self, provider_id: str, status: str, error_code: str) -> Done:
        """A status callback of the SMS gateway: ``delivered`` → MessageDelivered,
        ``undelivered``/``failed`` → a final MessageFailed; other statuses are progress,
        ignored. NotFound UNKNOWN_MESSAGE when no message has that provider id."""
        message_id = await self.tables.message_of(provider_id)
        if message_id is None:
            raise NotFound("UNKNOWN_MESSAGE", "no message with this MessageSid")
        outcome = intake.SMS_FINAL.get(status)
        if outcome is None:
            NOTIFICATIONS_INTAKE.labels(kind="sms_status", outcome="ignored").inc()
            return Done(message_id, f"sms_{status}"[:40], "ignored")
        target = await self._read(message_id)
        kind = f"sms_{outcome}"
        event = intake.sms_event(message_id, provider_id, status, error_code, _attempt(target))
        key = intake.sms_key(message_id, outcome)
        if target.recorded(event[0], detail=event[1]["detail"]) is not None:
            NOTIFICATIONS_INTAKE.labels(kind=kind, outcome="already_recorded").inc()
            return Done(message_id, kind, "already_recorded")
        stream = d.stream_of(message_id)
        result = "recorded"
        try:
            async with self.tables.recording("") as tx:
                own = MESSAGE.events(stream, [event], key, ACTOR)
                await tx.append([StreamAppend(stream, own, StreamState.EXISTS)])
        except DuplicateEventId:
            result = "already_recorded"
        NOTIFICATIONS_INTAKE.labels(kind=kind, outcome=result).inc()
        log.info("intake.sms_status", message_id=message_id, status=status, result=result)
        return Done(message_id, kind, result)


def _attempt(target: intake.Target) -> int:
    attempts = [int(data.get("attempt", 0)) for t, data in target.steps if t == d.DISPATCHED]
    return max(attempts, default=0)
