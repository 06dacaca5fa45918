"""Exactly once, as far as anyone can tell, through kill -9 (issue 11): 300 emails and 100 SMS
decided, then, while the SMTP server and the SMS gateway (real servers in their own processes)
are receiving, the delivery workers or the dispatcher (the project role) are killed with
SIGKILL mid-batch and started again on the same ports. Counting what the servers received:
every message arrived; the gateway applied each Idempotency-Key once; an email arrived twice
only under the same Message-ID, and each message's extra copies are at most its in-doubt
resends (MessageDispatched ``in_doubt``); every message ends with one MessageSent, none
failed for good, the outbox empty."""

from __future__ import annotations

import asyncio
import collections
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from crm.notifications.v1 import events_pb2 as epb
from crm.notifications.v1 import notifications_pb2 as pb
from crm.notifications.v1 import notifications_pb2_grpc as pb_grpc
from services.notifications.domain import decision as d
from shared.db import connect_pool
from tests.e2e.notifications_env import (
    Ledger,
    Suite,
    data,
    eventually,
    message_id_of,
    message_ids,
)
from tests.e2e.processes import SERVING, Proc
from tests.e2e.test_notifications_processes import fixed_zone

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]
EMAILS, SMS, CONTACTS = 300, 100, 8
# Small batches, a short lease and backoff, attempts to spare: the test finishes fast.
PROJECT_ENV = {
    "DISPATCH_BATCH_SIZE": "50",
    "DISPATCH_LEASE_SECONDS": "5",
    "DISPATCH_BACKOFF_SECONDS": "0.5",
    "DISPATCH_MAX_BACKOFF_SECONDS": "2",
    "DISPATCH_MAX_ATTEMPTS": "20",
    "LOG_LEVEL": "ERROR",  # each in-doubt resend is a warning
}
SMTP_DELAY = 0.05  # the SMTP server's time per message: a batch of 50 takes about 0.6 s
UNSENT = 10  # messages of the batch being delivered not arrived yet when the kill is sent
IN_FLIGHT = "SELECT message_id FROM notifications_pipeline.outbox WHERE in_flight"


async def decide_all(suite: Suite) -> dict[str, tuple[int, int]]:
    """EMAILS + SMS transactional messages decided SEND, to CONTACTS contacts where it is
    noon (no quiet hours); message id -> (channel, its number n, which its text carries)."""
    zone = fixed_zone(12, datetime.now(UTC))
    contacts = [
        await suite.register(f"c{i}@example.com", f"+3361234{i:04d}", zone, f"Client{i}")
        for i in range(CONTACTS)
    ]
    email = await suite.template(
        "receipt",
        epb.CHANNEL_EMAIL,
        subject="Receipt {{ data.n }}",
        text="Dear {{ contact.first_name }}, receipt {{ data.n }}",
        html="<p>Receipt <b>{{ data.n }}</b></p>",
    )
    sms = await suite.template("code", epb.CHANNEL_SMS, body="Code {{ data.n }}")
    every = (EMAILS + SMS) // SMS  # one SMS in `every` messages: each batch holds both
    plan = [
        (epb.CHANNEL_SMS, sms) if n % every == 0 else (epb.CHANNEL_EMAIL, email)
        for n in range(EMAILS + SMS)
    ]
    decided: dict[str, tuple[int, int]] = {}
    gate = asyncio.Semaphore(16)
    async with suite.serve.channel() as ch:
        api = pb_grpc.NotificationsServiceStub(ch)

        async def send(n: int, channel: int, template: str) -> None:
            async with gate:
                answer = await api.SendMessage(
                    pb.SendMessageRequest(
                        contact_id=contacts[n % CONTACTS],
                        template_id=template,
                        kind=epb.MESSAGE_KIND_TRANSACTIONAL,
                        data=data(n=n),
                        request_id=f"bulk-{n}",
                    ),
                    timeout=30,
                )
            assert answer.message.decisions[0].outcome == epb.OUTCOME_SEND
            decided[answer.message.message_id] = (channel, n)

        await asyncio.gather(*(send(n, c, t) for n, (c, t) in enumerate(plan)))
    assert len(decided) == EMAILS + SMS
    return decided


def arrived(suite: Suite) -> tuple[set[str], set[str]]:
    """The emails that reached the SMTP server, the SMS the gateway applied (message ids)."""
    texts = {str(r["key"]) for r in suite.gateway.requests() if r["applied"]}
    return set(message_ids(suite.smtp)), texts


async def in_flight(pool: asyncpg.Pool) -> set[str]:
    """The messages dispatched with no outcome recorded yet."""
    return {str(r[0]) for r in await pool.fetch(IN_FLIGHT)}


async def kill_mid_batch(suite: Suite, victim: Proc, pool: asyncpg.Pool) -> set[str]:
    """SIGKILL ``victim`` while the workers are delivering a batch: of the dispatched messages
    with no outcome yet, an email has reached the SMTP server and at least UNSENT have reached
    no server (the dispatcher takes one batch at a time and hears of it once all of it is
    sent). Returns the messages that had arrived by the kill."""

    async def delivering() -> bool:
        dispatched = await in_flight(pool)
        emails, texts = arrived(suite)
        # an email of the batch arrived (its SMS go at once, its emails one by one)
        return bool(dispatched & emails) and len(dispatched - emails - texts) >= UNSENT

    await eventually(delivering, "a batch being delivered")
    victim.kill()
    emails, texts = arrived(suite)
    return emails | texts


