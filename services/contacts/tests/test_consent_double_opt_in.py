"""Double opt-in over real gRPC: a request and its token, then its confirmation, its expiry, or
a clear error for a token that cannot confirm."""

from __future__ import annotations

import uuid
from datetime import timedelta

import grpc

from crm.contacts.v1 import consent_pb2 as pb
from services.contacts.domain import consent as domain
from services.contacts.tests.conftest import ConsentEnv
from services.contacts.tests.helpers import (
    CONSENT,
    EMAIL,
    PENDING,
    PUSH,
    SMS,
    SUB,
    UNSUB,
    dt,
    expect_error,
)


async def test_double_opt_in_confirm(consent_env: ConsentEnv) -> None:
    cid = await consent_env.contact()
    r = await consent_env.record(
        cid, double_opt_in=True, source="newsletter form", policy_version="p1"
    )
    assert r.changed and r.consent.state == PENDING
    token = r.confirmation_token
    assert len(token) == 64 and all(ch.isalnum() or ch in "-_" for ch in token)
    expire = dt(r.confirmation_expire_time)
    assert abs(expire - (consent_env.clock() + timedelta(hours=48))) < timedelta(seconds=10)
    assert r.consent.pending.expire_time == r.confirmation_expire_time
    got = await consent_env.consent(cid)
    assert got[EMAIL].state == PENDING and got[EMAIL].source == "newsletter form"
    # only the hash of the token is stored
    raw = await consent_env.store.pool.fetchval(
        "SELECT string_agg(data::text, ' ') FROM eventstore.events"
    )
    assert token not in raw and domain.token_sha256(token) in raw

    c = await consent_env.stub.ConfirmConsent(
        pb.ConfirmConsentRequest(token=token, evidence=pb.ConsentEvidence(ip="198.51.100.1"))
    )
    assert c.contact_id == cid and c.consent.state == SUB
    assert (c.consent.source, c.consent.policy_version, c.consent.legal_basis) == (
        "newsletter form",
        "p1",
        CONSENT,
    )
    assert not c.consent.HasField("pending")
    assert (await consent_env.consent(cid))[EMAIL].state == SUB
    before = await consent_env.event_count()
    await expect_error(
        consent_env.stub.ConfirmConsent(pb.ConfirmConsentRequest(token=token)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "TOKEN_ALREADY_USED",
    )
    assert await consent_env.event_count() == before
    h = await consent_env.stub.GetConsentHistory(pb.GetConsentHistoryRequest(contact_id=cid))
    assert [e.type for e in h.entries] == [
        pb.LEDGER_ENTRY_TYPE_CONFIRMATION_REQUESTED,
        pb.LEDGER_ENTRY_TYPE_CONSENT_CONFIRMED,
    ]
    assert h.entries[0].confirmation_expire_time == r.confirmation_expire_time
    assert h.entries[1].evidence.ip == "198.51.100.1"


async def test_double_opt_in_expiry(consent_env: ConsentEnv) -> None:
    cid = await consent_env.contact()
    await consent_env.record(cid, channel=SMS, state=UNSUB)
    r = await consent_env.record(cid, channel=SMS, double_opt_in=True)
    assert r.consent.state == PENDING
    consent_env.clock.offset = timedelta(hours=47, minutes=59)
    assert (await consent_env.consent(cid))[SMS].state == PENDING
    consent_env.clock.offset = timedelta(hours=48, seconds=1)
    got = (await consent_env.consent(cid))[SMS]
    assert got.state == UNSUB and not got.HasField("pending")  # back to the stated consent
    await consent_env.settle()  # the read model gives the same answer
    assert (await consent_env.consent(cid))[SMS] == got
    before = await consent_env.event_count()
    await expect_error(
        consent_env.stub.ConfirmConsent(pb.ConfirmConsentRequest(token=r.confirmation_token)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "TOKEN_EXPIRED",
    )
    assert await consent_env.event_count() == before
    # a new request works, and supersedes the expired one
    again = await consent_env.record(cid, channel=SMS, double_opt_in=True)
    assert again.confirmation_token != r.confirmation_token
    await consent_env.stub.ConfirmConsent(pb.ConfirmConsentRequest(token=again.confirmation_token))
    assert (await consent_env.consent(cid))[SMS].state == SUB


async def test_token_errors(consent_env: ConsentEnv) -> None:
    cid = await consent_env.contact()
    first = (await consent_env.record(cid, double_opt_in=True)).confirmation_token
    second = (await consent_env.record(cid, double_opt_in=True)).confirmation_token  # a resend
    other = (await consent_env.record(cid, channel=PUSH, double_opt_in=True)).confirmation_token
    before = await consent_env.event_count()
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
            consent_env.stub.ConfirmConsent(pb.ConfirmConsentRequest(token=token)), code, reason
        )
    await expect_error(
        consent_env.stub.ConfirmConsent(
            pb.ConfirmConsentRequest(token=second, evidence=pb.ConsentEvidence(ip="999.1.1.1"))
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_IP",
    )
    assert await consent_env.event_count() == before
    await consent_env.stub.ConfirmConsent(pb.ConfirmConsentRequest(token=second))
    await consent_env.erase(cid)
    before = await consent_env.event_count()
    await expect_error(
        consent_env.stub.ConfirmConsent(pb.ConfirmConsentRequest(token=other)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "CONTACT_ERASED",
    )
    assert await consent_env.event_count() == before
