"""The consent ledger over real gRPC, against a real PostgreSQL, with its projection."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_status import rpc_status

from crm.contacts.v1 import consent_pb2 as pb
from crm.contacts.v1 import consent_pb2_grpc as pb_grpc
from crm.contacts.v1 import events_pb2
from services.contacts.adapters import keys
from services.contacts.adapters.consent_readmodel import ConsentProjection
from services.contacts.api.consent_servicer import SERVICE, ConsentServicer
from services.contacts.application.consent import ConsentLedgers
from services.contacts.domain import consent as domain
from shared.db import migrate
from shared.eventstore import NewEvent, StreamState
from shared.eventstore.postgres import PostgresEventStore
from shared.grpckit.errors import error_info
from shared.grpckit.server import GrpcServer
from shared.projections.runner import ProjectionRunner, ensure_schema
from shared.testing import rpc
from shared.testing.events import read_everything

EMAIL, SMS, PUSH = pb.CHANNEL_EMAIL, pb.CHANNEL_SMS, pb.CHANNEL_PUSH
SUB, UNSUB = pb.CONSENT_STATE_SUBSCRIBED, pb.CONSENT_STATE_UNSUBSCRIBED
NEVER, PENDING = pb.CONSENT_STATE_NEVER_SUBSCRIBED, pb.CONSENT_STATE_PENDING_CONFIRMATION
CONSENT = pb.LEGAL_BASIS_CONSENT
IP, UA = "203.0.113.77", "Mozilla/5.0 (SecretAgent 9.1)"


@dataclass
class Clock:
    """Real time plus an offset the test can move forward."""

    offset: timedelta = field(default_factory=timedelta)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@dataclass
class Env:
    stub: pb_grpc.ConsentServiceStub
    store: PostgresEventStore
    runner: ProjectionRunner
    clock: Clock

    async def event_count(self) -> int:
        return int(await self.store.pool.fetchval("SELECT count(*) FROM eventstore.events"))

    async def settle(self) -> None:
        await self.runner.catch_up()

    async def contact(self) -> str:
        """A registered contact with a data key (as the contacts service leaves it)."""
        cid = str(uuid.uuid4())
        event = NewEvent("crm.contacts.v1.ContactRegistered", {"contact_id": cid})
        await self.store.append(f"contact-{cid}", [event], StreamState.NO_STREAM)
        await self.store.pool.execute(  # as the contacts service does when registering
            "INSERT INTO contacts_keys.data_keys (contact_id, key) VALUES ($1, $2)",
            uuid.UUID(cid),
            os.urandom(32),
        )
        return cid

    async def erase(self, cid: str) -> None:
        event = NewEvent("crm.contacts.v1.ContactErased", {"contact_id": cid, "reason": "gdpr"})
        await self.store.append(f"contact-{cid}", [event], StreamState.ANY)
        await self.store.pool.execute(
            "UPDATE contacts_keys.data_keys SET key = NULL, destroyed_at = now()"
            " WHERE contact_id = $1",
            uuid.UUID(cid),
        )

    async def record(self, cid: str, **kw: Any) -> pb.RecordConsentResponse:
        kw.setdefault("channel", EMAIL)
        kw.setdefault("state", SUB)
        if kw["state"] == SUB:
            kw.setdefault("legal_basis", CONSENT)
        return await self.stub.RecordConsent(pb.RecordConsentRequest(contact_id=cid, **kw))

    async def consent(
        self, cid: str, as_of: datetime | None = None
    ) -> dict[int, pb.ChannelConsent]:
        req = pb.GetConsentRequest(contact_id=cid)
        if as_of is not None:
            req.as_of_time.CopyFrom(ts(as_of))
        r = await self.stub.GetConsent(req)
        return {c.channel: c for c in r.channels}


def ts(at: datetime) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(at)
    return t


def dt(t: Timestamp) -> datetime:
    return t.ToDatetime(tzinfo=UTC)


@pytest.fixture
async def env(dsn: str) -> AsyncIterator[Env]:
    store = await PostgresEventStore.connect(dsn, max_size=10)
    async with store.pool.acquire() as conn:
        # The key table comes with the contacts service's migrations; the test template may
        # not have it yet.
        if await conn.fetchval("SELECT to_regclass('contacts_keys.data_keys')") is None:
            await migrate(conn, "contacts", keys.MIGRATIONS)
        # What migrate_everything / the service's connect() will do once ConsentProjection is
        # wired in (a no-op when the schema exists).
        await ensure_schema(conn, ConsentProjection(), ConsentProjection.schema)
    servicer = ConsentServicer()
    server = GrpcServer(
        host="127.0.0.1",
        port=0,
        services=[(SERVICE, lambda s: pb_grpc.add_ConsentServiceServicer_to_server(servicer, s))],
        grace=1,
    )
    await server.start()
    clock = Clock()
    servicer.bind(ConsentLedgers(store, store.pool, clock=clock))
    await server.ready()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    yield Env(
        pb_grpc.ConsentServiceStub(channel),
        store,
        ProjectionRunner(store, ConsentProjection()),
        clock,
    )
    await channel.close()
    await server.stop()
    await store.close()


async def expect_error(call: Any, code: grpc.StatusCode, reason: str) -> list[str]:
    return await rpc.expect_error(call, code, reason, "contacts.crm")


async def test_record_get_repeat_and_history(env: Env) -> None:
    cid = await env.contact()
    ev = pb.ConsentEvidence(ip=IP, user_agent=UA)
    r = await env.record(cid, source="checkout", policy_version="2026-01", evidence=ev)
    assert r.changed and r.contact_id == cid and not r.confirmation_token
    c = r.consent
    assert (c.channel, c.state, c.legal_basis) == (EMAIL, SUB, CONSENT)
    assert (c.source, c.policy_version, c.suppressed) == ("checkout", "2026-01", False)
    got = await env.consent(cid)
    assert got[EMAIL] == c
    assert got[SMS].state == NEVER and not got[SMS].HasField("update_time")
    assert got[PUSH].state == NEVER

    before = await env.event_count()
    again = await env.record(cid, source="footer", policy_version="2026-01", evidence=ev)
    assert not again.changed and again.consent == c  # identical statement: no event
    assert await env.event_count() == before

    await env.record(cid, channel=SMS, state=UNSUB, source="sms STOP")  # opt out, never in
    await env.record(cid, state=UNSUB, source="unsubscribe link")
    await env.record(cid, policy_version="2026-02", legal_basis=pb.LEGAL_BASIS_CONTRACT)
    got = await env.consent(cid)
    assert got[SMS].state == UNSUB and got[EMAIL].state == SUB
    assert got[EMAIL].legal_basis == pb.LEGAL_BASIS_CONTRACT

    h = await env.stub.GetConsentHistory(pb.GetConsentHistoryRequest(contact_id=cid))
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
    only_sms = await env.stub.GetConsentHistory(
        pb.GetConsentHistoryRequest(contact_id=cid, channel=SMS)
    )
    assert [e.sequence for e in only_sms.entries] == [1]


async def test_double_opt_in_confirm(env: Env) -> None:
    cid = await env.contact()
    r = await env.record(cid, double_opt_in=True, source="newsletter form", policy_version="p1")
    assert r.changed and r.consent.state == PENDING
    token = r.confirmation_token
    assert len(token) == 64 and all(ch.isalnum() or ch in "-_" for ch in token)
    expire = dt(r.confirmation_expire_time)
    assert abs(expire - (env.clock() + timedelta(hours=48))) < timedelta(seconds=10)
    assert r.consent.pending.expire_time == r.confirmation_expire_time
    got = await env.consent(cid)
    assert got[EMAIL].state == PENDING and got[EMAIL].source == "newsletter form"
    # only the hash of the token is stored
    raw = await env.store.pool.fetchval("SELECT string_agg(data::text, ' ') FROM eventstore.events")
    assert token not in raw and domain.token_sha256(token) in raw

    c = await env.stub.ConfirmConsent(
        pb.ConfirmConsentRequest(token=token, evidence=pb.ConsentEvidence(ip="198.51.100.1"))
    )
    assert c.contact_id == cid and c.consent.state == SUB
    assert (c.consent.source, c.consent.policy_version, c.consent.legal_basis) == (
        "newsletter form",
        "p1",
        CONSENT,
    )
    assert not c.consent.HasField("pending")
    assert (await env.consent(cid))[EMAIL].state == SUB
    before = await env.event_count()
    await expect_error(
        env.stub.ConfirmConsent(pb.ConfirmConsentRequest(token=token)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "TOKEN_ALREADY_USED",
    )
    h = await env.stub.GetConsentHistory(pb.GetConsentHistoryRequest(contact_id=cid))
    assert [e.type for e in h.entries] == [
        pb.LEDGER_ENTRY_TYPE_CONFIRMATION_REQUESTED,
        pb.LEDGER_ENTRY_TYPE_CONSENT_CONFIRMED,
    ]
    assert h.entries[0].confirmation_expire_time == r.confirmation_expire_time
    assert h.entries[1].evidence.ip == "198.51.100.1"
    assert await env.event_count() == before


async def test_double_opt_in_expiry(env: Env) -> None:
    cid = await env.contact()
    await env.record(cid, channel=SMS, state=UNSUB)
    r = await env.record(cid, channel=SMS, double_opt_in=True)
    assert r.consent.state == PENDING
    env.clock.offset = timedelta(hours=47, minutes=59)
    assert (await env.consent(cid))[SMS].state == PENDING
    env.clock.offset = timedelta(hours=48, seconds=1)
    got = (await env.consent(cid))[SMS]
    assert got.state == UNSUB and not got.HasField("pending")  # back to the stated consent
    await env.settle()  # the read model gives the same answer
    assert (await env.consent(cid))[SMS] == got
    before = await env.event_count()
    await expect_error(
        env.stub.ConfirmConsent(pb.ConfirmConsentRequest(token=r.confirmation_token)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "TOKEN_EXPIRED",
    )
    assert await env.event_count() == before
    # a new request works, and supersedes the expired one
    again = await env.record(cid, channel=SMS, double_opt_in=True)
    assert again.confirmation_token != r.confirmation_token
    await env.stub.ConfirmConsent(pb.ConfirmConsentRequest(token=again.confirmation_token))
    assert (await env.consent(cid))[SMS].state == SUB


async def test_token_errors(env: Env) -> None:
    cid = await env.contact()
    first = (await env.record(cid, double_opt_in=True)).confirmation_token
    second = (await env.record(cid, double_opt_in=True)).confirmation_token  # a resend
    other = (await env.record(cid, channel=PUSH, double_opt_in=True)).confirmation_token
    before = await env.event_count()
    forged = domain.make_token(cid, b"\x01" * 32)
    stranger = domain.make_token(str(uuid.uuid4()), b"\x01" * 32)
    cases = [
        ("", grpc.StatusCode.INVALID_ARGUMENT, "TOKEN_REQUIRED"),
        ("not-a-token", grpc.StatusCode.INVALID_ARGUMENT, "INVALID_TOKEN"),
        (first + "AAAA", grpc.StatusCode.INVALID_ARGUMENT, "INVALID_TOKEN"),
        (forged, grpc.StatusCode.NOT_FOUND, "TOKEN_NOT_FOUND"),
        (stranger, grpc.StatusCode.NOT_FOUND, "TOKEN_NOT_FOUND"),
        (first, grpc.StatusCode.FAILED_PRECONDITION, "TOKEN_SUPERSEDED"),
    ]
    for token, code, reason in cases:
        await expect_error(
            env.stub.ConfirmConsent(pb.ConfirmConsentRequest(token=token)), code, reason
        )
    await expect_error(
        env.stub.ConfirmConsent(
            pb.ConfirmConsentRequest(token=second, evidence=pb.ConsentEvidence(ip="999.1.1.1"))
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_IP",
    )
    assert await env.event_count() == before
    await env.stub.ConfirmConsent(pb.ConfirmConsentRequest(token=second))
    await env.erase(cid)
    before = await env.event_count()
    await expect_error(
        env.stub.ConfirmConsent(pb.ConfirmConsentRequest(token=other)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "CONTACT_ERASED",
    )
    assert await env.event_count() == before


async def test_consent_at_a_past_instant(env: Env) -> None:
    cid = await env.contact()
    a = await env.record(cid, policy_version="A", source="checkout")
    await asyncio.sleep(0.01)
    b = await env.record(cid, state=UNSUB, source="unsubscribe link")
    t_a, t_b = dt(a.consent.update_time), dt(b.consent.update_time)
    assert t_a < t_b
    between = t_a + (t_b - t_a) / 2
    at_a = (await env.consent(cid, as_of=between))[EMAIL]
    assert (at_a.state, at_a.policy_version, at_a.source) == (SUB, "A", "checkout")
    assert at_a.update_time == a.consent.update_time
    assert (await env.consent(cid, as_of=t_a))[EMAIL].state == SUB
    assert (await env.consent(cid, as_of=t_b))[EMAIL].state == UNSUB
    assert (await env.consent(cid, as_of=t_a - timedelta(microseconds=1)))[EMAIL].state == NEVER
    assert (await env.consent(cid))[EMAIL].state == UNSUB
    # a pending request as of a past instant, and after its expiry
    r = await env.record(cid, double_opt_in=True)
    t_r = dt(r.consent.update_time)
    assert (await env.consent(cid, as_of=t_r))[EMAIL].state == PENDING
    env.clock.offset = timedelta(days=3)
    assert (await env.consent(cid, as_of=t_r + timedelta(hours=48)))[EMAIL].state == UNSUB
    await expect_error(
        env.stub.GetConsent(
            pb.GetConsentRequest(contact_id=cid, as_of_time=ts(env.clock() + timedelta(hours=1)))
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_AS_OF_TIME",
    )


async def test_suppression_is_kept_apart_from_unsubscribes(env: Env) -> None:
    cid = await env.contact()
    await env.record(cid)
    s = await env.stub.SuppressChannel(
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
    before = await env.event_count()
    same = await env.stub.SuppressChannel(
        pb.SuppressChannelRequest(
            contact_id=cid, channel=EMAIL, reason=pb.SUPPRESSION_REASON_HARD_BOUNCE
        )
    )
    assert not same.changed and await env.event_count() == before
    await env.record(cid, state=UNSUB)
    got = (await env.consent(cid))[EMAIL]
    assert got.state == UNSUB and got.suppressed  # an unsubscribe does not lift it
    await env.record(cid, policy_version="v2")
    got = (await env.consent(cid))[EMAIL]
    assert got.state == SUB and got.suppressed  # nor does a new subscription
    # the other channels are untouched; a never-subscribed channel can be suppressed
    c = await env.consent(cid)
    assert not c[SMS].suppressed
    p = await env.stub.SuppressChannel(
        pb.SuppressChannelRequest(contact_id=cid, channel=PUSH, reason=pb.SUPPRESSION_REASON_MANUAL)
    )
    assert p.consent.state == NEVER and p.consent.suppressed
    u = await env.stub.UnsuppressChannel(
        pb.UnsuppressChannelRequest(contact_id=cid, channel=EMAIL, note="mailbox fixed")
    )
    assert u.changed and not u.consent.suppressed and u.consent.state == SUB
    before = await env.event_count()
    u2 = await env.stub.UnsuppressChannel(
        pb.UnsuppressChannelRequest(contact_id=cid, channel=EMAIL)
    )
    assert not u2.changed and await env.event_count() == before
    await env.settle()
    c = await env.consent(cid)
    assert (c[EMAIL].state, c[EMAIL].suppressed) == (SUB, False)
    assert (c[PUSH].state, c[PUSH].suppressed) == (NEVER, True)
    h = await env.stub.GetConsentHistory(pb.GetConsentHistoryRequest(contact_id=cid))
    supp = [e for e in h.entries if e.type == pb.LEDGER_ENTRY_TYPE_CHANNEL_SUPPRESSED]
    assert [(e.channel, e.suppression_reason, e.note) for e in supp] == [
        (EMAIL, pb.SUPPRESSION_REASON_HARD_BOUNCE, "550 5.1.1"),
        (PUSH, pb.SUPPRESSION_REASON_MANUAL, ""),
    ]


async def test_evidence_is_sealed_and_erased_with_the_key(env: Env) -> None:
    cid = await env.contact()
    await env.record(cid, evidence=pb.ConsentEvidence(ip=IP, user_agent=UA), source="checkout")
    await env.record(
        cid, channel=SMS, double_opt_in=True, evidence=pb.ConsentEvidence(ip="2001:db8::7")
    )
    raw = await env.store.pool.fetchval(
        "SELECT string_agg(data::text, ' ') FROM eventstore.events WHERE stream_id = $1",
        f"consent-{cid}",
    )
    assert IP not in raw and UA not in raw and "SecretAgent" not in raw and "2001:db8" not in raw
    assert '"personal"' in raw and "checkout" in raw
    h = await env.stub.GetConsentHistory(pb.GetConsentHistoryRequest(contact_id=cid))
    assert [(e.evidence.ip, e.evidence.user_agent) for e in h.entries] == [
        (IP, UA),
        ("2001:db8::7", ""),
    ]

    await env.store.pool.execute(
        "UPDATE contacts_keys.data_keys SET key = NULL, destroyed_at = now() WHERE contact_id = $1",
        uuid.UUID(cid),
    )
    h = await env.stub.GetConsentHistory(pb.GetConsentHistoryRequest(contact_id=cid))
    assert [e.evidence_erased for e in h.entries] == [True, True]
    assert all(not e.HasField("evidence") for e in h.entries)
    # the rest of the ledger stays readable: auditors can still prove the consent
    assert h.entries[0].source == "checkout" and h.entries[0].state == SUB
    assert (await env.consent(cid))[EMAIL].state == SUB


async def test_erased_or_unknown_contacts_get_no_new_entries(env: Env) -> None:
    cid = await env.contact()
    await env.record(cid)
    await env.erase(cid)
    before = await env.event_count()
    for call in [
        env.record(cid, state=UNSUB),
        env.record(cid, evidence=pb.ConsentEvidence(ip=IP), policy_version="v9"),
        env.stub.SuppressChannel(
            pb.SuppressChannelRequest(
                contact_id=cid, channel=SMS, reason=pb.SUPPRESSION_REASON_MANUAL
            )
        ),
        env.stub.UnsuppressChannel(pb.UnsuppressChannelRequest(contact_id=cid, channel=SMS)),
    ]:
        await expect_error(call, grpc.StatusCode.FAILED_PRECONDITION, "CONTACT_ERASED")
    assert await env.event_count() == before
    # a contact merged into another: its ledger is closed, the caller learns the survivor
    merged, survivor = await env.contact(), await env.contact()
    await env.store.append(
        f"contact-{merged}",
        [
            NewEvent(
                "crm.contacts.v1.ContactMerged", {"contact_id": merged, "survivor_id": survivor}
            )
        ],
        StreamState.ANY,
    )
    before = await env.event_count()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await env.record(merged, state=UNSUB)
    detail = error_info(rpc_status.from_call(info.value))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION and detail is not None
    assert (detail.reason, detail.metadata["survivor_id"]) == ("CONTACT_MERGED", survivor)
    assert await env.event_count() == before
    # a contact without a data key cannot store evidence (nor hand out tokens)
    keyless = str(uuid.uuid4())
    await env.store.append(
        f"contact-{keyless}",
        [NewEvent("crm.contacts.v1.ContactRegistered", {"contact_id": keyless})],
        StreamState.NO_STREAM,
    )
    before = await env.event_count()
    await expect_error(
        env.record(keyless, double_opt_in=True),
        grpc.StatusCode.FAILED_PRECONDITION,
        "DATA_KEY_MISSING",
    )
    assert await env.event_count() == before
    assert (await env.record(keyless)).consent.state == SUB  # no evidence: no key needed


async def test_request_id_makes_retries_exactly_once(env: Env) -> None:
    cid = await env.contact()
    before = await env.event_count()
    req = dict(double_opt_in=True, request_id="rc-1", evidence=pb.ConsentEvidence(ip=IP))
    r1 = await env.record(cid, **req)
    r2 = await env.record(cid, **req)
    assert r1.confirmation_token == r2.confirmation_token and r1.confirmation_token
    assert r1.confirmation_expire_time == r2.confirmation_expire_time
    assert r1.consent == r2.consent and r1.changed
    assert await env.event_count() == before + 1
    confirm = pb.ConfirmConsentRequest(token=r1.confirmation_token, request_id="cf-1")
    c1 = await env.stub.ConfirmConsent(confirm)
    c2 = await env.stub.ConfirmConsent(confirm)  # a retry succeeds; a second use would not
    assert c1 == c2 and c1.consent.state == SUB
    supp = pb.SuppressChannelRequest(
        contact_id=cid, channel=SMS, reason=pb.SUPPRESSION_REASON_COMPLAINT, request_id="s-1"
    )
    await env.stub.SuppressChannel(supp)
    await env.stub.SuppressChannel(supp)
    assert await env.event_count() == before + 3
    # events carry the request id and the caller in their metadata
    h = await env.stub.GetConsentHistory(pb.GetConsentHistoryRequest(contact_id=cid))
    assert [e.request_id for e in h.entries] == ["rc-1", "cf-1", "s-1"]


async def test_actor_and_correlation_metadata(env: Env) -> None:
    cid = await env.contact()
    await env.stub.RecordConsent(
        pb.RecordConsentRequest(contact_id=cid, channel=EMAIL, state=UNSUB),
        metadata=[("x-actor", "support:alice"), ("x-correlation-id", "corr-7")],
    )
    [e] = await env.store.read_stream(f"consent-{cid}")
    assert e.metadata["actor"] == "support:alice" and e.metadata["correlation_id"] == "corr-7"
    h = await env.stub.GetConsentHistory(pb.GetConsentHistoryRequest(contact_id=cid))
    assert h.entries[0].actor == "support:alice"


async def test_history_pages(env: Env) -> None:
    cid = await env.contact()
    for i in range(7):
        await env.record(cid, channel=SMS if i % 2 else EMAIL, policy_version=f"v{i}")
    seen: list[int] = []
    token = ""
    while True:
        page = await env.stub.GetConsentHistory(
            pb.GetConsentHistoryRequest(contact_id=cid, page_size=3, page_token=token)
        )
        assert len(page.entries) <= 3
        seen += [e.sequence for e in page.entries]
        token = page.next_page_token
        if not token:
            break
    assert seen == list(range(7))
    emails = await env.stub.GetConsentHistory(
        pb.GetConsentHistoryRequest(contact_id=cid, page_size=2, channel=EMAIL)
    )
    assert [e.sequence for e in emails.entries] == [0, 2] and emails.next_page_token
    rest = await env.stub.GetConsentHistory(
        pb.GetConsentHistoryRequest(
            contact_id=cid, page_size=2, channel=EMAIL, page_token=emails.next_page_token
        )
    )
    assert [e.sequence for e in rest.entries] == [4, 6] and not rest.next_page_token
    other = await env.contact()
    for bad in [
        pb.GetConsentHistoryRequest(contact_id=cid, page_token=emails.next_page_token),
        pb.GetConsentHistoryRequest(
            contact_id=other, channel=EMAIL, page_token=emails.next_page_token
        ),
    ]:
        await expect_error(
            env.stub.GetConsentHistory(bad), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN"
        )
    empty = await env.stub.GetConsentHistory(pb.GetConsentHistoryRequest(contact_id=other))
    assert not empty.entries and not empty.next_page_token


async def test_read_model_serves_get_consent_and_replays_idempotently(env: Env) -> None:
    ids = [await env.contact() for _ in range(4)]
    for i, cid in enumerate(ids):
        await env.record(cid, source=f"s{i}")
        await env.record(cid, channel=SMS, double_opt_in=True)
        if i % 2:
            await env.record(cid, state=UNSUB)
            await env.stub.SuppressChannel(
                pb.SuppressChannelRequest(
                    contact_id=cid, channel=PUSH, reason=pb.SUPPRESSION_REASON_COMPLAINT
                )
            )
    from_stream = {cid: await env.consent(cid) for cid in ids}  # read model empty: folds
    await env.settle()
    rows = await env.store.pool.fetch(
        "SELECT * FROM consent_rm.channels ORDER BY contact_id, channel"
    )
    assert len(rows) == 4 * 2 + 2
    assert {cid: await env.consent(cid) for cid in ids} == from_stream
    # a replay from position 0 changes nothing
    await env.store.pool.execute(
        "UPDATE projections.checkpoints SET position = 0 WHERE name = 'consent'"
    )
    await ProjectionRunner(env.store, ConsentProjection(), batch_size=3).catch_up()
    assert (
        await env.store.pool.fetch("SELECT * FROM consent_rm.channels ORDER BY contact_id, channel")
        == rows
    )
    # GetConsent reads the read model when it is current...
    await env.store.pool.execute(
        """UPDATE consent_rm.channels SET detail = jsonb_set(detail, '{terms,source}', '"rm"')
           WHERE contact_id = $1 AND channel = 'email'""",
        uuid.UUID(ids[0]),
    )
    assert (await env.consent(ids[0]))[EMAIL].source == "rm"
    # ...and the stream when the read model trails it (read your writes)
    await env.record(ids[0], channel=PUSH, state=UNSUB)
    got = await env.consent(ids[0])
    assert got[EMAIL].source == "s0" and got[PUSH].state == UNSUB


async def test_concurrent_writes_to_one_ledger_all_land(env: Env) -> None:
    cid = await env.contact()
    results = await asyncio.gather(
        env.record(cid, channel=EMAIL),
        env.record(cid, channel=SMS, state=UNSUB),
        env.stub.SuppressChannel(
            pb.SuppressChannelRequest(
                contact_id=cid, channel=PUSH, reason=pb.SUPPRESSION_REASON_MANUAL
            )
        ),
    )
    assert all(r.changed for r in results)
    got = await env.consent(cid)
    assert (got[EMAIL].state, got[SMS].state, got[PUSH].suppressed) == (SUB, UNSUB, True)
    versions = [e.version for e in await env.store.read_stream(f"consent-{cid}")]
    assert versions == [0, 1, 2]


async def test_every_appended_event_decodes_as_its_published_message(env: Env) -> None:
    cid = await env.contact()
    await env.record(
        cid, evidence=pb.ConsentEvidence(ip=IP, user_agent=UA), occur_time=ts(env.clock())
    )
    r = await env.record(cid, channel=SMS, double_opt_in=True, policy_version="p", source="form")
    await env.stub.ConfirmConsent(
        pb.ConfirmConsentRequest(token=r.confirmation_token, evidence=pb.ConsentEvidence(ip=IP))
    )
    await env.record(cid, state=UNSUB, legal_basis=pb.LEGAL_BASIS_LEGITIMATE_INTEREST)
    await env.stub.SuppressChannel(
        pb.SuppressChannelRequest(
            contact_id=cid, channel=EMAIL, reason=pb.SUPPRESSION_REASON_HARD_BOUNCE, note="n"
        )
    )
    await env.stub.UnsuppressChannel(
        pb.UnsuppressChannelRequest(contact_id=cid, channel=EMAIL, note="ok")
    )
    page_events = await read_everything(env.store, categories=["consent"])
    assert {e.type for e in page_events} == set(domain.TYPES)
    for e in page_events:
        message: Any = rpc.published_message(e, events_pb2)
        assert message.contact_id == cid
        assert e.metadata["schema"] == 1 and "correlation_id" in e.metadata
        if "personal" in e.data:  # the sealed blob holds a PersonalData with the evidence
            key = await keys.DataKeys(env.store.pool).get(cid)
            opened, erased = keys.unseal(key, cid, e.data)
            personal = json_format.ParseDict(
                {"evidence": opened["evidence"]}, events_pb2.PersonalData()
            )
            assert personal.evidence.ip == IP and not erased


def unknown(number: int) -> Any:
    """An enum number the proto does not define (what an older or newer client may send)."""
    return number


def _long(n: int) -> str:
    return "x" * n


Make = Callable[[str], Any]
BAD_INPUT: list[tuple[str, str, Make, grpc.StatusCode, str]] = [
    # (name, method, request from a real contact id, code, reason)
    (
        "no-contact-id",
        "RecordConsent",
        lambda c: pb.RecordConsentRequest(channel=EMAIL, state=UNSUB),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_CONTACT_ID",
    ),
    (
        "bad-contact-id",
        "RecordConsent",
        lambda c: pb.RecordConsentRequest(contact_id="123", channel=EMAIL, state=UNSUB),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_CONTACT_ID",
    ),
    (
        "unknown-contact",
        "RecordConsent",
        lambda c: pb.RecordConsentRequest(contact_id=str(uuid.uuid4()), channel=EMAIL, state=UNSUB),
        grpc.StatusCode.NOT_FOUND,
        "CONTACT_NOT_FOUND",
    ),
    (
        "no-channel",
        "RecordConsent",
        lambda c: pb.RecordConsentRequest(contact_id=c, state=SUB, legal_basis=CONSENT),
        grpc.StatusCode.INVALID_ARGUMENT,
        "CHANNEL_REQUIRED",
    ),
    (
        "unknown-channel",
        "RecordConsent",
        lambda c: pb.RecordConsentRequest(
            contact_id=c, channel=unknown(99), state=SUB, legal_basis=CONSENT
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_CHANNEL",
    ),
    (
        "no-state",
        "RecordConsent",
        lambda c: pb.RecordConsentRequest(contact_id=c, channel=EMAIL, legal_basis=CONSENT),
        grpc.StatusCode.INVALID_ARGUMENT,
        "STATE_REQUIRED",
    ),
    (
        "state-never",
        "RecordConsent",
        lambda c: pb.RecordConsentRequest(contact_id=c, channel=EMAIL, state=NEVER),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_STATE",
    ),
    (
        "state-pending",
        "RecordConsent",
        lambda c: pb.RecordConsentRequest(
            contact_id=c, channel=EMAIL, state=PENDING, legal_basis=CONSENT
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_STATE",
    ),
    (
        "unknown-state",
        "RecordConsent",
        lambda c: pb.RecordConsentRequest(
            contact_id=c, channel=EMAIL, state=unknown(42), legal_basis=CONSENT
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_STATE",
    ),
    (
        "no-legal-basis",
        "RecordConsent",
        lambda c: pb.RecordConsentRequest(contact_id=c, channel=EMAIL, state=SUB),
        grpc.StatusCode.INVALID_ARGUMENT,
        "LEGAL_BASIS_REQUIRED",
    ),
    (
        "unknown-legal-basis",
        "RecordConsent",
        lambda c: pb.RecordConsentRequest(
            contact_id=c, channel=EMAIL, state=SUB, legal_basis=unknown(77)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_LEGAL_BASIS",
    ),
    (
        "long-source",
        "RecordConsent",
        lambda c: pb.RecordConsentRequest(
            contact_id=c, channel=EMAIL, state=SUB, legal_basis=CONSENT, source=_long(201)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "FIELD_TOO_LONG",
    ),
    (
        "long-policy",
        "RecordConsent",
        lambda c: pb.RecordConsentRequest(
            contact_id=c, channel=EMAIL, state=SUB, legal_basis=CONSENT, policy_version=_long(65)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "FIELD_TOO_LONG",
    ),
    (
        "long-user-agent",
        "RecordConsent",
        lambda c: pb.RecordConsentRequest(
            contact_id=c,
            channel=EMAIL,
            state=SUB,
            legal_basis=CONSENT,
            evidence=pb.ConsentEvidence(user_agent=_long(513)),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "FIELD_TOO_LONG",
    ),
    (
        "bad-ip",
        "RecordConsent",
        lambda c: pb.RecordConsentRequest(
            contact_id=c,
            channel=EMAIL,
            state=SUB,
            legal_basis=CONSENT,
            evidence=pb.ConsentEvidence(ip="10.0.0.256"),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_IP",
    ),
    (
        "double-opt-in-unsubscribe",
        "RecordConsent",
        lambda c: pb.RecordConsentRequest(
            contact_id=c, channel=EMAIL, state=UNSUB, double_opt_in=True
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_DOUBLE_OPT_IN",
    ),
    (
        "future-occur-time",
        "RecordConsent",
        lambda c: pb.RecordConsentRequest(
            contact_id=c,
            channel=EMAIL,
            state=UNSUB,
            occur_time=ts(datetime.now(UTC) + timedelta(days=1)),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_OCCUR_TIME",
    ),
    (
        "bad-occur-time",
        "RecordConsent",
        lambda c: pb.RecordConsentRequest(
            contact_id=c, channel=EMAIL, state=UNSUB, occur_time=Timestamp(seconds=2**62)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_OCCUR_TIME",
    ),
    (
        "long-request-id",
        "RecordConsent",
        lambda c: pb.RecordConsentRequest(
            contact_id=c, channel=EMAIL, state=UNSUB, request_id=_long(129)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_REQUEST_ID",
    ),
    (
        "no-token",
        "ConfirmConsent",
        lambda c: pb.ConfirmConsentRequest(),
        grpc.StatusCode.INVALID_ARGUMENT,
        "TOKEN_REQUIRED",
    ),
    (
        "bad-token",
        "ConfirmConsent",
        lambda c: pb.ConfirmConsentRequest(token="../../etc/passwd"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_TOKEN",
    ),
    (
        "unknown-token",
        "ConfirmConsent",
        lambda c: pb.ConfirmConsentRequest(token=domain.make_token(c, bytes(32))),
        grpc.StatusCode.NOT_FOUND,
        "TOKEN_NOT_FOUND",
    ),
    (
        "confirm-long-request-id",
        "ConfirmConsent",
        lambda c: pb.ConfirmConsentRequest(token="x", request_id=_long(129)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_REQUEST_ID",
    ),
    (
        "get-no-contact-id",
        "GetConsent",
        lambda c: pb.GetConsentRequest(),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_CONTACT_ID",
    ),
    (
        "get-unknown-contact",
        "GetConsent",
        lambda c: pb.GetConsentRequest(contact_id=str(uuid.uuid4())),
        grpc.StatusCode.NOT_FOUND,
        "CONTACT_NOT_FOUND",
    ),
    (
        "get-unknown-contact-as-of",
        "GetConsent",
        lambda c: pb.GetConsentRequest(
            contact_id=str(uuid.uuid4()), as_of_time=ts(datetime.now(UTC))
        ),
        grpc.StatusCode.NOT_FOUND,
        "CONTACT_NOT_FOUND",
    ),
    (
        "get-future",
        "GetConsent",
        lambda c: pb.GetConsentRequest(
            contact_id=c, as_of_time=ts(datetime.now(UTC) + timedelta(days=1))
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_AS_OF_TIME",
    ),
    (
        "get-bad-as-of",
        "GetConsent",
        lambda c: pb.GetConsentRequest(contact_id=c, as_of_time=Timestamp(seconds=-(2**62))),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_AS_OF_TIME",
    ),
    (
        "history-bad-contact-id",
        "GetConsentHistory",
        lambda c: pb.GetConsentHistoryRequest(contact_id="nope"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_CONTACT_ID",
    ),
    (
        "history-unknown-contact",
        "GetConsentHistory",
        lambda c: pb.GetConsentHistoryRequest(contact_id=str(uuid.uuid4())),
        grpc.StatusCode.NOT_FOUND,
        "CONTACT_NOT_FOUND",
    ),
    (
        "history-negative-page",
        "GetConsentHistory",
        lambda c: pb.GetConsentHistoryRequest(contact_id=c, page_size=-1),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PAGE_SIZE",
    ),
    (
        "history-huge-page",
        "GetConsentHistory",
        lambda c: pb.GetConsentHistoryRequest(contact_id=c, page_size=5000),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PAGE_SIZE",
    ),
    (
        "history-bad-token",
        "GetConsentHistory",
        lambda c: pb.GetConsentHistoryRequest(contact_id=c, page_token="garbage"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PAGE_TOKEN",
    ),
    (
        "history-unknown-channel",
        "GetConsentHistory",
        lambda c: pb.GetConsentHistoryRequest(contact_id=c, channel=unknown(7)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_CHANNEL",
    ),
    (
        "suppress-no-channel",
        "SuppressChannel",
        lambda c: pb.SuppressChannelRequest(contact_id=c, reason=pb.SUPPRESSION_REASON_MANUAL),
        grpc.StatusCode.INVALID_ARGUMENT,
        "CHANNEL_REQUIRED",
    ),
    (
        "suppress-unknown-channel",
        "SuppressChannel",
        lambda c: pb.SuppressChannelRequest(
            contact_id=c, channel=unknown(9), reason=pb.SUPPRESSION_REASON_MANUAL
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_CHANNEL",
    ),
    (
        "suppress-no-reason",
        "SuppressChannel",
        lambda c: pb.SuppressChannelRequest(contact_id=c, channel=EMAIL),
        grpc.StatusCode.INVALID_ARGUMENT,
        "REASON_REQUIRED",
    ),
    (
        "suppress-unknown-reason",
        "SuppressChannel",
        lambda c: pb.SuppressChannelRequest(contact_id=c, channel=EMAIL, reason=unknown(12)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_REASON",
    ),
    (
        "suppress-long-note",
        "SuppressChannel",
        lambda c: pb.SuppressChannelRequest(
            contact_id=c, channel=EMAIL, reason=pb.SUPPRESSION_REASON_MANUAL, note=_long(501)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "FIELD_TOO_LONG",
    ),
    (
        "suppress-bad-contact-id",
        "SuppressChannel",
        lambda c: pb.SuppressChannelRequest(
            contact_id="x", channel=EMAIL, reason=pb.SUPPRESSION_REASON_MANUAL
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_CONTACT_ID",
    ),
    (
        "suppress-unknown-contact",
        "SuppressChannel",
        lambda c: pb.SuppressChannelRequest(
            contact_id=str(uuid.uuid4()), channel=EMAIL, reason=pb.SUPPRESSION_REASON_MANUAL
        ),
        grpc.StatusCode.NOT_FOUND,
        "CONTACT_NOT_FOUND",
    ),
    (
        "unsuppress-no-channel",
        "UnsuppressChannel",
        lambda c: pb.UnsuppressChannelRequest(contact_id=c),
        grpc.StatusCode.INVALID_ARGUMENT,
        "CHANNEL_REQUIRED",
    ),
    (
        "unsuppress-long-note",
        "UnsuppressChannel",
        lambda c: pb.UnsuppressChannelRequest(contact_id=c, channel=SMS, note=_long(501)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "FIELD_TOO_LONG",
    ),
    (
        "unsuppress-unknown-contact",
        "UnsuppressChannel",
        lambda c: pb.UnsuppressChannelRequest(contact_id=str(uuid.uuid4()), channel=SMS),
        grpc.StatusCode.NOT_FOUND,
        "CONTACT_NOT_FOUND",
    ),
]


@pytest.mark.parametrize(
    ("method", "make", "code", "reason"),
    [case[1:] for case in BAD_INPUT],
    ids=[case[0] for case in BAD_INPUT],
)
async def test_bad_input_is_a_clear_error_and_writes_nothing(
    env: Env, method: str, make: Make, code: grpc.StatusCode, reason: str
) -> None:
    cid = await env.contact()
    await env.record(
        cid, channel=PUSH
    )  # a ledger that exists, so "nothing written" means something
    before = await env.event_count()
    await expect_error(getattr(env.stub, method)(make(cid)), code, reason)
    assert await env.event_count() == before


async def test_validation_reports_every_field(env: Env) -> None:
    cid = await env.contact()
    violations = await expect_error(
        env.stub.RecordConsent(
            pb.RecordConsentRequest(
                contact_id=cid,
                channel=EMAIL,
                state=SUB,
                evidence=pb.ConsentEvidence(ip="nope"),
                occur_time=ts(datetime.now(UTC) + timedelta(days=3)),
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "LEGAL_BASIS_REQUIRED",
    )
    # (an over-long field would be refused before this: the request limits come first)
    assert violations == ["legal_basis", "evidence.ip", "occur_time"]
