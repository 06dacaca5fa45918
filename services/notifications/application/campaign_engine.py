"""The campaign engine (one leader, the project role). Each tick it looks at the open campaigns
(scheduled and due, sending, or with recipients left) and, from each one's state in the log:

- scheduled and due: the audience frozen as of the instant it starts (segmentation's members
  of the included segments minus the excluded ones), each recipient's variant (or the
  holdout) and send instant (the send instant, or the local time in the recipient's zone,
  paced by the throttle) written as rows in the same transaction as CampaignStarted (size,
  digest, as-of);
- sending: the due rows taken in batches (at most the throttle's count in any minute), each
  recipient's message asked of SendMessage's pipeline (the same policy as any message) with a
  request id derived from the campaign and the contact, so a batch done again after a crash is
  the same messages; the holdout's rows are only marked; then CampaignCompleted with the tally
  once no row is left;
- paused: nothing taken; cancelled: the rows left are marked cancelled, never sent."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog

from services.notifications.application import campaign_plan as plan
from services.notifications.application.campaign_plan import Recipient
from services.notifications.application.campaigns import CampaignCommands, Segments
from services.notifications.application.sending import SendRequest
from services.notifications.domain import decision as d
from services.notifications.domain.campaigns import audience as a
from services.notifications.domain.campaigns import campaign as c
from services.notifications.domain.campaigns import definition as defs
from services.notifications.domain.campaigns.campaign import Campaign
from shared.application.commands import Then
from shared.domain.errors import DomainError
from shared.domain.timestamps import timestamp_text
from shared.grpckit.errors import Unavailable
from shared.supervision import tick_until_stopped

log = structlog.get_logger(__name__)
BATCH = 500  # recipients taken at once
CHUNK = 100  # recipients decided together (one batch: application/batch_sending.py)
CONCURRENCY = 2  # batches decided at once
OUTCOMES = {"OUTCOME_SEND": "sent", "OUTCOME_SKIP": "skipped", "OUTCOME_DEFER": "deferred"}
HELD_OUT, FAILED, CANCELLED = "held_out", "failed", "cancelled"


class Recipients(Protocol):
    async def open(self, now: datetime) -> list[str]: ...
    async def zones(self, contact_ids: Sequence[str]) -> dict[str, str]: ...
    def writer(self, campaign_id: str, recipients: Sequence[Recipient]) -> Then: ...
    async def due(self, campaign_id: str, now: datetime, limit: int) -> list[Recipient]: ...
    async def taken_since(self, campaign_id: str, since: datetime) -> int: ...
    async def done(self, campaign_id: str, outcomes: Mapping[str, str], at: datetime) -> None: ...
    async def later(self, campaign_id: str, contact_id: str, due_at: datetime) -> None: ...
    async def left(self, campaign_id: str) -> int: ...
    async def drop(self, campaign_id: str, at: datetime) -> int: ...
    async def tally(self, campaign_id: str) -> dict[str, int]: ...


class Sender(Protocol):
    async def send_many(
        self, requests: Sequence[SendRequest], metas: Sequence[Mapping[str, Any]]
    ) -> Sequence[Any]:
        """Each request's message (a trail) or its refusal (an exception), in order; raises
        Unavailable when an upstream is away (nothing of the batch decided)."""
        ...


def _now() -> datetime:
    return datetime.now(UTC)


def request_id(campaign_id: str, contact_id: str) -> str:
    """The recipient's message request: one message per campaign and contact, ever."""
    return f"campaign:{campaign_id}:{contact_id}"


