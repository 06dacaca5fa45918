"""The dispatcher: the outbox sent exactly once as far as anyone can tell, and the deferred
decisions made when due. One leader across replicas runs it (shared/leadership.py).

For each batch of due outbox rows:

1. MessageDispatched (attempt n) is appended and the rows marked in flight, due again at the
   end of a lease, in one transaction that COMMITS before anything is sent;
2. the batch goes to the delivery workers (``Delivery.deliver``);
3. each outcome is recorded with its row: MessageSent (the row retired), MessageFailed with a
   retry time (exponential backoff) while attempts remain, or a final MessageFailed (the row
   retired); the batch's outcomes in one transaction (one commit per message made recording
   cost as much as sending: a batch of 500 took seconds while the workers waited).

A row whose lease ran out with no outcome recorded (the dispatcher stopped between 1 and 3, or
the workers could not be reached) is in doubt: it is dispatched again, attempt n+1 with the
same message id (the receivers' idempotency key), marked ``in_doubt`` and counted in
``crm_notifications_in_doubt_resends_total``. It is never forgotten: out of attempts, it is a
final MessageFailed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from services.notifications.application.delivery import Delivery, Outbound, Outcome
from services.notifications.application.message_stream import MESSAGE
from services.notifications.application.ports import PipelineTables, Queued, Settlement
from services.notifications.application.sending import MessageCommands
from services.notifications.domain import decision as d
from services.notifications.domain.variant import metric_label
from shared.eventstore import StreamAppend, StreamState
from shared.metrics import NOTIFICATIONS_IN_DOUBT, NOTIFICATIONS_SENT
from shared.supervision import tick_until_stopped

log = structlog.get_logger(__name__)
ACTOR = {"actor": "notifications-dispatcher"}


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Dispatching:
    batch_size: int = 100
    max_attempts: int = 5
    backoff: timedelta = timedelta(seconds=30)  # before the 2nd attempt; doubles each time
    max_backoff: timedelta = timedelta(hours=1)
    lease: timedelta = timedelta(seconds=120)  # a dispatched row with no outcome is in doubt after
    poll_seconds: float = 1.0
    # Batches in flight at once: one is handed to the workers while the next is claimed and
    # the last one's outcomes recorded (claims never overlap: one at a time, under a lock).
    pipelines: int = 2


def retry_at(now: datetime, attempt: int, config: Dispatching) -> datetime:
    """When attempt ``attempt + 1`` is due after attempt ``attempt`` failed for now."""
    wait = config.backoff * 2 ** max(0, attempt - 1)
    return now + min(wait, config.max_backoff)


def outbound(row: Queued, attempt: int) -> Outbound:
    return Outbound(
        message_id=row.message_id,
        channel=row.channel,
        to=row.address,
        sender=row.sender,
        subject=row.subject,
        text=row.text,
        html=row.html,
        body=row.body,
        headers=row.headers,
        attempt=attempt,
        test=row.test,
    )


def _never_answered(row: Queued) -> Outcome:
    detail = f"no outcome recorded after {row.attempt} attempts (in doubt)"
    return Outcome(row.message_id, "rejected", detail)


def _append(message_id: str, event: d.Event, key: str) -> StreamAppend:
    """An event of the dispatcher's own, with an id derived from ``key`` (written once)."""
    stream = d.stream_of(message_id)
    return StreamAppend(stream, MESSAGE.events(stream, [event], key, ACTOR), StreamState.EXISTS)


