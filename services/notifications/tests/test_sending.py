"""SendMessage in the application: the decision and its inputs as an event, the outbox row, the
recipient and the marketing send in one transaction; the policy's order on real facts; caps
that hold under concurrency; replays; merged contacts; render failures; deferral and the
decision again once its time comes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from services.notifications.adapters import pipeline_tables
from services.notifications.application.dispatcher import Dispatcher, Dispatching
from services.notifications.application.ports import Queued
from services.notifications.domain import decision as d
from services.notifications.domain import policy
from services.notifications.domain.decision import ConsentUsed
from services.notifications.domain.variant import EMAIL, SMS
from services.notifications.tests.pipeline_env import ADA, Pipe, build, with_cap
from shared.application.commands import RequestIdReused
from shared.domain.errors import Invalid, NotFound, Precondition
from shared.eventstore.postgres import PostgresEventStore

SURVIVOR = "0d9b1b8e-5b0f-4e5c-8d7b-2a4c6e8f0a1b"


async def test_a_send_is_one_event_and_its_rows_committed_together(pipe: Pipe) -> None:
    pipe.contacts.add()
    t = await pipe.template()
    m = await pipe.send(t, request_id="r-1")
    assert m.status == "MESSAGE_STATUS_QUEUED"
    [event] = await pipe.events(m.message_id)
    data = event.data
    assert (event.type, data["outcome"], data["decision"]) == (d.DECIDED, policy.SEND, 1)
    assert data["consent"]["state"] == policy.SUBSCRIBED
    assert data["consent"]["policy_version"] == "2026-01"
    assert (data.get("cap_count", 0), data["cap_limit"]) == (0, 3)
    assert data["trigger"] == {"source": "api", "request_id": "r-1"}
    assert data["time_zone"] == "Europe/Paris"
    stored = orjson.dumps(event.data).decode()
    assert "ada@example.com" not in stored and "Ada" not in stored and "tea" not in stored
    [row] = await pipe.rows("outbox")
    assert (row["address"], row["subject"], row["text"]) == (
        "ada@example.com",
        "Hi Ada",
        "Hello Ada: tea",
    )
    assert row["sender"] == "Shop <news@shop.example>"
    assert len(await pipe.rows("marketing_sends")) == 1
    assert [r["address"] for r in await pipe.rows("recipients")] == ["ada@example.com"]


async def test_a_skip_writes_its_decision_and_nothing_to_send(pipe: Pipe) -> None:
    pipe.contacts.add()
    pipe.contacts.subscribe(ADA, EMAIL, "CONSENT_STATE_UNSUBSCRIBED")
    t = await pipe.template()
    m = await pipe.send(t)
    assert (m.status, m.last_decision["reason"]) == ("MESSAGE_STATUS_SKIPPED", policy.NO_CONSENT)
    assert await pipe.rows("outbox") == [] and await pipe.rows("marketing_sends") == []
    # transactional needs no consent
    sent = await pipe.send(t, kind=policy.TRANSACTIONAL)
    assert sent.status == "MESSAGE_STATUS_QUEUED"
    assert await pipe.rows("marketing_sends") == []  # transactional never counts


async def test_suppression_skips_transactional_too(pipe: Pipe) -> None:
    pipe.contacts.add()
    consent = pipe.contacts.ledger[(ADA, EMAIL)]
    pipe.contacts.ledger[(ADA, EMAIL)] = type(consent)(
        state=consent.state, suppressed=True, suppression_reason="SUPPRESSION_REASON_HARD_BOUNCE"
    )
    m = await pipe.send(await pipe.template(), kind=policy.TRANSACTIONAL)
    assert m.last_decision["reason"] == policy.SUPPRESSED
    assert m.last_decision["consent"]["suppression_reason"] == "SUPPRESSION_REASON_HARD_BOUNCE"


async def test_erased_archived_and_missing_contacts(pipe: Pipe) -> None:
    t = await pipe.template()
    with pytest.raises(NotFound) as missing:
        await pipe.send(t)
    assert missing.value.reason == "CONTACT_NOT_FOUND"
    pipe.contacts.add(erased=True, email="")
    assert (await pipe.send(t)).last_decision["reason"] == policy.CONTACT_ERASED
    pipe.contacts.add(archived=True)
    assert (await pipe.send(t)).last_decision["reason"] == policy.CONTACT_ARCHIVED
    pipe.contacts.add(email="")
    assert (await pipe.send(t)).last_decision["reason"] == policy.NO_ADDRESS


async def test_a_merged_contact_is_decided_for_its_survivor(pipe: Pipe) -> None:
    pipe.contacts.add(SURVIVOR, email="survivor@example.com")
    pipe.contacts.merged[ADA] = SURVIVOR
    m = await pipe.send(await pipe.template())
    assert m.contact_id == SURVIVOR
    decided = m.last_decision
    assert (decided["contact_id"], decided["requested_contact_id"]) == (SURVIVOR, ADA)
    [row] = await pipe.rows("outbox")
    assert (str(row["contact_id"]), row["address"]) == (SURVIVOR, "survivor@example.com")


async def test_the_consent_used_is_the_decided_contacts_own(pipe: Pipe) -> None:
    """The consent is asked at once with the contact: an unknown or erased contact's refusal of
    that question is not the decision's failure, and a merged contact's survivor is asked."""
    asked: list[str] = []
    known = pipe.contacts.consent

    async def consent(contact_id: str, channel: str) -> ConsentUsed:
        asked.append(contact_id)
        await asyncio.sleep(0)  # answered after the contact
        found = pipe.contacts.people.get(contact_id)
        if found is None or found.erased:
            raise RuntimeError("contacts: no consent for such a contact")
        return await known(contact_id, channel)

    pipe.contacts.consent = consent  # type: ignore[method-assign]
    t = await pipe.template()
    with pytest.raises(NotFound):
        await pipe.send(t, request_id="unknown")
    pipe.contacts.add(erased=True, email="")
    assert (await pipe.send(t, request_id="erased")).last_decision[
        "reason"
    ] == policy.CONTACT_ERASED
    pipe.contacts.add(SURVIVOR, email="survivor@example.com")
    pipe.contacts.merged[ADA] = SURVIVOR
    sent = await pipe.send(t, request_id="merged")
    assert sent.last_decision["outcome"] == policy.SEND
    assert sent.last_decision["consent"]["state"] == policy.SUBSCRIBED
    assert asked[-1] == SURVIVOR


async def test_a_contact_found_by_identity(pipe: Pipe) -> None:
    pipe.contacts.add()
    t = await pipe.template()
    m = await pipe.send(t, contact_id="", identity=("email", "ada@example.com"))
    assert m.contact_id == ADA
    with pytest.raises(NotFound):
        await pipe.send(t, contact_id="", identity=("email", "nobody@example.com"))


async def test_a_render_failure_is_a_skip_naming_the_variable_not_a_crash(pipe: Pipe) -> None:
    pipe.contacts.add()
    t = await pipe.template(text="Your code: {{ data.code }}")
    m = await pipe.send(t, data={"offer": "x"})
    decided = m.last_decision
    assert (decided["outcome"], decided["reason"]) == (policy.SKIP, policy.RENDER_FAILED)
    assert "undefined variable 'data.code'" in decided["detail"]
    assert await pipe.rows("outbox") == []


async def test_a_retried_request_answers_its_first_decision(pipe: Pipe) -> None:
    pipe.contacts.add()
    t = await pipe.template()
    meta = {"request_sha256": "one"}
    first = await pipe.send(t, request_id="again", meta=meta)
    pipe.contacts.subscribe(ADA, EMAIL, "CONSENT_STATE_UNSUBSCRIBED")  # would skip now
    second = await pipe.send(t, request_id="again", meta=meta)
    assert second.message_id == first.message_id and second.status == "MESSAGE_STATUS_QUEUED"
    assert len(await pipe.events(first.message_id)) == 1
    assert len(await pipe.rows("outbox")) == 1
    with pytest.raises(RequestIdReused):
        await pipe.send(t, request_id="again", meta={"request_sha256": "another"})
    await pipe.templates.archive(t.template_id)  # the first answer still, not TEMPLATE_ARCHIVED
    third = await pipe.send(t, request_id="again", meta=meta)
    assert third.message_id == first.message_id and third.status == "MESSAGE_STATUS_QUEUED"
    with pytest.raises(Precondition):  # a new request is refused
        await pipe.send(t, request_id="after-archiving", meta=meta)


async def test_webhook_urls_only_for_webhook_templates(pipe: Pipe) -> None:
    pipe.contacts.add()
    with pytest.raises(Invalid):
        await pipe.send(await pipe.template(), webhook_url="https://hooks.example/a")


async def test_a_failed_row_write_leaves_no_decision(dsn: str) -> None:
    class Broken(pipeline_tables.PostgresDeciding):
        async def enqueue(self, rows: Sequence[tuple[Queued, datetime | None]]) -> None:
            await super().enqueue(rows)
            raise RuntimeError("disk full")

    store = await PostgresEventStore.connect(dsn, max_size=5)
    try:
        p = build(store)
        original = pipeline_tables.PostgresDeciding
        pipeline_tables.PostgresDeciding = Broken  # type: ignore[misc]
        try:
            p.contacts.add()
            t = await p.template()
            with pytest.raises(RuntimeError):
                await p.send(t, request_id="broken")
        finally:
            pipeline_tables.PostgresDeciding = original  # type: ignore[misc]
        rows = await store.pool.fetch(
            "SELECT type FROM eventstore.events WHERE stream_id LIKE 'message-%'"
        )
        assert rows == []
        assert await p.rows("outbox") == [] and await p.rows("recipients") == []
        assert await p.rows("marketing_sends") == []
    finally:
        await store.close()


async def test_two_concurrent_sends_never_both_pass_a_cap_of_one(dsn: str) -> None:
    store = await PostgresEventStore.connect(dsn, max_size=10)
    try:
        p = build(store, rules=with_cap(policy.Rules(), EMAIL, 1))
        p.contacts.add()
        t = await p.template()
        for round_ in range(5):
            p.clock.advance(timedelta(days=30))  # a fresh window each round
            ms = await asyncio.gather(*(p.send(t, request_id=f"{round_}-{i}") for i in range(2)))
            outcomes = sorted(
                (m.last_decision["outcome"], m.last_decision.get("reason", "")) for m in ms
            )
            assert outcomes == [(policy.SEND, ""), (policy.SKIP, policy.CAPPED)], outcomes
        assert len(await p.rows("outbox")) == 5
    finally:
        await store.close()


async def test_caps_and_smart_sending_count_the_window(pipe: Pipe) -> None:
    pipe.contacts.add()
    t = await pipe.template()
    assert (await pipe.send(t)).status == "MESSAGE_STATUS_QUEUED"
    pipe.clock.advance(timedelta(hours=15))
    smart = await pipe.send(t)
    assert smart.last_decision["reason"] == policy.SMART_SENDING
    last = smart.last_decision["last_marketing_send_time"]
    assert last.startswith("2026-06-01T10:00:00")
    for _ in range(2):
        pipe.clock.advance(timedelta(hours=17))
        assert (await pipe.send(t)).status == "MESSAGE_STATUS_QUEUED"
    pipe.clock.advance(timedelta(hours=17))
    capped = await pipe.send(t)
    decided = capped.last_decision
    assert (decided["reason"], decided["cap_count"], decided["cap_limit"]) == (
        policy.CAPPED,
        3,
        3,
    )
    pipe.clock.advance(timedelta(days=7))  # the first sends left the window
    assert (await pipe.send(t)).status == "MESSAGE_STATUS_QUEUED"


async def test_a_deferred_sms_is_decided_again_with_consent_as_it_is_then(pipe: Pipe) -> None:
    pipe.contacts.add()
    pipe.clock.now = datetime(2026, 6, 1, 21, 30, tzinfo=UTC)  # 23:30 in Paris
    t = await pipe.template("night", SMS)
    m = await pipe.send(t, request_id="night")
    decided = m.last_decision
    assert (decided["outcome"], decided["reason"]) == (policy.DEFER, policy.QUIET_HOURS)
    assert decided["defer_until_time"] == "2026-06-02T06:00:00Z"
    assert decided["quiet_hours"] == {"start": "21:00", "end": "08:00"}
    [timer] = await pipe.rows("timers")
    assert timer["decision"] == 2 and orjson.loads(timer["data"]) == {"offer": "tea"}
    assert await pipe.dispatcher.decide_due() == 0  # not yet
    pipe.contacts.subscribe(ADA, SMS, "CONSENT_STATE_UNSUBSCRIBED")  # withdrawn meanwhile
    pipe.clock.now = datetime(2026, 6, 2, 6, 0, tzinfo=UTC)
    assert await pipe.dispatcher.decide_due() == 1
    again = await pipe.messages.get(m.message_id)
    assert [x["decision"] for x in again.decisions] == [1, 2]
    assert (again.last_decision["outcome"], again.last_decision["reason"]) == (
        policy.SKIP,
        policy.NO_CONSENT,
    )
    assert await pipe.rows("timers") == [] and await pipe.rows("outbox") == []
    assert await pipe.dispatcher.decide_due() == 0  # once
    events = await pipe.events(m.message_id)
    assert [e.type for e in events] == [d.DECIDED, d.DECIDED]


async def test_a_timer_that_cannot_be_decided_waits_and_holds_nothing_up(pipe: Pipe) -> None:
    pipe.contacts.add()
    pipe.clock.now = datetime(2026, 6, 1, 21, 30, tzinfo=UTC)
    deferred = await pipe.send(await pipe.template("night", SMS), kind=policy.TRANSACTIONAL)
    queued = await pipe.send(await pipe.template(), kind=policy.TRANSACTIONAL)
    pipe.clock.now = datetime(2026, 6, 2, 6, 0, tzinfo=UTC)
    working = pipe.contacts.get

    async def away(contact_id: str) -> None:
        raise ConnectionError("contacts unavailable")

    pipe.contacts.get = away  # type: ignore[method-assign]
    assert await pipe.dispatcher.tick() == 1  # the queued email went; the timer waits
    assert [o.message_id for o in pipe.delivery.sent] == [queued.message_id]
    assert len(await pipe.rows("timers")) == 1
    pipe.contacts.get = working  # type: ignore[method-assign]
    assert await pipe.dispatcher.decide_due() == 1
    assert (await pipe.messages.get(deferred.message_id)).status == "MESSAGE_STATUS_QUEUED"


async def test_a_deferred_message_still_allowed_is_sent_in_the_morning(pipe: Pipe) -> None:
    pipe.contacts.add()
    pipe.clock.now = datetime(2026, 6, 1, 21, 30, tzinfo=UTC)
    m = await pipe.send(await pipe.template("night", SMS), kind=policy.TRANSACTIONAL)
    pipe.clock.now = datetime(2026, 6, 2, 6, 0, 1, tzinfo=UTC)
    # two dispatchers racing for the same timer (two replicas after a failover): one decision
    other = Dispatcher(pipe.tables, pipe.delivery, pipe.messages, Dispatching(), pipe.clock)
    done = await asyncio.gather(pipe.dispatcher.decide_due(), other.decide_due())
    assert sorted(done) == [0, 1]
    again = await pipe.messages.get(m.message_id)
    assert [x["outcome"] for x in again.decisions] == [policy.DEFER, policy.SEND]
    [row] = await pipe.rows("outbox")
    assert (row["body"], row["sender"]) == ("Hi Ada", "SHOP")


async def test_a_flow_steps_origin_is_kept_in_every_decision(pipe: Pipe) -> None:
    """What sent a message (the flow, its version, step and run; or a campaign and variant) is
    in the first decision and in the one taken after a deferral: attribution reads it there."""
    pipe.contacts.add()
    pipe.clock.now = datetime(2026, 6, 1, 21, 30, tzinfo=UTC)  # quiet hours in Paris
    t = await pipe.template("night", SMS)
    origin = d.Origin(d.FLOW, flow_id="f-1", flow_version=3, step_id="remind", run_id="r-1")
    m = await pipe.send(t, request_id="flow-step", origin=origin)
    expected = {
        "source": "flow",
        "request_id": "flow-step",
        "flow_id": "f-1",
        "flow_version": 3,
        "step_id": "remind",
        "run_id": "r-1",
    }
    assert m.last_decision["trigger"] == expected
    pipe.clock.now = datetime(2026, 6, 2, 6, 0, tzinfo=UTC)
    assert await pipe.dispatcher.decide_due() == 1
    again = await pipe.messages.get(m.message_id)
    assert [x["trigger"] for x in again.decisions] == [expected, expected]
    campaign = d.Origin(d.CAMPAIGN, campaign_id="c-1", variant="B")
    sent = await pipe.send(t, request_id="campaign-recipient", origin=campaign)
    assert sent.last_decision["trigger"] == {
        "source": "campaign",
        "request_id": "campaign-recipient",
        "campaign_id": "c-1",
        "variant": "B",
    }
    assert d.Origin.from_data(sent.last_decision["trigger"]) == campaign
