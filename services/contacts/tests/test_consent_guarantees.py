"""What every write to the consent ledger guarantees, over real gRPC: evidence sealed and erased
with the key, no new entries for erased, merged or keyless contacts, exactly-once retries, the
caller's metadata, concurrent writes that all land, events shaped as the published messages."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from grpc_status import rpc_status

from crm.contacts.v1 import consent_pb2 as pb
from crm.contacts.v1 import events_pb2
from services.contacts.adapters import keys
from services.contacts.domain import consent as domain
from services.contacts.tests.conftest import ConsentEnv
from services.contacts.tests.helpers import (
    EMAIL,
    IP,
    PUSH,
    SMS,
    SUB,
    UA,
    UNSUB,
    expect_error,
    ts,
)
from shared.eventstore import NewEvent, StreamState
from shared.grpckit.errors import error_info
from shared.testing import rpc
from shared.testing.events import read_everything


async def test_evidence_is_sealed_and_erased_with_the_key(consent_env: ConsentEnv) -> None:
    cid = await consent_env.contact()
    await consent_env.record(
        cid, evidence=pb.ConsentEvidence(ip=IP, user_agent=UA), source="checkout"
    )
    await consent_env.record(
        cid, channel=SMS, double_opt_in=True, evidence=pb.ConsentEvidence(ip="2001:db8::7")
    )
    raw = await consent_env.store.pool.fetchval(
        "SELECT string_agg(data::text, ' ') FROM eventstore.events WHERE stream_id = $1",
        f"consent-{cid}",
    )
    assert IP not in raw and UA not in raw and "SecretAgent" not in raw and "2001:db8" not in raw
    assert '"personal"' in raw and "checkout" in raw
    h = await consent_env.stub.GetConsentHistory(pb.GetConsentHistoryRequest(contact_id=cid))
    assert [(e.evidence.ip, e.evidence.user_agent) for e in h.entries] == [
        (IP, UA),
        ("2001:db8::7", ""),
    ]

    await consent_env.store.pool.execute(
        "UPDATE contacts_keys.data_keys SET key = NULL, destroyed_at = now() WHERE contact_id = $1",
        uuid.UUID(cid),
    )
    h = await consent_env.stub.GetConsentHistory(pb.GetConsentHistoryRequest(contact_id=cid))
    assert [e.evidence_erased for e in h.entries] == [True, True]
    assert all(not e.HasField("evidence") for e in h.entries)
    # the rest of the ledger stays readable: auditors can still prove the consent
    assert h.entries[0].source == "checkout" and h.entries[0].state == SUB
    assert (await consent_env.consent(cid))[EMAIL].state == SUB


async def test_erased_or_unknown_contacts_get_no_new_entries(consent_env: ConsentEnv) -> None:
    cid = await consent_env.contact()
    await consent_env.record(cid)
    await consent_env.erase(cid)
    before = await consent_env.event_count()
    for call in [
        consent_env.record(cid, state=UNSUB),
        consent_env.record(cid, evidence=pb.ConsentEvidence(ip=IP), policy_version="v9"),
        consent_env.stub.SuppressChannel(
            pb.SuppressChannelRequest(
                contact_id=cid, channel=SMS, reason=pb.SUPPRESSION_REASON_MANUAL
            )
        ),
        consent_env.stub.UnsuppressChannel(
            pb.UnsuppressChannelRequest(contact_id=cid, channel=SMS)
        ),
    ]:
        await expect_error(call, grpc.StatusCode.FAILED_PRECONDITION, "CONTACT_ERASED")
    assert await consent_env.event_count() == before
    # a contact merged into another: its ledger is closed, the caller learns the survivor
    merged, survivor = await consent_env.contact(), await consent_env.contact()
    await consent_env.store.append(
        f"contact-{merged}",
        [
            NewEvent(
                "crm.contacts.v1.ContactMerged", {"contact_id": merged, "survivor_id": survivor}
            )
        ],
        StreamState.ANY,
    )
    before = await consent_env.event_count()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await consent_env.record(merged, state=UNSUB)
    detail = error_info(rpc_status.from_call(info.value))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION and detail is not None
    assert (detail.reason, detail.metadata["survivor_id"]) == ("CONTACT_MERGED", survivor)
    assert await consent_env.event_count() == before
    # a contact without a data key cannot store evidence (nor hand out tokens)
    keyless = str(uuid.uuid4())
    await consent_env.store.append(
        f"contact-{keyless}",
        [NewEvent("crm.contacts.v1.ContactRegistered", {"contact_id": keyless})],
        StreamState.NO_STREAM,
    )
    before = await consent_env.event_count()
    await expect_error(
        consent_env.record(keyless, double_opt_in=True),
        grpc.StatusCode.FAILED_PRECONDITION,
        "DATA_KEY_MISSING",
    )
    assert await consent_env.event_count() == before
    assert (await consent_env.record(keyless)).consent.state == SUB  # no evidence: no key needed


async def test_request_id_makes_retries_exactly_once(consent_env: ConsentEnv) -> None:
    cid = await consent_env.contact()
    before = await consent_env.event_count()
    req = dict(double_opt_in=True, request_id="rc-1", evidence=pb.ConsentEvidence(ip=IP))
    r1 = await consent_env.record(cid, **req)
    r2 = await consent_env.record(cid, **req)
    assert r1.confirmation_token == r2.confirmation_token and r1.confirmation_token
    assert r1.confirmation_expire_time == r2.confirmation_expire_time
    assert r1.consent == r2.consent and r1.changed
    assert await consent_env.event_count() == before + 1
    confirm = pb.ConfirmConsentRequest(token=r1.confirmation_token, request_id="cf-1")
    c1 = await consent_env.stub.ConfirmConsent(confirm)
    c2 = await consent_env.stub.ConfirmConsent(confirm)  # a retry succeeds; a second use would not
    assert c1 == c2 and c1.consent.state == SUB
    supp = pb.SuppressChannelRequest(
        contact_id=cid, channel=SMS, reason=pb.SUPPRESSION_REASON_COMPLAINT, request_id="s-1"
    )
    await consent_env.stub.SuppressChannel(supp)
    await consent_env.stub.SuppressChannel(supp)
    assert await consent_env.event_count() == before + 3
    # events carry the request id and the caller in their metadata
    h = await consent_env.stub.GetConsentHistory(pb.GetConsentHistoryRequest(contact_id=cid))
    assert [e.request_id for e in h.entries] == ["rc-1", "cf-1", "s-1"]


async def test_actor_and_correlation_metadata(consent_env: ConsentEnv) -> None:
    cid = await consent_env.contact()
    await consent_env.stub.RecordConsent(
        pb.RecordConsentRequest(contact_id=cid, channel=EMAIL, state=UNSUB),
        metadata=[("x-actor", "support:alice"), ("x-correlation-id", "corr-7")],
    )
    [e] = await consent_env.store.read_stream(f"consent-{cid}")
    assert e.metadata["actor"] == "support:alice" and e.metadata["correlation_id"] == "corr-7"
    h = await consent_env.stub.GetConsentHistory(pb.GetConsentHistoryRequest(contact_id=cid))
    assert h.entries[0].actor == "support:alice"


async def test_concurrent_writes_to_one_ledger_all_land(consent_env: ConsentEnv) -> None:
    cid = await consent_env.contact()
    results = await asyncio.gather(
        consent_env.record(cid, channel=EMAIL),
        consent_env.record(cid, channel=SMS, state=UNSUB),
        consent_env.stub.SuppressChannel(
            pb.SuppressChannelRequest(
                contact_id=cid, channel=PUSH, reason=pb.SUPPRESSION_REASON_MANUAL
            )
        ),
    )
    assert all(r.changed for r in results)
    got = await consent_env.consent(cid)
    assert (got[EMAIL].state, got[SMS].state, got[PUSH].suppressed) == (SUB, UNSUB, True)
    versions = [e.version for e in await consent_env.store.read_stream(f"consent-{cid}")]
    assert versions == [0, 1, 2]


async def test_every_appended_event_decodes_as_its_published_message(
    consent_env: ConsentEnv,
) -> None:
    cid = await consent_env.contact()
    await consent_env.record(
        cid, evidence=pb.ConsentEvidence(ip=IP, user_agent=UA), occur_time=ts(consent_env.clock())
    )
    r = await consent_env.record(
        cid, channel=SMS, double_opt_in=True, policy_version="p", source="form"
    )
    await consent_env.stub.ConfirmConsent(
        pb.ConfirmConsentRequest(token=r.confirmation_token, evidence=pb.ConsentEvidence(ip=IP))
    )
    await consent_env.record(cid, state=UNSUB, legal_basis=pb.LEGAL_BASIS_LEGITIMATE_INTEREST)
    await consent_env.stub.SuppressChannel(
        pb.SuppressChannelRequest(
            contact_id=cid, channel=EMAIL, reason=pb.SUPPRESSION_REASON_HARD_BOUNCE, note="n"
        )
    )
    await consent_env.stub.UnsuppressChannel(
        pb.UnsuppressChannelRequest(contact_id=cid, channel=EMAIL, note="ok")
    )
    page_events = await read_everything(consent_env.store, categories=["consent"])
    assert {e.type for e in page_events} == set(domain.TYPES)
    for e in page_events:
        message: Any = rpc.published_message(e, events_pb2)
        assert message.contact_id == cid
        assert e.metadata["schema"] == 1 and "correlation_id" in e.metadata
        if "personal" in e.data:  # the sealed blob holds a PersonalData with the evidence
            key = await keys.DataKeys(consent_env.store.pool).get(cid)
            opened, erased = keys.unseal(key, cid, e.data)
            personal = json_format.ParseDict(
                {"evidence": opened["evidence"]}, events_pb2.PersonalData()
            )
            assert personal.evidence.ip == IP and not erased
