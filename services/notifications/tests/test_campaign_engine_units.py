"""The campaign engine's application rules with its ports faked (segmentation, the recipients,
the pipeline) on a real store: segmentation away at the start leaves the campaign scheduled
and nothing recorded until it answers; a recipient the pipeline cannot decide now is tried
again later, one it refuses for good is counted failed, and the campaign completes only when
every recipient is decided."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.notifications.application.campaign_engine import CampaignEngine, Recipient
from services.notifications.application.campaigns import CampaignCommands
from services.notifications.application.sending import SendRequest
from services.notifications.domain.campaigns import campaign as c
from shared.application.commands import Then
from shared.domain.errors import NotFound
from shared.eventstore.postgres import PostgresEventStore
from shared.grpckit.errors import Unavailable

T0 = datetime(2026, 11, 27, 8, tzinfo=UTC)
AWAY = Unavailable("SEGMENTATION_UNAVAILABLE", "away")


@dataclass
class Template:
    archived: bool = False


class Templates:
    async def get(self, template_id: str = "", key: str = "") -> Any:
        return Template()


@dataclass
class Segments:
    members_of: dict[str, list[str]]
    fail: Exception | None = None

    async def ids_of(self, keys: Sequence[str]) -> dict[str, str]:
        if self.fail:
            raise self.fail
        return {k: f"id-{k}" for k in keys if k in self.members_of}

    async def members(self, segment_id: str, as_of: datetime) -> list[str]:
        return self.members_of[segment_id.removeprefix("id-")]


@dataclass
class Rows:
    """The recipients table in memory (the real one is exercised in test_campaign_engine.py)."""

    open_ids: list[str] = field(default_factory=list)
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)

    async def open(self, now: datetime) -> list[str]:
        return self.open_ids

    async def zones(self, contact_ids: Sequence[str]) -> dict[str, str]:
        return {}

    def writer(self, campaign_id: str, recipients: Sequence[Recipient]) -> Then:
        async def write(_conn: Any) -> None:
            for r in recipients:
                self.rows[r.contact_id] = {"r": r, "done": None, "outcome": ""}

        return write

    async def due(self, campaign_id: str, now: datetime, limit: int) -> list[Recipient]:
        due = [x["r"] for x in self.rows.values() if not x["done"] and x["r"].due_at <= now]
        return due[:limit]

    async def taken_since(self, campaign_id: str, since: datetime) -> int:
        return 0

    async def done(self, campaign_id: str, outcomes: Mapping[str, str], at: datetime) -> None:
        for cid, outcome in outcomes.items():
            self.rows[cid].update(done=at, outcome=outcome)

    async def later(self, campaign_id: str, contact_id: str, due_at: datetime) -> None:
        r = self.rows[contact_id]["r"]
        self.rows[contact_id]["r"] = Recipient(r.contact_id, r.variant, due_at)

    async def left(self, campaign_id: str) -> int:
        return sum(1 for x in self.rows.values() if not x["done"])

    async def drop(self, campaign_id: str, at: datetime) -> int:
        return 0

    async def tally(self, campaign_id: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for x in self.rows.values():
            out[x["outcome"]] = out.get(x["outcome"], 0) + 1
        return out


@dataclass
class Sender:
    fail: dict[str, Exception] = field(default_factory=dict)
    asked: list[SendRequest] = field(default_factory=list)

    async def send_many(
        self, requests: Sequence[SendRequest], metas: Sequence[Mapping[str, Any]]
    ) -> list[Any]:
        """As batch_sending answers: UNAVAILABLE fails the batch, a refusal is its request's."""
        self.asked.extend(requests)
        failures = [self.fail.get(r.contact_id) for r in requests]
        if any(isinstance(f, Unavailable) for f in failures):
            raise next(f for f in failures if isinstance(f, Unavailable))
        return [f or Decided() for f in failures]


@dataclass
class Decided:
    """A trail as far as the engine reads it."""

    last_decision: Mapping[str, Any] = field(default_factory=lambda: {"outcome": "OUTCOME_SEND"})


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def store(dsn: str) -> AsyncIterator[PostgresEventStore]:
    s = await PostgresEventStore.connect(dsn, max_size=4)
    try:
        yield s
    finally:
        await s.close()


async def scheduled(store: PostgresEventStore, segments: Segments, clock: Clock) -> str:
    commands = CampaignCommands(store, Templates(), segments, clock)
    made = await commands.create(
        {
            "name": "Sale",
            "include_segments": ["vip"],
            "variants": [{"name": "a", "template_key": "sale"}],
        }
    )
    await commands.schedule(made.campaign_id, {"now": True})
    return made.campaign_id


async def test_segmentation_away_leaves_the_campaign_scheduled(store: PostgresEventStore) -> None:
    clock, segments, rows, sender = Clock(), Segments({"vip": ["c1", "c2"]}), Rows(), Sender()
    cid = await scheduled(store, segments, clock)
    commands = CampaignCommands(store, Templates(), segments, clock)
    engine = CampaignEngine(commands, segments, rows, sender, clock=clock)
    rows.open_ids = [cid]
    segments.fail = AWAY
    await engine.tick()
    assert (await commands.get(cid)).state == c.WAITING and not rows.rows
    segments.fail = None
    await engine.tick()
    started = await commands.get(cid)
    assert (started.state, started.audience_size, started.start_time) == (c.SENDING, 2, T0)
    assert sorted(rows.rows) == ["c1", "c2"]


async def test_recipients_not_decided_now_are_tried_again(store: PostgresEventStore) -> None:
    """A batch meeting contacts away is tried again after the backoff, all of it; a recipient
    refused for good is failed, once."""
    clock, segments, rows = Clock(), Segments({"vip": ["c1", "c2", "c3"]}), Rows()
    sender = Sender({"c2": Unavailable("CONTACTS_UNAVAILABLE", "away"), "c3": NotFound("X", "x")})
    cid = await scheduled(store, segments, clock)
    commands = CampaignCommands(store, Templates(), segments, clock)
    engine = CampaignEngine(
        commands, segments, rows, sender, backoff=timedelta(seconds=30), clock=clock
    )
    rows.open_ids = [cid]
    await engine.tick()  # started
    await engine.tick()  # the batch met contacts away: all of it later
    assert {k: v["outcome"] for k, v in rows.rows.items()} == {"c1": "", "c2": "", "c3": ""}
    await engine.tick()  # not due yet: nothing, and not completed
    assert (await commands.get(cid)).state == c.SENDING
    assert len(sender.asked) == 3
    del sender.fail["c2"]
    clock.now = T0 + timedelta(seconds=31)
    await engine.tick()  # c1 and c2 sent, c3 refused for good
    assert {k: v["outcome"] for k, v in rows.rows.items()} == {
        "c1": "sent",
        "c2": "sent",
        "c3": "failed",
    }
    await engine.tick()
    done = await commands.get(cid)
    assert done.state == c.DONE and done.tally == {"sent": 2, "failed": 1}
    assert [r.contact_id for r in sender.asked].count("c2") == 2
    assert {r.request_id for r in sender.asked if r.contact_id == "c2"} == {f"campaign:{cid}:c2"}
