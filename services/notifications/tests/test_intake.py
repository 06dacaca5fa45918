"""The intake's application on a real store and its real tables, contacts faked behind the
Suppressing port: concurrent soft bounces count each other (one suppression), old ones do not
count, a refusal by contacts records without suppressing, contacts away propagates after the
commit and the retry suppresses once, a test message is never suppressed."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from services.notifications.adapters.intake_tables import PostgresIntakeTables
from services.notifications.app import NotificationsSettings, intake_app
from services.notifications.application.intake import Intake
from services.notifications.domain import policy
from services.notifications.domain.bounces import Report, SoftBounces
from services.notifications.tests.pipeline_env import Pipe
from shared.domain.errors import Precondition
from shared.grpckit.errors import Unavailable

BOUNCED = "crm.notifications.v1.MessageBounced"


class FakeSuppressing:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, str]] = []
        self.fail: Exception | None = None

    async def suppress(
        self, contact_id: str, channel: str, reason: str, note: str, request_id: str
    ) -> bool:
        if self.fail is not None:
            raise self.fail
        self.calls.append((contact_id, channel, reason, request_id))
        return True


def _intake(pipe: Pipe, contacts: FakeSuppressing) -> Intake:
    return Intake(
        pipe.store, PostgresIntakeTables(pipe.store, pipe.store.pool), contacts, pipe.clock
    )


async def _sent(pipe: Pipe, n: int) -> list[str]:
    pipe.contacts.add()
    t = await pipe.template()
    ids = [
        (await pipe.send(t, kind=policy.TRANSACTIONAL, request_id=f"m{i}")).message_id
        for i in range(n)
    ]
    await pipe.dispatcher.tick()
    return ids


async def test_concurrent_soft_bounces_count_each_other_and_suppress_once(pipe: Pipe) -> None:
    ids = await _sent(pipe, 3)
    contacts = FakeSuppressing()
    intake = _intake(pipe, contacts)
    done = await asyncio.gather(
        *(intake.reports([Report(m, "soft_bounce", "4.2.2")], "json") for m in ids)
    )
    assert sorted(d[0].suppressed for d in done) == [False, False, True]
    counts = []
    for m in ids:
        counts += [e.data["soft_bounce_count"] for e in await pipe.events(m) if e.type == BOUNCED]
    assert sorted(counts) == [1, 2, 3]
    assert [c[2] for c in contacts.calls] == ["SUPPRESSION_REASON_HARD_BOUNCE"]


async def test_soft_bounces_older_than_seven_days_do_not_count(pipe: Pipe) -> None:
    ids = await _sent(pipe, 3)
    contacts = FakeSuppressing()
    intake = _intake(pipe, contacts)
    await intake.reports([Report(ids[0], "soft_bounce")], "dsn")
    pipe.clock.advance(timedelta(days=7, seconds=1))
    await intake.reports([Report(ids[1], "soft_bounce")], "dsn")
    [done] = await intake.reports([Report(ids[2], "soft_bounce")], "dsn")
    assert not done.suppressed and contacts.calls == []


async def test_contacts_away_propagates_after_the_commit_and_the_retry_suppresses_once(
    pipe: Pipe,
) -> None:
    [m] = await _sent(pipe, 1)
    contacts = FakeSuppressing()
    contacts.fail = Unavailable("CONTACTS_UNAVAILABLE", "away")
    intake = _intake(pipe, contacts)
    with pytest.raises(Unavailable):
        await intake.reports([Report(m, "complaint")], "arf")
    assert [e.type for e in await pipe.events(m)][-1] == "crm.notifications.v1.MessageComplained"
    contacts.fail = None
    [done] = await intake.reports([Report(m, "complaint")], "arf")
    assert (done.result, done.suppressed) == ("already_recorded", True)
    [again] = await intake.reports([Report(m, "complaint")], "arf")
    assert again.result == "already_recorded"
    assert len({c[3] for c in contacts.calls}) == 1  # one request id: contacts applies it once


async def test_a_refusal_by_contacts_records_without_suppressing(pipe: Pipe) -> None:
    [m] = await _sent(pipe, 1)
    contacts = FakeSuppressing()
    contacts.fail = Precondition("CONTACT_ERASED", "erased")
    [done] = await _intake(pipe, contacts).reports([Report(m, "hard_bounce", "5.1.1")], "json")
    assert (done.result, done.suppressed) == ("recorded", False)


async def test_a_test_message_bounces_without_suppression(pipe: Pipe) -> None:
    t = await pipe.template()
    sent = await pipe.messages.send_test(
        t, 1, "qa@shop.example", {"contact": {"first_name": "Q"}, "data": {"offer": "x"}}, ""
    )
    await pipe.dispatcher.tick()
    contacts = FakeSuppressing()
    [done] = await _intake(pipe, contacts).reports([Report(sent.message_id, "hard_bounce")], "json")
    assert (done.result, done.suppressed) == ("recorded", False) and contacts.calls == []


def test_the_composition_mounts_four_endpoints_and_refuses_a_bad_secret(pipe: Pipe) -> None:
    rt: Any = SimpleNamespace(store=pipe.store, pool=pipe.store.pool)
    settings = NotificationsSettings(
        database_url="postgresql://unused", tracking_base_url="https://crm.example"
    )
    app = intake_app(rt, settings, FakeSuppressing())
    routes = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    assert routes == {"/bounces", "/bounces/dsn", "/complaints", "/sms/status"}
    with pytest.raises(SystemExit, match="INTAKE_SECRET"):
        intake_app(
            rt, settings.model_copy(update={"intake_secret": "whsec_***"}), FakeSuppressing()
        )


async def test_the_soft_bounce_rule_is_a_setting(pipe: Pipe) -> None:
    """SOFT_BOUNCE_LIMIT=2, SOFT_BOUNCE_WINDOW_DAYS=1: the second within a day suppresses."""
    ids = await _sent(pipe, 3)
    contacts = FakeSuppressing()
    rule = SoftBounces(2, timedelta(days=1))
    intake = Intake(
        pipe.store,
        PostgresIntakeTables(pipe.store, pipe.store.pool),
        contacts,
        pipe.clock,
        soft_bounces=rule,
    )
    await intake.reports([Report(ids[0], "soft_bounce")], "dsn")
    pipe.clock.advance(timedelta(days=1, seconds=1))  # the first no longer counts
    [second] = await intake.reports([Report(ids[1], "soft_bounce")], "dsn")
    assert not second.suppressed
    pipe.clock.advance(timedelta(hours=23))
    [third] = await intake.reports([Report(ids[2], "soft_bounce")], "dsn")
    assert third.suppressed and len(contacts.calls) == 1