class CampaignEngine:
    def __init__(
        self,
        commands: CampaignCommands,
        segments: Segments,
        recipients: Recipients,
        sender: Sender,
        poll_seconds: float = 0.2,
        backoff: timedelta = timedelta(seconds=30),
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.commands, self.segments, self.recipients = commands, segments, recipients
        self.sender, self.poll, self.backoff, self.clock = sender, poll_seconds, backoff, clock

    async def run(self, stop: asyncio.Event) -> None:
        await tick_until_stopped(stop, self.tick, BATCH, self.poll)

    async def tick(self) -> int:
        """One pass over the open campaigns; how many recipients were taken."""
        taken = 0
        for campaign_id in await self.recipients.open(self.clock()):
            try:
                taken += await self.step(await self.commands.get(campaign_id))
            except (DomainError, Unavailable) as err:  # tried again next tick
                log.warning("campaign.step_failed", campaign_id=campaign_id, reason=err.reason)
        return taken

    async def step(self, s: Campaign) -> int:
        now = self.clock()
        if s.state == c.WAITING and s.send_at is not None and s.send_at <= now:
            await self.start(s)
            return 0
        if s.state == c.SENDING:
            taken = await self.send_due(s, now)
            if not taken and not await self.recipients.left(s.campaign_id):
                tally = await self.recipients.tally(s.campaign_id)
                await self.commands.change(
                    s.campaign_id,
                    c.COMPLETED,
                    data={"tally": tally},
                    request_id=f"campaign-completed:{s.campaign_id}",
                    meta=_meta(s.campaign_id, "completed"),
                )
            return taken
        if s.state == c.STOPPED:
            await self.recipients.drop(s.campaign_id, now)
        return 0

    async def start(self, s: Campaign) -> None:
        """The audience frozen as of now (the send instant, or the first of a local send's),
        recorded with CampaignStarted: its size, digest and as-of instant."""
        as_of = self.clock()
        audience = await plan.frozen(self.segments, s.definition, as_of)
        assert s.send_at is not None
        recipients = await plan.planned(
            s.campaign_id, s.definition, s.schedule, s.send_at, audience, self.recipients
        )
        data = {
            "audience_size": audience.size,
            "audience_digest": audience.digest,
            "start_time": timestamp_text(as_of),
        }
        await self.commands.change(
            s.campaign_id,
            c.STARTED,
            data=data,
            request_id=f"campaign-started:{s.campaign_id}",
            meta=_meta(s.campaign_id, "started"),
            then=self.recipients.writer(s.campaign_id, recipients),
        )
        log.info("campaign.started", campaign_id=s.campaign_id, audience=audience.size)

    async def send_due(self, s: Campaign, now: datetime) -> int:
        limit = BATCH
        per_minute = int(s.definition.get("throttle_per_minute", 0))
        if per_minute:
            recent = await self.recipients.taken_since(s.campaign_id, now - timedelta(minutes=1))
            limit = min(limit, per_minute - recent)
            if limit <= 0:
                return 0
        due = await self.recipients.due(s.campaign_id, now, limit)
        if not due:
            return 0
        templates = {v.name: v.template_key for v in defs.variants_of(s.definition)}
        kind = defs.kind_of(s.definition)
        outcomes = {r.contact_id: HELD_OUT for r in due if r.variant == a.HOLDOUT}
        sent = [r for r in due if r.variant != a.HOLDOUT]
        gate = asyncio.Semaphore(CONCURRENCY)

        async def chunk(rows: Sequence[Recipient]) -> None:
            requests = [
                SendRequest(
                    kind=kind,
                    contact_id=r.contact_id,
                    template_key=templates[r.variant],
                    request_id=request_id(s.campaign_id, r.contact_id),
                    origin=d.Origin(d.CAMPAIGN, campaign_id=s.campaign_id, variant=r.variant),
                )
                for r in rows
            ]
            metas = [_meta(s.campaign_id, r.contact_id) for r in rows]
            async with gate:
                try:
                    answers = await self.sender.send_many(requests, metas)
                except Unavailable:
                    for r in rows:
                        await self.recipients.later(s.campaign_id, r.contact_id, now + self.backoff)
                    return
            for r, answer in zip(rows, answers, strict=True):
                if isinstance(answer, BaseException):
                    log.warning("campaign.recipient_refused", reason=getattr(answer, "reason", ""))
                    outcomes[r.contact_id] = FAILED
                else:
                    outcome = str(answer.last_decision.get("outcome", ""))
                    outcomes[r.contact_id] = OUTCOMES.get(outcome, "sent")

        await asyncio.gather(*(chunk(sent[i : i + CHUNK]) for i in range(0, len(sent), CHUNK)))
        await self.recipients.done(s.campaign_id, outcomes, now)
        return len(due)


def _meta(campaign_id: str, what: str) -> dict[str, Any]:
    return {
        "schema": 1,
        "actor": "notifications-campaigns",
        "correlation_id": campaign_id,
        "causation_id": f"{campaign_id}:{what}",
    }
