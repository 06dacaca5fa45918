"""BatchGetContacts and BatchGetConsents over the real API: for a mix of ids (plain, merged and
its survivor, erased, archived, unknown, written after the read models last caught up,
repeated) each answers exactly what GetContact / GetConsent answer id by id; a batch of
personal data is recorded as one read; bad input is refused with nothing written.

The read models here are caught up only when a test says so (``project``), so a contact or a
consent written after that is one the read model lags, every time."""

from __future__ import annotations

import uuid

import grpc
import pytest

from crm.audit.v1 import events_pb2 as audit_pb2
from crm.contacts.v1 import consent_pb2 as cpb
from crm.contacts.v1 import contacts_pb2 as pb
from crm.contacts.v1 import contacts_pb2_grpc as pb_grpc
from services.contacts.api.common import MAX_BATCH_IDS
from services.contacts.tests.conftest import World
from services.contacts.tests.helpers import EMAIL, PUSH, SMS, SUB, UNSUB, expect_error
from shared.grpckit.audit import CATEGORY
from shared.testing.events import read_everything
from shared.testing.rpc import published_message

pytestmark = pytest.mark.timeout(60)
WHY = "ticket 99: checking a batch"
BAD_FIELDS = ["contact_ids[1]", "contact_ids[3]"]


async def a_mix(w: World) -> list[str]:
    """Ids of every kind, in an order a caller might send them (with repeats)."""
    plain = await w.register(email="plain@example.com", first_name="Pat", tags=["vip"])
    survivor = await w.register(email="ada@shop.io", first_name="Ada")
    merged = await w.register(email="ada.l@shop.io", phone="+14155552671")
    erased = await w.register(email="gone@example.com")
    archived = await w.register(email="quiet@example.com")
    await w.subscribe(plain, EMAIL)
    await w.subscribe(survivor, EMAIL, UNSUB)
    await w.subscribe(survivor, SMS)
    await w.subscribe(merged, EMAIL)
    await w.subscribe(merged, SMS, UNSUB)  # later and stricter: the survivor's SMS follows it
    await w.subscribe(erased, PUSH)
    await w.contacts.MergeContacts(pb.MergeContactsRequest(survivor_id=survivor, merged_id=merged))
    await w.contacts.EraseContact(pb.EraseContactRequest(contact_id=erased, reason="gdpr"))
    await w.contacts.ArchiveContact(pb.ArchiveContactRequest(contact_id=archived, reason="x"))
    await w.project()
    # Written after the read models caught up: they lag these.
    fresh = await w.register(email="fresh@example.com", first_name="Fay")
    await w.subscribe(fresh, SMS)
    await w.subscribe(plain, PUSH)  # plain's consent row is now behind its stream
    late = await w.register(email="late@shop.io")  # absorbs another after the catch-up
    other = await w.register(email="other@shop.io")
    await w.subscribe(late, PUSH)
    await w.subscribe(other, PUSH, UNSUB)
    await w.contacts.MergeContacts(pb.MergeContactsRequest(survivor_id=late, merged_id=other))
    unknown = str(uuid.uuid4())
    return [
        plain,
        merged,
        survivor,
        erased,
        unknown,
        archived,
        fresh,
        plain.upper(),  # the same contact, spelled differently
        merged,
        late,
        other,
    ]


def first_occurrences(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(str(uuid.UUID(i)) for i in ids))


async def get_contact(stub: pb_grpc.ContactsServiceStub, cid: str) -> pb.Contact | None:
    try:
        return (await stub.GetContact(pb.GetContactRequest(contact_id=cid))).contact
    except grpc.aio.AioRpcError as e:
        assert e.code() == grpc.StatusCode.NOT_FOUND, e.details()
        return None


async def reads(w: World) -> list[audit_pb2.PersonalDataRead]:
    out = []
    for event in await read_everything(w.store, categories=[CATEGORY]):
        message = published_message(event, audit_pb2)
        assert isinstance(message, audit_pb2.PersonalDataRead)
        out.append(message)
    return out


async def test_batch_get_contacts_answers_what_get_contact_answers(world: World) -> None:
    ids = await a_mix(world)
    got = await world.contacts.BatchGetContacts(pb.BatchGetContactsRequest(contact_ids=ids))
    [read] = await reads(world)  # one read recorded for the whole batch

    expected = {cid: await get_contact(world.contacts, cid) for cid in first_occurrences(ids)}
    assert [(f.requested_contact_id, f.contact) for f in got.contacts] == [
        (cid, c) for cid, c in expected.items() if c is not None
    ]
    assert list(got.missing) == [cid for cid, c in expected.items() if c is None]
    # the kinds the mix was made of, as GetContact shows them
    answered = {f.requested_contact_id: f.contact for f in got.contacts}
    _, merged, survivor, erased, unknown, archived, fresh = first_occurrences(ids)[:7]
    assert answered[merged].contact_id == survivor and answered[merged].email == "ada@shop.io"
    assert answered[erased].erased and not answered[erased].email
    assert answered[archived].archived and answered[fresh].first_name == "Fay"
    assert list(got.missing) == [unknown]
    disclosed = [c.contact_id for c in answered.values() if not c.erased]
    assert list(read.contact_ids) == list(dict.fromkeys(disclosed))
    assert read.method == "crm.contacts.v1.ContactsService/BatchGetContacts"