class Dispatcher:
    def __init__(
        self,
        tables: PipelineTables,
        delivery: Delivery,
        messages: MessageCommands,
        config: Dispatching,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.tables, self.delivery, self.messages = tables, delivery, messages
        self.config, self.clock = config, clock
        self.reachable = True  # as last seen (a warning when that changes)
        self.claiming = asyncio.Lock()  # one batch claimed at a time: no row taken twice

    async def dispatch_due(self) -> int:
        """One batch of due outbox rows: dispatched, delivered, outcomes recorded. Returns how
        many rows it took."""
        async with self.claiming:
            claimed = await self._claim()
        if claimed is None:
            return 0
        rows, out_of_attempts = claimed
        if not rows:
            return len(out_of_attempts)
        try:
            outcomes = await self.delivery.deliver([outbound(r, r.attempt + 1) for r in rows])
        except Exception as exc:  # nothing is known of the batch: in doubt until the lease ends
            log.warning("delivery.unreachable", error=f"{type(exc).__name__}: {exc}"[:300])
            return len(rows) + len(out_of_attempts)
        by_id: Mapping[str, Outcome] = {o.message_id: o for o in outcomes}
        await self._record(  # a missing outcome stays in doubt
            [(r, r.attempt + 1, by_id[r.message_id]) for r in rows if r.message_id in by_id]
        )
        return len(rows) + len(out_of_attempts)

    async def _claim(self) -> tuple[list[Queued], list[Queued]] | None:
        """Due rows dispatched (MessageDispatched committed, the rows in flight until the
        lease ends) and those out of attempts recorded as failed; None when nothing is due or
        the workers are away."""
        now = self.clock()
        rows = await self.tables.due_outbox(now, self.config.batch_size)
        if not rows:
            return None
        if not await self.delivery.ready():  # an outage: nothing handed over, no attempt used
            if self.reachable:
                log.warning("delivery.not_ready", due=len(rows))
            self.reachable = False
            return None
        self.reachable = True
        out_of_attempts = [r for r in rows if r.in_flight and r.attempt >= self.config.max_attempts]
        await self._record(  # in doubt with no attempt left: final, never forgotten
            [(row, row.attempt, _never_answered(row)) for row in out_of_attempts]
        )
        rows = [r for r in rows if r not in out_of_attempts]
        appends = []
        for row in rows:
            attempt = row.attempt + 1
            event = d.dispatched(row.message_id, attempt, row.in_flight)
            appends.append(_append(row.message_id, event, f"dispatch:{attempt}"))
            if row.in_flight:
                NOTIFICATIONS_IN_DOUBT.labels(channel=metric_label(row.channel)).inc()
                log.warning("message.in_doubt", message_id=row.message_id, attempt=attempt)
        if rows:
            await self.tables.dispatch(appends, rows, now + self.config.lease)
        return rows, out_of_attempts

    async def _record(self, outcomes: list[tuple[Queued, int, Outcome]]) -> None:
        """The outcomes (row, attempt, outcome) with their rows, in one transaction."""
        now = self.clock()
        settled: list[tuple[Settlement, str, str]] = []  # with the metric's labels
        for row, attempt, outcome in outcomes:
            key, label = f"outcome:{attempt}", metric_label(row.channel)
            detail = d.redacted(outcome.detail, row.address)  # no address in the log
            if outcome.status == "sent":
                event = d.sent(row.message_id, attempt, detail, outcome.provider_id)
                append = _append(row.message_id, event, key)
                settlement = Settlement(
                    row.message_id, append, None, outcome.provider_id, row.contact_id
                )
                settled.append((settlement, label, "sent"))
                continue
            again = None
            if outcome.status == "retry" and attempt < self.config.max_attempts:
                again = retry_at(now, attempt, self.config)
            event = d.failed(row.message_id, attempt, detail, again)
            append = _append(row.message_id, event, key)
            result = "retry" if again else "failed"
            settled.append((Settlement(row.message_id, append, again), label, result))
        await self.tables.settle([s for s, _, _ in settled])
        for _, label, result in settled:
            NOTIFICATIONS_SENT.labels(channel=label, outcome=result).inc()

    async def decide_due(self) -> int:
        """Decide again every deferred message whose time has come; how many were. A timer that
        cannot be decided now (contacts or orders away) stays due and is tried at the next
        tick; it holds up neither the other timers nor the outbox."""
        done = 0
        for timer in await self.tables.due_timers(self.clock(), self.config.batch_size):
            try:
                if await self.messages.decide_again(timer, ACTOR):
                    done += 1
            except Exception as exc:
                log.warning(
                    "timer.undecided",
                    message_id=timer.message_id,
                    error=f"{type(exc).__name__}: {exc}"[:300],
                )
        return done

    async def tick(self) -> int:
        return await self.decide_due() + await self.dispatch_due()

    async def run(self, stop: asyncio.Event) -> None:
        """``pipelines`` loops until ``stop`` (the first one also decides the deferred
        messages); a loop whose batch was full goes again at once."""
        loops = max(1, self.config.pipelines)
        await asyncio.gather(*(self._loop(stop, timers=i == 0) for i in range(loops)))

    async def _loop(self, stop: asyncio.Event, *, timers: bool) -> None:
        async def tick() -> int:
            return (await self.decide_due() if timers else 0) + await self.dispatch_due()

        await tick_until_stopped(stop, tick, self.config.batch_size, self.config.poll_seconds)
