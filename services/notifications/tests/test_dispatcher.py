"""The dispatcher on a real store and its tables, the delivery workers faked: dispatched and
committed before delivery, outcomes recorded, retries with backoff, final failures, and the
in-doubt resend after a crash between dispatch and outcome (same message id, counted, never
forgotten). List-Unsubscribe on marketing email. Test messages."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from services.notifications.application.dispatcher import Dispatching, retry_at
from services.notifications.domain import decision as d
from services.notifications.domain import policy
from services.notifications.domain.unsubscribe import Unsubscribe
from services.notifications.tests.pipeline_env import NOON, Pipe, build
from shared.eventstore.postgres import PostgresEventStore
from shared.metrics import NOTIFICATIONS_IN_DOUBT, NOTIFICATIONS_SENT


def _sent(channel: str, outcome: str) -> float:
    return NOTIFICATIONS_SENT.labels(channel=channel, outcome=outcome)._value.get()


def _in_doubt(channel: str) -> float:
    return NOTIFICATIONS_IN_DOUBT.labels(channel=channel)._value.get()


async def test_a_queued_message_is_dispatched_then_sent_and_retired(pipe: Pipe) -> None:
    pipe.contacts.add()
    m = await pipe.send(await pipe.template())
    before = _sent("email", "sent")
    assert await pipe.dispatcher.tick() == 1
    [out] = pipe.delivery.sent
    assert (out.message_id, out.to, out.attempt, out.subject) == (
        m.message_id,
        "ada@example.com",
        1,
        "Hi Ada",
    )
    events = await pipe.events(m.message_id)
    assert [e.type for e in events] == [d.DECIDED, d.DISPATCHED, d.SENT]
    assert events[2].data == {"message_id": m.message_id, "attempt": 1, "detail": "250 2.0.0 OK"}
    assert await pipe.rows("outbox") == []
    assert _sent("email", "sent") == before + 1
    assert (await pipe.messages.get(m.message_id)).status == "MESSAGE_STATUS_SENT"
    assert await pipe.dispatcher.tick() == 0  # nothing twice


async def test_dispatched_is_committed_before_the_workers_are_called(pipe: Pipe) -> None:
    pipe.contacts.add()
    m = await pipe.send(await pipe.template())
    seen: list[list[str]] = []
    original = pipe.delivery.deliver

    async def looking(messages):  # type: ignore[no-untyped-def]
        seen.append([e.type for e in await pipe.events(m.message_id)])
        [row] = await pipe.rows("outbox")
        assert row["in_flight"] and row["attempt"] == 1
        return await original(messages)

    pipe.delivery.deliver = looking  # type: ignore[method-assign]
    await pipe.dispatcher.tick()
    assert seen == [[d.DECIDED, d.DISPATCHED]]


async def test_retries_back_off_until_the_last_attempt_fails_for_good(dsn: str) -> None:
    store = await PostgresEventStore.connect(dsn, max_size=5)
    try:
        config = Dispatching(max_attempts=3, backoff=timedelta(seconds=30))
        p = build(store, config=config)
        p.contacts.add()
        m = await p.send(await p.template())
        p.delivery.status = "retry"
        failed_before = _sent("email", "failed")
        await p.dispatcher.tick()
        [row] = await p.rows("outbox")
        assert (row["attempt"], row["in_flight"], row["due_at"]) == (
            1,
            False,
            NOON + timedelta(seconds=30),
        )
        assert await p.dispatcher.tick() == 0  # not due yet
        p.clock.advance(timedelta(seconds=30))
        await p.dispatcher.tick()
        [row] = await p.rows("outbox")
        assert row["due_at"] == p.clock.now + timedelta(seconds=60)  # doubled
        p.clock.advance(timedelta(seconds=60))
        await p.dispatcher.tick()
        assert await p.rows("outbox") == []
        assert [o.attempt for o in p.delivery.sent] == [1, 2, 3]
        failures = [e.data for e in await p.events(m.message_id) if e.type == d.FAILED]
        assert [("retry_time" in f, f.get("final", False)) for f in failures] == [
            (True, False),
            (True, False),
            (False, True),
        ]
        assert (await p.messages.get(m.message_id)).status == "MESSAGE_STATUS_FAILED"
        assert _sent("email", "failed") == failed_before + 1
    finally:
        await store.close()


async def test_a_rejected_message_fails_at_once(pipe: Pipe) -> None:
    pipe.contacts.add()
    m = await pipe.send(await pipe.template())
    pipe.delivery.status = "rejected"
    await pipe.dispatcher.tick()
    [failed] = [e.data for e in await pipe.events(m.message_id) if e.type == d.FAILED]
    assert failed["final"] and failed["attempt"] == 1
    assert await pipe.rows("outbox") == []


async def test_a_batch_records_each_outcome_with_its_own_row(pipe: Pipe) -> None:
    """One batch, three answers (recorded in one transaction): each message gets its own
    event, the sent and the rejected rows are retired, the one to retry is due again."""
    ids = [f"6f1c0e2a-1b7d-4c55-9a0e-3e2d1c4b5a6{n}" for n in range(3)]
    template = await pipe.template()
    sent = []
    for n, cid in enumerate(ids):
        pipe.contacts.add(cid, email=f"reader{n}@example.com")
        sent.append(await pipe.send(template, contact_id=cid, request_id=f"batch-{n}"))
    ok, later, refused = (m.message_id for m in sent)
    pipe.delivery.answers = {later: "retry", refused: "rejected"}
    counts = [_sent("email", o) for o in ("sent", "retry", "failed")]
    assert await pipe.dispatcher.tick() == 3
    assert len(pipe.delivery.batches) == 1
    last = {m: (await pipe.events(m))[-1] for m in (ok, later, refused)}
    assert (last[ok].type, last[ok].data["attempt"]) == (d.SENT, 1)
    assert last[later].type == d.FAILED and "retry_time" in last[later].data
    assert last[refused].type == d.FAILED and last[refused].data["final"] is True
    [row] = await pipe.rows("outbox")
    assert (str(row["message_id"]), row["in_flight"], row["attempt"]) == (later, False, 1)
    assert row["due_at"] == NOON + Dispatching().backoff
    assert [_sent("email", o) for o in ("sent", "retry", "failed")] == [c + 1 for c in counts]


def test_backoff_doubles_and_is_capped() -> None:
    c = Dispatching(backoff=timedelta(seconds=10), max_backoff=timedelta(seconds=50))
    assert [retry_at(NOON, n, c) - NOON for n in (1, 2, 3, 4)] == [
        timedelta(seconds=s) for s in (10, 20, 40, 50)
    ]


async def test_a_crash_between_dispatch_and_outcome_is_resent_with_the_same_id(
    pipe: Pipe,
) -> None:
    pipe.contacts.add()
    m = await pipe.send(await pipe.template())
    pipe.delivery.hang = True
    tick = asyncio.create_task(pipe.dispatcher.tick())
    while not pipe.delivery.batches:
        await asyncio.sleep(0.01)
    tick.cancel()  # the dispatcher dies while the workers hold the batch
    await asyncio.gather(tick, return_exceptions=True)
    assert [e.type for e in await pipe.events(m.message_id)] == [d.DECIDED, d.DISPATCHED]
    pipe.delivery.hang = False
    assert await pipe.dispatcher.tick() == 0  # in flight until its lease ends
    before = _in_doubt("email")
    pipe.clock.advance(Dispatching().lease)
    assert await pipe.dispatcher.tick() == 1
    first, second = pipe.delivery.sent
    assert (second.message_id, second.attempt) == (first.message_id, 2)
    assert _in_doubt("email") == before + 1
    events = await pipe.events(m.message_id)
    assert [e.type for e in events] == [d.DECIDED, d.DISPATCHED, d.DISPATCHED, d.SENT]
    assert events[2].data["in_doubt"] is True and events[3].data["attempt"] == 2
    assert await pipe.rows("outbox") == []


async def test_unreachable_workers_leave_the_batch_in_doubt_never_forgotten(dsn: str) -> None:
    store = await PostgresEventStore.connect(dsn, max_size=5)
    try:
        p = build(store, config=Dispatching(max_attempts=2))
        p.contacts.add()
        m = await p.send(await p.template())
        p.delivery.down = True
        for _ in range(3):
            await p.dispatcher.tick()
            p.clock.advance(Dispatching().lease)
        events = await p.events(m.message_id)
        assert [e.type for e in events] == [d.DECIDED, d.DISPATCHED, d.DISPATCHED, d.FAILED]
        assert events[-1].data["final"] is True
        assert "in doubt" in events[-1].data["detail"]
        assert await p.rows("outbox") == []
        assert len(p.delivery.sent) == 2
    finally:
        await store.close()


async def test_marketing_email_carries_signed_one_click_unsubscribe_headers(dsn: str) -> None:
    store = await PostgresEventStore.connect(dsn, max_size=5)
    try:
        unsubscribe = Unsubscribe("https://t.shop.example", b"s3cret", "unsubscribe@shop.example")
        p = build(store, unsubscribe=unsubscribe)
        p.contacts.add()
        t = await p.template()
        news = await p.send(t)
        receipt = await p.send(t, kind=policy.TRANSACTIONAL)
        await p.dispatcher.tick()
        by_id = {o.message_id: dict(o.headers) for o in p.delivery.sent}
        assert by_id[receipt.message_id] == {}
        headers = by_id[news.message_id]
        token = unsubscribe.token(news.message_id)
        assert headers["List-Unsubscribe"] == (
            f"<https://t.shop.example/u/{token}>, "
            f"<mailto:unsubscribe@shop.example?subject=unsubscribe%20{token}>"
        )
        assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert unsubscribe.message_of(token) == news.message_id
        assert "ada" not in token.lower()
        forged = Unsubscribe("https://t.shop.example", b"other", "")
        assert forged.message_of(token) is None
    finally:
        await store.close()


async def test_a_test_message_is_sent_marked_and_never_counted(pipe: Pipe) -> None:
    pipe.contacts.add()
    t = await pipe.template()
    sample = {"contact": {"first_name": "Sam"}, "data": {"offer": "x"}}
    test = await pipe.messages.send_test(t, 0, "qa@shop.example", sample, "", request_id="qa")
    decided = test.last_decision
    assert test.test and decided["test"] and decided["trigger"]["source"] == "test"
    assert await pipe.rows("marketing_sends") == []
    await pipe.dispatcher.tick()
    [out] = pipe.delivery.sent
    assert (out.to, out.subject, out.test) == ("qa@shop.example", "Hi Sam", True)
    assert (await pipe.send(t)).status == "MESSAGE_STATUS_QUEUED"  # the cap saw nothing


async def test_a_providers_answer_keeps_no_address_in_the_log(pipe: Pipe) -> None:
    pipe.contacts.add()
    m = await pipe.send(await pipe.template())
    pipe.delivery.status = "rejected"
    pipe.delivery.detail = "550 5.1.1 <Ada@Example.com>: unknown user; cc bob@example.org"
    await pipe.dispatcher.tick()
    failed = (await pipe.events(m.message_id))[-1]
    assert failed.type == d.FAILED
    assert failed.data["detail"] == "550 5.1.1 <<recipient>>: unknown user; cc <address>"


async def test_nothing_is_handed_over_while_the_workers_cannot_be_reached(pipe: Pipe) -> None:
    """An outage uses up no attempt: the messages wait, then go when the workers are back."""
    pipe.contacts.add()
    m = await pipe.send(await pipe.template())
    pipe.delivery.reachable = False
    for _ in range(10):  # ten leases' worth of ticks: nothing dispatched, nothing in doubt
        assert await pipe.dispatcher.tick() == 0
        pipe.clock.advance(timedelta(minutes=5))
    assert pipe.delivery.batches == []
    assert [e.type for e in await pipe.events(m.message_id)] == [d.DECIDED]
    pipe.delivery.reachable = True
    await pipe.dispatcher.tick()
    events = await pipe.events(m.message_id)
    assert [e.type for e in events] == [d.DECIDED, d.DISPATCHED, d.SENT]
    assert "in_doubt" not in events[1].data and events[1].data["attempt"] == 1


async def test_a_batch_is_claimed_while_the_last_one_is_with_the_workers(dsn: str) -> None:
    """Two pipelines: while the first batch is with the workers (held), the second loop claims
    and delivers the next one; every message is handed over once and sent once."""
    store = await PostgresEventStore.connect(dsn, max_size=10)
    try:
        p = build(store, config=Dispatching(batch_size=2, pipelines=2, poll_seconds=0.01))
        template = await p.template()
        for n in range(4):
            cid = f"6f1c0e2a-1b7d-4c55-9a0e-3e2d1c4b5a{n:02d}"
            p.contacts.add(cid, email=f"p{n}@example.com")
            await p.send(template, contact_id=cid, request_id=f"pipe-{n}")
        held, original = asyncio.Event(), p.delivery.deliver
        calls = 0

        async def first_held(messages):  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            if calls == 1:
                await held.wait()  # the first batch stays with the workers
            return await original(messages)

        p.delivery.deliver = first_held  # type: ignore[method-assign]
        stop = asyncio.Event()
        running = asyncio.create_task(p.dispatcher.run(stop))

        async def outbox_has(n: int) -> None:
            while len(await p.rows("outbox")) != n:
                await asyncio.sleep(0.01)

        try:  # the second batch sent and recorded while the first is held
            await asyncio.wait_for(outbox_has(2), timeout=10)
            assert len(p.delivery.batches) == 1
            held.set()
            await asyncio.wait_for(outbox_has(0), timeout=10)
        finally:
            held.set()
            stop.set()
            await running
        sent = [m.message_id for m in p.delivery.sent]
        assert len(sent) == 4 and len(set(sent)) == 4
        for message_id in sent:
            types = [e.type for e in await p.events(message_id)]
            assert types == [d.DECIDED, d.DISPATCHED, d.SENT]
    finally:
        await store.close()
