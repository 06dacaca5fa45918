"""Personal data by role, over the real API: a service or an operator (who must say why) gets it
and the read is recorded as one crm.audit.v1.PersonalDataRead event per call; an auditor gets
it redacted and nothing is recorded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
import orjson
import pytest

from crm.audit.v1 import events_pb2 as audit_pb2
from crm.contacts.v1 import consent_pb2 as cpb
from crm.contacts.v1 import consent_pb2_grpc as cpb_grpc
from crm.contacts.v1 import contacts_pb2 as pb
from crm.contacts.v1 import contacts_pb2_grpc as pb_grpc
from crm.options.v1 import options_pb2
from services.contacts.tests.conftest import Env
from services.contacts.tests.helpers import CONSENT, EMAIL, IP, SUB, UA, expect_error, register
from shared.eventstore import RecordedEvent
from shared.grpckit.audit import CATEGORY
from shared.testing import tokens
from shared.testing.events import read_everything
from shared.testing.rpc import published_message

pytestmark = pytest.mark.timeout(60)
METHOD = "crm.contacts.v1.ContactsService/"
WHY = "ticket 4711: customer asked for a copy"


@asynccontextmanager
async def as_role(
    env: Env, role: str, reason: str = ""
) -> AsyncIterator[tuple[pb_grpc.ContactsServiceStub, cpb_grpc.ConsentServiceStub]]:
    async with env.served.channel_as(role, reason=reason) as ch:
        yield pb_grpc.ContactsServiceStub(ch), cpb_grpc.ConsentServiceStub(ch)


async def reads(env: Env) -> list[RecordedEvent]:
    return await read_everything(env.store, categories=[CATEGORY])


def read_of(event: RecordedEvent) -> audit_pb2.PersonalDataRead:
    message = published_message(event, audit_pb2)  # decoded strictly, as a consumer would
    assert isinstance(message, audit_pb2.PersonalDataRead)
    return message


async def ada(env: Env) -> pb.Contact:
    return await register(
        env, email="ada@example.com", first_name="Ada", phone="+14155550123", tags=["vip"]
    )


async def test_an_operator_must_say_why_and_the_read_is_recorded(env: Env) -> None:
    c = await ada(env)
    async with as_role(env, "operator") as (contacts, _):
        await expect_error(
            contacts.GetContact(pb.GetContactRequest(contact_id=c.contact_id)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "REASON_REQUIRED",
        )
    assert await reads(env) == []
    async with as_role(env, "operator", WHY) as (contacts, _):
        got = (await contacts.GetContact(pb.GetContactRequest(contact_id=c.contact_id))).contact
    assert (got.email, got.first_name, got.personal_data_redacted) == (
        "ada@example.com",
        "Ada",
        False,
    )
    [event] = await reads(env)
    read = read_of(event)
    assert (read.principal, read.role, read.method) == (
        tokens.NAMES["operator"],
        options_pb2.ROLE_OPERATOR,
        METHOD + "GetContact",
    )
    assert (list(read.contact_ids), read.reason) == ([c.contact_id], WHY)
    assert read.HasField("read_time") and event.stream == f"{CATEGORY}-{event.event_id}"
    assert event.metadata["principal"] == tokens.NAMES["operator"]
    assert "ada@example.com" not in orjson.dumps(event.data).decode()  # who read, not what


async def test_an_auditor_gets_personal_data_redacted_and_nothing_is_recorded(env: Env) -> None:
    c = await ada(env)
    async with env.served.channel_as("service") as ch:
        await cpb_grpc.ConsentServiceStub(ch).RecordConsent(
            cpb.RecordConsentRequest(
                contact_id=c.contact_id,
                channel=EMAIL,
                state=SUB,
                legal_basis=CONSENT,
                evidence=cpb.ConsentEvidence(ip=IP, user_agent=UA),
            )
        )
    await env.settle()
    async with as_role(env, "auditor") as (contacts, consent):
        got = (await contacts.GetContact(pb.GetContactRequest(contact_id=c.contact_id))).contact
        listed = (await contacts.ListContacts(pb.ListContactsRequest())).contacts
        history = await contacts.ListContactEvents(
            pb.ListContactEventsRequest(contact_id=c.contact_id)
        )
        export = await contacts.ExportContactData(
            pb.ExportContactDataRequest(contact_id=c.contact_id)
        )
        ledger = await consent.GetConsentHistory(
            cpb.GetConsentHistoryRequest(contact_id=c.contact_id)
        )
    for contact in (got, *listed, export.contact):
        assert contact.personal_data_redacted and contact.contact_id == c.contact_id
        assert (contact.email, contact.phone, contact.first_name) == ("", "", "")
        assert list(contact.tags) == ["vip"]  # not personal data: stored in clear
    for e in (*history.events, *export.events):
        assert "ada@example.com" not in e.data_json and IP not in e.data_json
        assert e.personal_data_redacted == ('"personal":"[redacted]"' in e.data_json)
    assert any(e.personal_data_redacted for e in history.events)
    [entry] = ledger.entries
    assert entry.evidence_redacted and not entry.HasField("evidence")
    assert entry.legal_basis == CONSENT  # the rest of the entry is there
    assert await reads(env) == []


async def test_the_same_reads_by_an_operator_are_decrypted_and_each_call_recorded(
    env: Env,
) -> None:
    c = await ada(env)
    await env.settle()
    async with as_role(env, "operator", WHY) as (contacts, _):
        history = await contacts.ListContactEvents(
            pb.ListContactEventsRequest(contact_id=c.contact_id)
        )
        export = await contacts.ExportContactData(
            pb.ExportContactDataRequest(contact_id=c.contact_id)
        )
        listed = await contacts.ListContacts(pb.ListContactsRequest())
        empty = await contacts.ListContacts(pb.ListContactsRequest(tag="nobody"))
    assert "ada@example.com" in history.events[0].data_json
    assert export.contact.email == "ada@example.com" and listed.contacts[0].phone
    assert not empty.contacts
    methods = [read_of(e).method.removeprefix(METHOD) for e in await reads(env)]
    # one event per call that answered with personal data; the empty page disclosed nothing
    assert methods == ["ListContactEvents", "ExportContactData", "ListContacts"]


async def test_a_service_batch_read_is_one_event_and_needs_no_reason(env: Env) -> None:
    made = [await register(env, email=f"c{i}@example.com") for i in range(30)]
    refs = [pb.ContactVersionRef(contact_id=c.contact_id, version=0) for c in made]
    got = await env.stub.BatchGetContactVersions(pb.BatchGetContactVersionsRequest(refs=refs))
    assert [c.email for c in got.contacts] == [c.email for c in made]
    [event] = await reads(env)
    read = read_of(event)
    assert (read.principal, read.role, read.reason) == (
        tokens.NAMES["service"],
        options_pb2.ROLE_SERVICE,
        "",
    )
    assert list(read.contact_ids) == [c.contact_id for c in made]


async def test_writes_record_who_made_them_in_their_events(env: Env) -> None:
    async with as_role(env, "operator") as (contacts, _):  # a write needs no reason
        c = (
            await contacts.RegisterContact(pb.RegisterContactRequest(email="w@example.com"))
        ).contact
    [event] = await env.store.read_stream(f"contact-{c.contact_id}")
    assert (event.metadata["principal"], event.metadata["role"]) == (
        tokens.NAMES["operator"],
        "operator",
    )
    assert await reads(env) == []  # the answer echoes the caller's own write: not a read
