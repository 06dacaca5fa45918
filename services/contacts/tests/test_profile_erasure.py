"""Profile fields, archive/restore, GDPR erasure by crypto-shredding, history as of any time."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import grpc
import pytest
from google.protobuf import json_format
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp

from crm.contacts.v1 import contacts_pb2 as pb
from crm.contacts.v1 import events_pb2
from services.contacts.adapters.keys import DataKeys, unseal
from services.contacts.tests.conftest import Env
from services.contacts.tests.helpers import expect_error, register

PII = ("ada@example.com", "+14155552671", "Lovelace", "shop-77", "Analytical", "203.0.113.9")


def attrs(**values: object) -> dict[str, events_pb2.AttributeValue]:
    out = {}
    for name, value in values.items():
        if isinstance(value, bool):
            out[name] = events_pb2.AttributeValue(bool_value=value)
        elif isinstance(value, int | float):
            out[name] = events_pb2.AttributeValue(number_value=value)
        else:
            out[name] = events_pb2.AttributeValue(string_value=str(value))
    return out


async def test_profile_fields_round_trip_and_attribute_paths(env: Env) -> None:
    c = await register(
        env,
        email="p@shop.io",
        locale="en-GB",
        time_zone="Europe/London",
        attributes=attrs(vip_level=3, newsletter=True, note="likes tea"),
    )
    assert (c.locale, c.time_zone) == ("en-GB", "Europe/London")
    assert c.attributes["vip_level"].number_value == 3 and c.attributes["newsletter"].bool_value
    upd = await env.stub.UpdateContact(
        pb.UpdateContactRequest(
            contact=pb.Contact(contact_id=c.contact_id, attributes=attrs(vip_level=4)),
            update_mask=FieldMask(paths=["attributes.vip_level", "attributes.note"]),
        )
    )
    a = upd.contact.attributes
    assert a["vip_level"].number_value == 4 and a["newsletter"].bool_value and "note" not in a
    await env.settle()
    got = (await env.stub.GetContact(pb.GetContactRequest(contact_id=c.contact_id))).contact
    assert got == upd.contact


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"locale": "english please"}, "INVALID_LOCALE"),
        ({"time_zone": "Mars/Olympus"}, "INVALID_TIME_ZONE"),
        ({"attributes": attrs(**{"Bad-Name": 1})}, "INVALID_ATTRIBUTE"),
        ({"attributes": {"empty": events_pb2.AttributeValue()}}, "INVALID_ATTRIBUTE"),
        ({"attributes": attrs(long="x" * 1001)}, "INVALID_ATTRIBUTE"),
        ({"attributes": attrs(n=float("inf"))}, "INVALID_ATTRIBUTE"),
    ],
)
async def test_bad_profile_fields_are_rejected(
    env: Env, fields: dict[str, object], reason: str
) -> None:
    before = await env.event_count()
    await expect_error(
        env.stub.RegisterContact(pb.RegisterContactRequest(email="x@shop.io", **fields)),  # type: ignore[arg-type]
        grpc.StatusCode.INVALID_ARGUMENT,
        reason,
    )
    assert await env.event_count() == before


async def test_archive_hides_and_freezes_restore_brings_back(env: Env) -> None:
    c = await register(env, email="arc@shop.io")
    a = await env.stub.ArchiveContact(
        pb.ArchiveContactRequest(contact_id=c.contact_id, reason="left")
    )
    assert a.contact.archived and a.contact.etag == "1"
    again = await env.stub.ArchiveContact(pb.ArchiveContactRequest(contact_id=c.contact_id))
    assert again.contact.etag == "1"  # idempotent: nothing appended
    await env.settle()
    listed = await env.stub.ListContacts(pb.ListContactsRequest())
    assert c.contact_id not in [x.contact_id for x in listed.contacts]
    everything = await env.stub.ListContacts(pb.ListContactsRequest(include_archived=True))
    assert c.contact_id in [x.contact_id for x in everything.contacts]
    await expect_error(
        env.stub.UpdateContact(
            pb.UpdateContactRequest(
                contact=pb.Contact(contact_id=c.contact_id, first_name="X"),
                update_mask=FieldMask(paths=["first_name"]),
            )
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "CONTACT_ARCHIVED",
    )
    await expect_error(
        env.stub.ArchiveContact(pb.ArchiveContactRequest(contact_id=c.contact_id, etag="0")),
        grpc.StatusCode.ABORTED,
        "ETAG_MISMATCH",
    )
    r = await env.stub.RestoreContact(pb.RestoreContactRequest(contact_id=c.contact_id, etag="1"))
    assert not r.contact.archived and r.contact.etag == "2"


async def test_erasure_leaves_no_personal_data_anywhere_but_keeps_aggregates(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    from shared.logs import configure

    configure("DEBUG", "json", cache=False)
    try:
        c = await register(
            env,
            email=PII[0],
            phone=PII[1],
            last_name=PII[2],
            external_id=PII[3],
            attributes=attrs(engine=PII[4]),
        )
        other = await register(env, email="keep@shop.io", first_name="Grace")
        await env.settle()
        export = await env.stub.ExportContactData(
            pb.ExportContactDataRequest(contact_id=c.contact_id)
        )
        assert export.contact.email == PII[0] and PII[0] in export.events[0].data_json
        # the event table only ever held ciphertext
        raw = await env.store.pool.fetchval(
            "SELECT string_agg(data::text, ' ') FROM eventstore.events"
        )
        assert not [p for p in PII[:5] if p in raw]

        erased = await env.stub.EraseContact(
            pb.EraseContactRequest(contact_id=c.contact_id, reason="GDPR request 42")
        )
        assert erased.contact.erased and erased.contact.email == "" and erased.contact.phone == ""
        await env.settle()
        log_text = capsys.readouterr().err
    finally:
        import structlog

        structlog.reset_defaults()
    rm = await env.store.pool.fetchval(
        "SELECT string_agg(t::text, ' ') FROM contacts_rm.contacts t"
    )
    assert not [p for p in PII[:5] if p in rm], "personal data left in the read model"
    raw = await env.store.pool.fetchval("SELECT string_agg(data::text, ' ') FROM eventstore.events")
    assert not [p for p in PII[:5] if p in raw]
    assert not [p for p in PII[:5] if p in log_text], "personal data in the logs"
    # aggregates still count the erased contact
    assert await env.store.pool.fetchval("SELECT count(*) FROM contacts_rm.contacts") == 2
    got = (await env.stub.GetContact(pb.GetContactRequest(contact_id=c.contact_id))).contact
    assert got.erased and not got.email and not got.last_name and not got.attributes
    # history stays readable, personal fields shown as erased; anonymous facts remain
    history = await env.stub.ListContactEvents(pb.ListContactEventsRequest(contact_id=c.contact_id))
    types = [e.type.rsplit(".", 1)[1] for e in history.events]
    assert types == ["ContactRegistered", "ContactErased"]
    first = json.loads(history.events[0].data_json)
    assert history.events[0].personal_data_erased and first["personal"] == "[erased]"
    assert first["contact_id"] == c.contact_id and PII[0] not in history.events[0].data_json
    # the key is gone; identities are free again; the other contact is untouched
    assert await DataKeys(env.store.pool).get(c.contact_id) is None
    again = await register(env, email=PII[0])
    assert again.contact_id != c.contact_id
    assert (
        await env.stub.GetContact(pb.GetContactRequest(contact_id=other.contact_id))
    ).contact.first_name == "Grace"
    # erasing twice is a no-op; an erased contact accepts no changes
    twice = await env.stub.EraseContact(pb.EraseContactRequest(contact_id=c.contact_id))
    assert twice.contact.etag == erased.contact.etag
    for call in (
        env.stub.ArchiveContact(pb.ArchiveContactRequest(contact_id=c.contact_id)),
        env.stub.UpdateContact(
            pb.UpdateContactRequest(
                contact=pb.Contact(contact_id=c.contact_id, first_name="Z"),
                update_mask=FieldMask(paths=["first_name"]),
            )
        ),
    ):
        await expect_error(call, grpc.StatusCode.FAILED_PRECONDITION, "CONTACT_ERASED")


async def test_get_contact_as_of_any_instant(env: Env) -> None:
    c = await register(env, email="t@shop.io", first_name="One")
    await asyncio.sleep(0.01)
    t1 = datetime.now(UTC)
    await asyncio.sleep(0.01)

    async def rename(name: str) -> None:
        await env.stub.UpdateContact(
            pb.UpdateContactRequest(
                contact=pb.Contact(contact_id=c.contact_id, first_name=name),
                update_mask=FieldMask(paths=["first_name"]),
            )
        )

    await rename("Two")
    await asyncio.sleep(0.01)
    t2 = datetime.now(UTC)
    await asyncio.sleep(0.01)
    await rename("Three")

    async def at(t: datetime) -> pb.Contact:
        ts = Timestamp()
        ts.FromDatetime(t)
        return (
            await env.stub.GetContact(pb.GetContactRequest(contact_id=c.contact_id, as_of=ts))
        ).contact

    assert ((await at(t1)).first_name, (await at(t1)).etag) == ("One", "0")
    assert ((await at(t2)).first_name, (await at(t2)).etag) == ("Two", "1")
    assert (await at(datetime.now(UTC))).first_name == "Three"
    await expect_error(
        env.stub.GetContact(
            pb.GetContactRequest(contact_id=c.contact_id, as_of=Timestamp(seconds=1))
        ),
        grpc.StatusCode.NOT_FOUND,
        "CONTACT_NOT_FOUND",
    )
    await expect_error(  # beyond year 9999: a clear error, not an internal one
        env.stub.GetContact(
            pb.GetContactRequest(contact_id=c.contact_id, as_of=Timestamp(seconds=10**13))
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_AS_OF",
    )


async def test_list_contact_events_pages_and_decrypts(env: Env) -> None:
    c = await register(env, email="h@shop.io", first_name="H0")
    for i in range(1, 5):
        await env.stub.UpdateContact(
            pb.UpdateContactRequest(
                contact=pb.Contact(contact_id=c.contact_id, first_name=f"H{i}"),
                update_mask=FieldMask(paths=["first_name"]),
            )
        )
    seen, token = [], ""
    while True:
        page = await env.stub.ListContactEvents(
            pb.ListContactEventsRequest(contact_id=c.contact_id, page_size=2, page_token=token)
        )
        seen += [json.loads(e.data_json).get("first_name") for e in page.events]
        token = page.next_page_token
        if not token:
            break
    assert seen == ["H0", "H1", "H2", "H3", "H4"]
    await expect_error(
        env.stub.ListContactEvents(
            pb.ListContactEventsRequest(contact_id=c.contact_id, page_token="nope")
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PAGE_TOKEN",
    )


async def test_sealed_personal_data_decodes_as_published_message(env: Env) -> None:
    c = await register(env, email="s@shop.io", phone="+14155552671", attributes=attrs(x=1))
    [event] = await env.store.read_stream(f"contact-{c.contact_id}")
    json_format.ParseDict(event.data, events_pb2.ContactRegistered())
    key = await DataKeys(env.store.pool).get(c.contact_id)
    plain, erased = unseal(key, c.contact_id, event.data)
    assert not erased
    personal = {k: plain[k] for k in ("email", "phone", "attributes")}
    msg = json_format.ParseDict(personal, events_pb2.PersonalData())
    assert msg.email == "s@shop.io" and msg.attributes["x"].number_value == 1
