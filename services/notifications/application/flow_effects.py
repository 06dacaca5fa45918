"""Carrying out flow runs' effects (one leader, the project role): the engine and the timers
write each effect with the run's events; this takes them in order and does them:

- send: SendMessage for the run's contact with the step's template and kind, the run's trigger
  as ``data`` (and its cart or order as ``cart`` / ``order``), the flow, version, step and run
  as the message's origin, and the effect's request id, so the message is decided by the same
  policy as any other, and a send done again after a crash is the same message;
- callwebhook: the same with the step's webhook template and URL (kind transactional);
- tag: the contact's tags changed at contacts, with the effect's request id;
- ask, for a rule condition: segmentation evaluates the rule for the run's contact now
  (EvaluateRule), and the run goes on from the condition's branch: its next events (the walk
  from that branch: steps, sends, waits, a segment condition answered as the engine answers
  it, a further rule ask) appended at the version its row holds, its row and its new effects
  saved, in the transaction that deletes the ask (the table's ``answer``). A segment
  condition (in_segment) never gets here: the engine answers it as it writes the walk.

An effect done is deleted. One that cannot be done now (an upstream away) is tried again with
backoff; one refused for good (a template archived, a contact gone) keeps its reason in the
table, for operators, and is not tried again."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog

from services.notifications.application.sending import SendRequest
from services.notifications.domain import decision as d
from services.notifications.domain import policy
from shared.domain.errors import DomainError
from shared.grpckit.errors import Unavailable
from shared.metrics import FLOW_EFFECTS
from shared.supervision import tick_until_stopped

log = structlog.get_logger(__name__)
BATCH = 100


@dataclass(frozen=True)
class DueEffect:
    id: int
    request_id: str
    effect: Mapping[str, Any]
    attempts: int


class EffectsTable(Protocol):
    async def due(self, now: datetime, limit: int) -> list[DueEffect]: ...
    async def done(self, effect_id: int) -> None: ...
    async def later(self, effect_id: int, due_at: datetime) -> None: ...
    async def refused(self, effect_id: int, reason: str) -> None: ...
    async def answer(self, due: DueEffect, holds: bool, now: datetime) -> bool:
        """The run of a rule ask goes on from the branch ``holds`` names, the ask deleted, in
        one transaction; False (nothing done) while the run's flow is paused."""
        ...


class Sender(Protocol):
    async def send(self, request: SendRequest, meta: Mapping[str, Any] = {}) -> Any: ...


class Tagger(Protocol):
    async def tag(
        self, contact_id: str, add: Sequence[str], remove: Sequence[str], request_id: str
    ) -> None: ...


class Rules(Protocol):
    """Segmentation's rule evaluation (adapters/segmentation_client.py)."""

    async def evaluate(self, contact_id: str, rule: str) -> bool: ...


def _now() -> datetime:
    return datetime.now(UTC)


def send_request(e: Mapping[str, Any], request_id: str) -> SendRequest:
    """The SendMessage a send or webhook effect asks for."""
    about = e.get("about", {})
    webhook = e["effect"] == "callwebhook"
    return SendRequest(
        kind=policy.TRANSACTIONAL if webhook else str(e["kind"]),
        contact_id=e["contact_id"],
        template_key=e["template_key"],
        data=dict(e.get("data", {})),
        webhook_url=e.get("url", "") if webhook else "",
        request_id=request_id,
        cart_id=str(about.get("cart_id", "")),
        order_id=str(about.get("order_id", "")),
        origin=d.Origin(
            d.FLOW,
            flow_id=e["flow_id"],
            flow_version=int(e["flow_version"]),
            step_id=e["step"],
            run_id=e["run_id"],
        ),
    )


class FlowEffects:
    def __init__(
        self,
        table: EffectsTable,
        sender: Sender,
        tagger: Tagger,
        rules: Rules,
        poll_seconds: float = 0.1,
        backoff: timedelta = timedelta(seconds=5),
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.table, self.sender, self.tagger, self.rules = table, sender, tagger, rules
        self.poll, self.backoff, self.clock = poll_seconds, backoff, clock

    async def run(self, stop: asyncio.Event) -> None:
        await tick_until_stopped(stop, self.tick, BATCH, self.poll)

    async def tick(self) -> int:
        """Carry out the effects due now, in order; how many were due."""
        due = await self.table.due(self.clock(), BATCH)
        for effect in due:
            await self.carry_out(effect)
        return len(due)

    async def carry_out(self, due: DueEffect) -> None:
        e, kind = due.effect, str(due.effect["effect"])
        try:
            if kind in ("send", "callwebhook"):
                await self.sender.send(send_request(e, due.request_id))
            elif kind == "tag":
                await self.tagger.tag(e["contact_id"], e["add"], e["remove"], due.request_id)
            elif kind == "ask" and e.get("test") == "rule":
                holds = await self.rules.evaluate(e["contact_id"], e["argument"])
                if not await self.table.answer(due, holds, self.clock()):
                    raise Unavailable("FLOW_PAUSED", "the run's flow is paused; asked again later")
                FLOW_EFFECTS.labels(kind=kind, outcome="done").inc()
                return  # deleted with the run's events
            else:
                raise DomainError("EFFECT_UNSUPPORTED", f"{kind} is not carried out yet")
        except Unavailable as err:
            delay = self.backoff * 2 ** min(due.attempts, 6)
            await self.table.later(due.id, self.clock() + delay)
            FLOW_EFFECTS.labels(kind=kind, outcome="retry").inc()
            log.warning("flow.effect_retry", request_id=due.request_id, reason=err.reason)
            return
        except DomainError as err:
            await self.table.refused(due.id, f"{err.reason}: {err}")
            FLOW_EFFECTS.labels(kind=kind, outcome="failed").inc()
            log.warning("flow.effect_refused", request_id=due.request_id, reason=err.reason)
            return
        await self.table.done(due.id)
        FLOW_EFFECTS.labels(kind=kind, outcome="done").inc()