@pytest.mark.parametrize("victim", ["delivery", "project"])
async def test_kill_9_mid_batch_every_message_arrives_once_or_as_the_same_message(
    dsn: str, procs: list[Proc], tmp_path: Path, victim: str
) -> None:
    suite = Suite(dsn, tmp_path, procs, PROJECT_ENV, smtp_delay=SMTP_DELAY)
    pool = await connect_pool(dsn, min_size=1, max_size=1)
    try:
        await suite.start()
        decided = await decide_all(suite)
        await suite.start_project()
        killed = suite.delivery if victim == "delivery" else suite.project
        at_kill = await kill_mid_batch(suite, killed, pool)
        killed_at = asyncio.get_running_loop().time()
        killed.start()  # the same ports and settings
        await killed.wait_health(SERVING, timeout=60)

        async def all_sent() -> bool:
            sent = await pool.fetchval(
                "SELECT count(*) FROM eventstore.events WHERE type = $1", d.SENT
            )
            return bool(sent >= len(decided))

        await eventually(all_sent, "a MessageSent for every message", timeout=150)
        recovered = asyncio.get_running_loop().time() - killed_at
        assert suite.delivery.terminate(30) == 0  # lets any batch still in flight finish
        assert await pool.fetchval("SELECT count(*) FROM notifications_pipeline.outbox") == 0
    finally:
        await pool.close()
        suite.stop_sinks()
    ledger = await Ledger.read(dsn)
    check_exactly_once(suite, decided, ledger, victim, at_kill)
    print(f"kill -9 {victim}: every message sent {recovered:.1f} s after the kill")
    # The read model, through the kills, tells the same story as the log: each message SENT,
    # its steps those of the log, none applied twice.
    listed: dict[str, pb.Message] = {}

    async def read_model_follows() -> bool:
        nonlocal listed
        listed = await suite.listed(ledger.contacts())
        return all(
            m.status == pb.MESSAGE_STATUS_SENT
            and len(m.delivery) == len(ledger.steps(m.message_id))
            for m in listed.values()
        ) and set(listed) == set(decided)

    await eventually(read_model_follows, "the read model shows every message sent")
    for m in listed.values():
        assert [s.WhichOneof("step") for s in m.delivery] == ledger.steps(m.message_id)


def check_exactly_once(
    suite: Suite,
    decided: dict[str, tuple[int, int]],
    ledger: Ledger,
    victim: str,
    at_kill: set[str],
) -> None:
    emails = {m for m, (c, _) in decided.items() if c == epb.CHANNEL_EMAIL}
    texts = {m for m, (c, _) in decided.items() if c == epb.CHANNEL_SMS}
    # Every message: one MessageSent, no final failure.
    for m in decided:
        assert len(ledger.of(m, d.SENT)) == 1, (m, ledger.events[m])
        assert not [f for f in ledger.of(m, d.FAILED) if f.get("final")], ledger.events[m]
    in_doubt = {m: ledger.in_doubt(m) for m in decided}
    # The kill interrupted a batch being delivered: some of its messages had arrived, their
    # outcome never came; each was sent again in doubt, and arrived again as the same message
    # (a second copy under the same Message-ID, a replay of the same Idempotency-Key).
    interrupted = {m for m in at_kill if in_doubt[m]}
    assert interrupted, "no message that had arrived was in doubt: the kill interrupted nothing"
    copies = collections.Counter(message_id_of(e) for e in suite.smtp.messages())
    copies.update(str(r["key"]) for r in suite.gateway.requests())
    assert {m: copies[m] for m in interrupted if copies[m] < 2} == {}

    # Emails by Message-ID: each arrived, its own content; copies only from in-doubt resends.
    received = collections.Counter[str]()
    for email in suite.smtp.messages():
        m = message_id_of(email)
        assert m in emails, f"an email no message was decided for: {m}"
        n = decided[m][1]
        assert email["Subject"] == f"Receipt {n}"  # the same message under the same Message-ID
        received[m] += 1
    assert set(received) == emails, f"{len(emails - set(received))} emails never arrived"
    extra = {m: k - 1 for m, k in received.items() if k > 1}
    assert {m: k for m, k in extra.items() if k > in_doubt[m]} == {}
    assert sum(extra.values()) <= sum(in_doubt[m] for m in emails)

    # SMS by Idempotency-Key: each applied once by the gateway, the same request every time.
    requests = suite.gateway.requests()
    assert all(r["authorized"] and r["status"] == 201 for r in requests)
    by_key: dict[str, list[dict[str, object]]] = collections.defaultdict(list)
    for r in requests:
        by_key[str(r["key"])].append(r)
    assert set(by_key) == texts, "an SMS missing, or one without its message id as key"
    for m, seen in by_key.items():
        assert sum(1 for r in seen if r["applied"]) == 1, m
        assert {r["form"]["Body"] for r in seen} == {f"Code {decided[m][1]}"}  # type: ignore[index]
        assert len(seen) - 1 <= in_doubt[m], (m, len(seen), in_doubt[m])
        [sent] = ledger.of(m, d.SENT)
        assert sent["provider_id"] == seen[0]["sid"]  # the gateway's one sid, every time
    print(
        f"kill -9 {victim}: {len(at_kill)} of {len(decided)} arrived before the kill, "
        f"{len(interrupted)} of them from the interrupted batch; "
        f"in-doubt resends {sum(in_doubt.values())} "
        f"(emails {sum(in_doubt[m] for m in emails)}, SMS {sum(in_doubt[m] for m in texts)}); "
        f"emails received {sum(received.values())} ({sum(extra.values())} copies); "
        f"SMS requests {len(requests)} ({len(requests) - len(texts)} replayed)"
    )
