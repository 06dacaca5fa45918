"""The consent ledger over real gRPC, against a real PostgreSQL, with its projection: recording
and reading consent (now and as of a past instant), its history, suppression, the read model."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import grpc

from crm.contacts.v1 import consent_pb2 as pb
from services.contacts.adapters.consent_readmodel import ConsentProjection
from services.contacts.tests.conftest import ConsentEnv
from services.contacts.tests.helpers import (
    CONSENT,
    EMAIL,
    IP,
    NEVER,
    PENDING,
    PUSH,
    SMS,
    SUB,
    UA,
    UNSUB,
    dt,
    expect_error,
    ts,
)
from shared.projections.runner import ProjectionRunner


async def test_record_get_repeat_and_history(consent_env: ConsentEnv) -> None:
    cid = await consent_env.contact()
    ev = pb.ConsentEvidence(ip=IP, user_agent=UA)
    r = await consent_env.record(cid, source="checkout", policy_version="2026-01", evidence=ev)
    assert r.changed and r.contact_id == cid and not r.confirmation_token
    c = r.consent
    assert (c.channel, c.state, c.legal_basis) == (EMAIL, SUB, CONSENT)
    assert (c.source, c.policy_version, c.suppressed) == ("checkout", "2026-01", False)
    got = await consent_env.consent(cid)
    assert got[EMAIL] == c
    assert got[SMS].state == NEVER and not got[SMS].HasField("update_time")
    assert got[PUSH].state == NEVER

    before = await consent_env.event_count()
    again = await consent_env.record(cid, source="footer", policy_version="2026-01", evidence=ev)
    assert not again.changed and again.consent == c  # identical statement: no event
    assert await consent_env.event_count() == before

    await consent_env.record(cid, channel=SMS, state=UNSUB, source="sms STOP")  # opt out, never in
    await consent_env.record(cid, state=UNSUB, source="unsubscribe link")
    await consent_env.record(cid, policy_version="2026-02", legal_basis=pb.LEGAL_BASIS_CONTRACT)
    got = await consent_env.consent(cid)
    assert got[SMS].state == UNSUB and got[EMAIL].state == SUB
    assert got[EMAIL].legal_basis == pb.LEGAL_BASIS_CONTRACT

    h = await consent_env.stub.GetConsentHistory(pb.GetConsentHistoryRequest(contact_id=cid))
    assert [e.sequence for e in h.entries] == [0, 1, 2, 3] and not h.next_page_token
    assert [(e.type, e.channel, e.state) for e in h.entries] == [
        (pb.LEDGER_ENTRY_TYPE_CONSENT_GRANTED, EMAIL, SUB),
        (pb.LEDGER_ENTRY_TYPE_CONSENT_WITHDRAWN, SMS, UNSUB),
        (pb.LEDGER_ENTRY_TYPE_CONSENT_WITHDRAWN, EMAIL, UNSUB),
        (pb.LEDGER_ENTRY_TYPE_CONSENT_GRANTED, EMAIL, SUB),
    ]
    first = h.entries[0]
    assert (first.evidence.ip, first.evidence.user_agent, first.evidence_erased) == (IP, UA, False)
    assert (first.source, first.policy_version, first.legal_basis) == (
        "checkout",
        "2026-01",
        CONSENT,
    )
    assert first.record_time == c.update_time
    times = [dt(e.record_time) for e in h.entries]
    assert times == sorted(times)
    only_sms = await consent_env.stub.GetConsentHistory(
        pb.GetConsentHistoryRequest(contact_id=cid, channel=SMS)
    )
    assert [e.sequence for e in only_sms.entries] == [1]


async def test_consent_at_a_past_instant(consent_env: ConsentEnv) -> None:
    cid = await consent_env.contact()
    a = await consent_env.record(cid, policy_version="A", source="checkout")
    await asyncio.sleep(0.01)
    b = await consent_env.record(cid, state=UNSUB, source="unsubscribe link")
    t_a, t_b = dt(a.consent.update_time), dt(b.consent.update_time)
    assert t_a < t_b
    between = t_a + (t_b - t_a) / 2
    at_a = (await consent_env.consent(cid, as_of=between))[EMAIL]
    assert (at_a.state, at_a.policy_version, at_a.source) == (SUB, "A", "checkout")
    assert at_a.update_time == a.consent.update_time
    assert (await consent_env.consent(cid, as_of=t_a))[EMAIL].state == SUB
    assert (await consent_env.consent(cid, as_of=t_b))[EMAIL].state == UNSUB
    assert (await consent_env.consent(cid, as_of=t_a - timedelta(microseconds=1)))[
        EMAIL
    ].state == NEVER
    assert (await consent_env.consent(cid))[EMAIL].state == UNSUB
    # a pending request as of a past instant, and after its expiry
    r = await consent_env.record(cid, double_opt_in=True)
    t_r = dt(r.consent.update_time)
    assert (await consent_env.consent(cid, as_of=t_r))[EMAIL].state == PENDING
    consent_env.clock.offset = timedelta(days=3)
    assert (await consent_env.consent(cid, as_of=t_r + timedelta(hours=48)))[EMAIL].state == UNSUB
    await expect_error(
        consent_env.stub.GetConsent(
            pb.GetConsentRequest(
                contact_id=cid, as_of_time=ts(consent_env.clock() + timedelta(hours=1))
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_AS_OF_TIME",
    )


async def test_suppression_is_kept_apart_from_unsubscribes(consent_env: ConsentEnv) -> None:
    cid = await consent_env.contact()
    await consent_env.record(cid)
    s = await consent_env.stub.SuppressChannel(
        pb.SuppressChannelRequest(
            contact_id=cid,
            channel=EMAIL,
            reason=pb.SUPPRESSION_REASON_HARD_BOUNCE,
            note="550 5.1.1",
        )
    )
    assert s.changed and s.consent.state == SUB and s.consent.suppressed
    assert s.consent.suppression_reason == pb.SUPPRESSION_REASON_HARD_BOUNCE
    assert s.consent.suppression_note == "550 5.1.1" and s.consent.HasField("suppress_time")
    before = await consent_env.event_count()
    same = await consent_env.stub.SuppressChannel(
        pb.SuppressChannelRequest(
            contact_id=cid, channel=EMAIL, reason=pb.SUPPRESSION_REASON_HARD_BOUNCE
        )
    )
    assert not same.changed and await consent_env.event_count() == before
    await consent_env.record(cid, state=UNSUB)
    got = (await consent_env.consent(cid))[EMAIL]
    assert got.state == UNSUB and got.suppressed  # an unsubscribe does not lift it
    await consent_env.record(cid, policy_version="v2")
    got = (await consent_env.consent(cid))[EMAIL]
    assert got.state == SUB and got.suppressed  # nor does a new subscription
    # the other channels are untouched; a never-subscribed channel can be suppressed
    c = await consent_env.consent(cid)
    assert not c[SMS].suppressed
    p = await consent_env.stub.SuppressChannel(
        pb.SuppressChannelRequest(contact_id=cid, channel=PUSH, reason=pb.SUPPRESSION_REASON_MANUAL)
    )
    assert p.consent.state == NEVER and p.consent.suppressed
    u = await consent_env.stub.UnsuppressChannel(
        pb.UnsuppressChannelRequest(contact_id=cid, channel=EMAIL, note="mailbox fixed")
    )
    assert u.changed and not u.consent.suppressed and u.consent.state == SUB
    before = await consent_env.event_count()
    u2 = await consent_env.stub.UnsuppressChannel(
        pb.UnsuppressChannelRequest(contact_id=cid, channel=EMAIL)
    )
    assert not u2.changed and await consent_env.event_count() == before
    await consent_env.settle()
    c = await consent_env.consent(cid)
    assert (c[EMAIL].state, c[EMAIL].suppressed) == (SUB, False)
    assert (c[PUSH].state, c[PUSH].suppressed) == (NEVER, True)
    h = await consent_env.stub.GetConsentHistory(pb.GetConsentHistoryRequest(contact_id=cid))
    supp = [e for e in h.entries if e.type == pb.LEDGER_ENTRY_TYPE_CHANNEL_SUPPRESSED]
    assert [(e.channel, e.suppression_reason, e.note) for e in supp] == [
        (EMAIL, pb.SUPPRESSION_REASON_HARD_BOUNCE, "550 5.1.1"),
        (PUSH, pb.SUPPRESSION_REASON_MANUAL, ""),
    ]


async def test_history_pages(consent_env: ConsentEnv) -> None:
    cid = await consent_env.contact()
    for i in range(7):
        await consent_env.record(cid, channel=SMS if i % 2 else EMAIL, policy_version=f"v{i}")
    seen: list[int] = []
    token = ""
    while True:
        page = await consent_env.stub.GetConsentHistory(
            pb.GetConsentHistoryRequest(contact_id=cid, page_size=3, page_token=token)
        )
        assert len(page.entries) <= 3
        seen += [e.sequence for e in page.entries]
        token = page.next_page_token
        if not token:
            break
    assert seen == list(range(7))
    emails = await consent_env.stub.GetConsentHistory(
        pb.GetConsentHistoryRequest(contact_id=cid, page_size=2, channel=EMAIL)
    )
    assert [e.sequence for e in emails.entries] == [0, 2] and emails.next_page_token
    rest = await consent_env.stub.GetConsentHistory(
        pb.GetConsentHistoryRequest(
            contact_id=cid, page_size=2, channel=EMAIL, page_token=emails.next_page_token
        )
    )
    assert [e.sequence for e in rest.entries] == [4, 6] and not rest.next_page_token
    other = await consent_env.contact()
    for bad in [
        pb.GetConsentHistoryRequest(contact_id=cid, page_token=emails.next_page_token),
        pb.GetConsentHistoryRequest(
            contact_id=other, channel=EMAIL, page_token=emails.next_page_token
        ),
    ]:
        await expect_error(
            consent_env.stub.GetConsentHistory(bad),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_PAGE_TOKEN",
        )
    empty = await consent_env.stub.GetConsentHistory(pb.GetConsentHistoryRequest(contact_id=other))
    assert not empty.entries and not empty.next_page_token


async def test_read_model_serves_get_consent_and_replays_idempotently(
    consent_env: ConsentEnv,
) -> None:
    ids = [await consent_env.contact() for _ in range(4)]
    for i, cid in enumerate(ids):
        await consent_env.record(cid, source=f"s{i}")
        await consent_env.record(cid, channel=SMS, double_opt_in=True)
        if i % 2:
            await consent_env.record(cid, state=UNSUB)
            await consent_env.stub.SuppressChannel(
                pb.SuppressChannelRequest(
                    contact_id=cid, channel=PUSH, reason=pb.SUPPRESSION_REASON_COMPLAINT
                )
            )
    from_stream = {cid: await consent_env.consent(cid) for cid in ids}  # read model empty: folds
    await consent_env.settle()
    rows = await consent_env.store.pool.fetch(
        "SELECT * FROM consent_rm.channels ORDER BY contact_id, channel"
    )
    assert len(rows) == 4 * 2 + 2
    assert {cid: await consent_env.consent(cid) for cid in ids} == from_stream
    # a replay from position 0 changes nothing
    await consent_env.store.pool.execute(
        "UPDATE projections.checkpoints SET position = 0 WHERE name = 'consent'"
    )
    await ProjectionRunner(consent_env.store, ConsentProjection(), batch_size=3).catch_up()
    assert (
        await consent_env.store.pool.fetch(
            "SELECT * FROM consent_rm.channels ORDER BY contact_id, channel"
        )
        == rows
    )
    # GetConsent reads the read model when it is current...
    await consent_env.store.pool.execute(
        """UPDATE consent_rm.channels SET detail = jsonb_set(detail, '{terms,source}', '"rm"')
           WHERE contact_id = $1 AND channel = 'email'""",
        uuid.UUID(ids[0]),
    )
    assert (await consent_env.consent(ids[0]))[EMAIL].source == "rm"
    # ...and the stream when the read model trails it (read your writes)
    await consent_env.record(ids[0], channel=PUSH, state=UNSUB)
    got = await consent_env.consent(ids[0])
    assert got[EMAIL].source == "s0" and got[PUSH].state == UNSUB