async def test_an_auditor_gets_the_batch_redacted_as_get_contact_and_nothing_is_recorded(
    world: World,
) -> None:
    ids = await a_mix(world)
    async with world.served.channel_as("auditor") as ch:
        stub = pb_grpc.ContactsServiceStub(ch)
        got = await stub.BatchGetContacts(pb.BatchGetContactsRequest(contact_ids=ids))
        expected = [await get_contact(stub, cid) for cid in first_occurrences(ids)]
    assert [f.contact for f in got.contacts] == [c for c in expected if c is not None]
    assert all(f.contact.personal_data_redacted != f.contact.erased for f in got.contacts)
    assert not any(f.contact.email for f in got.contacts)
    assert await reads(world) == []


async def test_an_operator_must_say_why_for_a_batch_of_contacts(world: World) -> None:
    ids = await a_mix(world)
    async with world.served.channel_as("operator") as ch:
        await expect_error(
            pb_grpc.ContactsServiceStub(ch).BatchGetContacts(
                pb.BatchGetContactsRequest(contact_ids=ids)
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "REASON_REQUIRED",
        )
    async with world.served.channel_as("operator", reason=WHY) as ch:
        got = await pb_grpc.ContactsServiceStub(ch).BatchGetContacts(
            pb.BatchGetContactsRequest(contact_ids=ids)
        )
    [read] = await reads(world)
    assert read.reason == WHY and len(read.contact_ids) == len(
        {f.contact.contact_id for f in got.contacts if not f.contact.erased}
    )


async def test_batch_get_consents_answers_what_get_consent_answers(world: World) -> None:
    ids = await a_mix(world)
    got = await world.consent.BatchGetConsents(cpb.BatchGetConsentsRequest(contact_ids=ids))

    expected: dict[str, cpb.GetConsentResponse | None] = {}
    for cid in first_occurrences(ids):
        try:
            expected[cid] = await world.consent.GetConsent(cpb.GetConsentRequest(contact_id=cid))
        except grpc.aio.AioRpcError as e:
            assert e.code() == grpc.StatusCode.NOT_FOUND, e.details()
            expected[cid] = None
    assert list(got.consents) == [r for r in expected.values() if r is not None]
    assert list(got.missing) == [cid for cid, r in expected.items() if r is None]
    # the merged ledgers are folded into the survivors, as GetConsent does
    by_id = {r.contact_id: {c.channel: c.state for c in r.channels} for r in got.consents}
    plain, merged, survivor = first_occurrences(ids)[:3]
    late, other = first_occurrences(ids)[-2:]
    assert by_id[survivor][SMS] == UNSUB and by_id[survivor][EMAIL] == UNSUB
    assert by_id[merged][EMAIL] == SUB  # an absorbed contact keeps its own ledger
    assert by_id[late][PUSH] == UNSUB and by_id[other][PUSH] == UNSUB
    assert by_id[plain][PUSH] == SUB  # written after the read model caught up
    assert await reads(world) == []  # consent state is not personal data


async def test_bad_batches_are_refused_and_nothing_is_written(world: World) -> None:
    good = await world.register(email="good@example.com")
    before = await world.served.event_count()
    too_many = [str(uuid.uuid4()) for _ in range(MAX_BATCH_IDS + 1)]
    calls = (
        (world.contacts.BatchGetContacts, pb.BatchGetContactsRequest),
        (world.consent.BatchGetConsents, cpb.BatchGetConsentsRequest),
    )
    for call, make in calls:
        cases: tuple[tuple[list[str], str, list[str]], ...] = (
            ([], "CONTACT_IDS_REQUIRED", ["contact_ids"]),
            (too_many, "TOO_MANY_ITEMS", ["contact_ids"]),
            ([good, "nope", good.upper(), "", good], "INVALID_CONTACT_ID", BAD_FIELDS),
            ([good, "x" * 129], "FIELD_TOO_LONG", ["contact_ids[1]"]),
        )
        for ids, reason, named in cases:
            fields = await expect_error(
                call(make(contact_ids=ids)),
                grpc.StatusCode.INVALID_ARGUMENT,
                reason,
            )
            assert fields == named, (ids[:3], reason)
    assert await world.served.event_count() == before
    assert await reads(world) == []
