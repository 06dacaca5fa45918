"""Identity resolution: duplicate candidates, merge, unmerge."""

from __future__ import annotations

import grpc
from google.protobuf.field_mask_pb2 import FieldMask

from crm.contacts.v1 import contacts_pb2 as pb
from services.contacts.tests.conftest import Env
from services.contacts.tests.helpers import expect_error, register
from shared.testing import rpc
from shared.testing.events import read_everything

UNKNOWN = "00000000-0000-0000-0000-000000000009"


def profile(c: pb.Contact) -> tuple[object, ...]:
    """Everything about a contact but its version and timestamps."""
    return (
        c.contact_id,
        c.email,
        c.phone,
        c.external_id,
        c.first_name,
        c.last_name,
        tuple(c.tags),
        c.locale,
        c.time_zone,
        dict(c.attributes),
        c.archived,
        c.erased,
        c.merged_into,
    )


async def get(env: Env, contact_id: str) -> pb.Contact:
    return (await env.stub.GetContact(pb.GetContactRequest(contact_id=contact_id))).contact


async def test_merge_then_unmerge_restores_both_exactly(env: Env) -> None:
    survivor = await register(env, email="ada@shop.io", first_name="Ada", tags=["vip"])
    merged = await register(env, email="ada.l@shop.io", phone="+14155552671", external_id="pos-1")
    before = (profile(survivor), profile(merged))

    r = await env.stub.MergeContacts(
        pb.MergeContactsRequest(survivor_id=survivor.contact_id, merged_id=merged.contact_id)
    )
    # identities the survivor lacked moved to it; its own email stayed
    assert (r.survivor.email, r.survivor.phone, r.survivor.external_id) == (
        "ada@shop.io",
        "+14155552671",
        "pos-1",
    )
    await env.settle()
    # every lookup of the merged contact leads to the survivor
    assert (await get(env, merged.contact_id)).contact_id == survivor.contact_id
    for ident in ({"email": "ada.l@shop.io"}, {"phone": "+14155552671"}, {"external_id": "pos-1"}):
        found = await env.stub.FindContact(pb.FindContactRequest(**ident))
        assert found.contact.contact_id == survivor.contact_id, ident
    listed = await env.stub.ListContacts(pb.ListContactsRequest())
    assert merged.contact_id not in [c.contact_id for c in listed.contacts]

    u = await env.stub.UnmergeContacts(pb.UnmergeContactsRequest(merged_id=merged.contact_id))
    assert (profile(u.survivor), profile(u.restored)) == before
    await env.settle()
    assert (
        profile(await get(env, survivor.contact_id)),
        profile(await get(env, merged.contact_id)),
    ) == before
    found = await env.stub.FindContact(pb.FindContactRequest(phone="+14155552671"))
    assert found.contact.contact_id == merged.contact_id


async def test_merge_bad_input_changes_nothing(env: Env) -> None:
    a = await register(env, email="a@shop.io")
    b = await register(env, email="b@shop.io")
    gone = await register(env, email="gone@shop.io")
    await env.stub.EraseContact(pb.EraseContactRequest(contact_id=gone.contact_id))
    before = await env.event_count()

    def merge(s: str, m: str) -> object:
        return env.stub.MergeContacts(pb.MergeContactsRequest(survivor_id=s, merged_id=m))

    await expect_error(
        merge(a.contact_id, a.contact_id), grpc.StatusCode.INVALID_ARGUMENT, "SAME_CONTACT"
    )
    await expect_error(
        merge(a.contact_id, gone.contact_id), grpc.StatusCode.FAILED_PRECONDITION, "CONTACT_ERASED"
    )
    await expect_error(
        merge(gone.contact_id, a.contact_id), grpc.StatusCode.FAILED_PRECONDITION, "CONTACT_ERASED"
    )
    await expect_error(merge(a.contact_id, UNKNOWN), grpc.StatusCode.NOT_FOUND, "CONTACT_NOT_FOUND")
    await expect_error(
        merge("nope", a.contact_id), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_CONTACT_ID"
    )
    await expect_error(
        env.stub.UnmergeContacts(pb.UnmergeContactsRequest(merged_id=b.contact_id)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "NOT_MERGED",
    )
    assert await env.event_count() == before
    await env.stub.MergeContacts(
        pb.MergeContactsRequest(survivor_id=a.contact_id, merged_id=b.contact_id)
    )
    after_merge = await env.event_count()
    await expect_error(
        merge(a.contact_id, b.contact_id), grpc.StatusCode.FAILED_PRECONDITION, "CONTACT_MERGED"
    )
    await expect_error(
        merge(b.contact_id, a.contact_id), grpc.StatusCode.FAILED_PRECONDITION, "CONTACT_MERGED"
    )
    assert await env.event_count() == after_merge


async def test_an_unmerge_under_another_requests_id_is_refused(env: Env) -> None:
    """The fuzzer's find: an unmerge that fails under a request id whose first event on the
    contact is another request's (an update) answers REQUEST_ID_REUSED, not INTERNAL."""
    c = await register(env, email="reused@shop.io")
    await env.stub.UpdateContact(
        pb.UpdateContactRequest(
            contact=pb.Contact(contact_id=c.contact_id, locale="en-GB"),
            update_mask=FieldMask(paths=["locale"]),
            request_id="shared-request-id",
        )
    )
    before = await env.event_count()
    await expect_error(
        env.stub.UnmergeContacts(
            pb.UnmergeContactsRequest(merged_id=c.contact_id, request_id="shared-request-id")
        ),
        grpc.StatusCode.ALREADY_EXISTS,
        "REQUEST_ID_REUSED",
    )
    assert await env.event_count() == before


async def test_duplicate_candidates(env: Env) -> None:
    a = await register(env, email="ada.lovelace@gmail.com")
    b = await register(env, email="adalovelace+shop@gmail.com")
    c = await register(env, email="grace@navy.mil", first_name="Grace", last_name="Hopper")
    d = await register(env, email="g.hopper@navy.mil", first_name="grace", last_name="HOPPER")
    await register(env, email="someone@else.io", first_name="Grace", last_name="Hopper")
    await env.settle()
    found = await env.stub.ListDuplicateCandidates(pb.ListDuplicateCandidatesRequest())
    pairs = {(frozenset((x.contact_id, x.other_contact_id)), x.reason) for x in found.candidates}
    assert pairs == {
        (frozenset((a.contact_id, b.contact_id)), "canonical_email"),
        (frozenset((c.contact_id, d.contact_id)), "name_and_email_domain"),
    }
    await env.stub.MergeContacts(
        pb.MergeContactsRequest(survivor_id=a.contact_id, merged_id=b.contact_id)
    )
    await env.settle()
    found = await env.stub.ListDuplicateCandidates(pb.ListDuplicateCandidatesRequest())
    assert [x.reason for x in found.candidates] == ["name_and_email_domain"]


async def test_consent_after_merge_is_the_stricter_unless_the_survivor_spoke_later(
    env: Env,
) -> None:
    from services.contacts.application.consent import ConsentLedgers
    from services.contacts.domain.consent import (
        SUBSCRIBED,
        UNSUBSCRIBED,
        RecordConsent,
        Suppress,
        Terms,
    )

    ledgers = ConsentLedgers(env.store, env.store.pool)
    terms = Terms(legal_basis="consent", source="checkout", policy_version="v1")
    survivor = await register(env, email="s@shop.io")
    merged = await register(env, email="m@shop.io")
    # survivor subscribed to email and sms; the merged contact subscribed to email, then
    # unsubscribed from it later, subscribed to push, and was suppressed on sms (hard bounce)
    await ledgers.record(survivor.contact_id, RecordConsent("email", SUBSCRIBED, terms))
    await ledgers.record(survivor.contact_id, RecordConsent("sms", SUBSCRIBED, terms))
    await ledgers.record(merged.contact_id, RecordConsent("email", SUBSCRIBED, terms))
    await ledgers.record(
        merged.contact_id, RecordConsent("email", UNSUBSCRIBED, Terms(source="footer"))
    )
    await ledgers.record(merged.contact_id, RecordConsent("push", SUBSCRIBED, terms))
    await ledgers.suppress(merged.contact_id, Suppress("sms", "hard_bounce"))
    before, _ = await ledgers.current(survivor.contact_id)
    await env.settle()

    await env.stub.MergeContacts(
        pb.MergeContactsRequest(survivor_id=survivor.contact_id, merged_id=merged.contact_id)
    )
    after, _ = await ledgers.current(survivor.contact_id)
    assert after["email"].state == UNSUBSCRIBED  # the merged person's later opt-out wins
    assert "push" not in after or after["push"].state != SUBSCRIBED  # no consent leaks over
    assert after["sms"].state == SUBSCRIBED and after["sms"].suppression is not None

    # the survivor's own statement after the merged one stands
    await ledgers.record(
        survivor.contact_id,
        RecordConsent(
            "email",
            SUBSCRIBED,
            Terms(legal_basis="consent", source="preference-centre", policy_version="v2"),
        ),
    )
    latest, _ = await ledgers.current(survivor.contact_id)
    assert latest["email"].state == SUBSCRIBED

    await env.stub.UnmergeContacts(pb.UnmergeContactsRequest(merged_id=merged.contact_id))
    restored, _ = await ledgers.current(survivor.contact_id)
    assert restored["sms"] == before["sms"]  # the suppression went with the merged contact
    mine, _ = await ledgers.current(merged.contact_id)
    assert mine["email"].state == UNSUBSCRIBED and mine["push"].state == SUBSCRIBED


async def test_every_event_type_decodes_as_its_published_message(env: Env) -> None:
    from google.protobuf import json_format

    from crm.contacts.v1 import events_pb2
    from services.contacts.adapters.keys import DataKeys, unseal
    from services.contacts.application.consent import ConsentLedgers
    from services.contacts.domain.consent import (
        SUBSCRIBED,
        UNSUBSCRIBED,
        Evidence,
        RecordConsent,
        Suppress,
        Terms,
        Unsuppress,
    )

    ledgers = ConsentLedgers(env.store, env.store.pool)
    terms = Terms(legal_basis="consent", source="test", policy_version="v1")
    a = await register(env, email="a@shop.io", first_name="A")
    b = await register(env, phone="+14155552671", external_id="b-1")
    await env.stub.UpdateContact(
        pb.UpdateContactRequest(
            contact=pb.Contact(contact_id=a.contact_id, last_name="Z"),
            update_mask=FieldMask(paths=["last_name"]),
        )
    )
    await env.stub.ArchiveContact(pb.ArchiveContactRequest(contact_id=b.contact_id))
    await env.stub.RestoreContact(pb.RestoreContactRequest(contact_id=b.contact_id))
    ev = Evidence(ip="203.0.113.7", user_agent="test")
    rec = await ledgers.record(
        a.contact_id, RecordConsent("email", SUBSCRIBED, terms, ev, double_opt_in=True)
    )
    await ledgers.confirm(rec.token, ev)
    await ledgers.record(a.contact_id, RecordConsent("push", SUBSCRIBED, terms))
    await ledgers.record(a.contact_id, RecordConsent("email", UNSUBSCRIBED, Terms(source="footer")))
    await ledgers.suppress(a.contact_id, Suppress("sms", "complaint"))
    await ledgers.unsuppress(a.contact_id, Unsuppress("sms"))
    await env.stub.MergeContacts(
        pb.MergeContactsRequest(survivor_id=a.contact_id, merged_id=b.contact_id)
    )
    await env.stub.UnmergeContacts(pb.UnmergeContactsRequest(merged_id=b.contact_id))
    await env.stub.EraseContact(pb.EraseContactRequest(contact_id=b.contact_id))

    events = await read_everything(env.store)
    keys = await DataKeys(env.store.pool).get_many({e.data["contact_id"] for e in events})
    seen = set()
    for e in events:
        name = rpc.published_message(e, events_pb2).DESCRIPTOR.name
        plain, erased = unseal(keys.get(e.data["contact_id"]), e.data["contact_id"], e.data)
        if "personal" in e.data and not erased:
            personal = {k: v for k, v in plain.items() if k not in e.data}
            json_format.ParseDict(personal, events_pb2.PersonalData())
        seen.add(name)
    published = {m.name for m in events_pb2.DESCRIPTOR.message_types_by_name.values()}
    helpers = {"PersonalData", "AttributeValue", "Evidence"}
    assert seen == published - helpers


async def test_duplicate_candidate_pages_are_capped(env: Env) -> None:
    """The query joins every contact with every other: one call may not ask for a huge page."""
    ok = await env.stub.ListDuplicateCandidates(pb.ListDuplicateCandidatesRequest(page_size=100))
    assert list(ok.candidates) == []
    await expect_error(
        env.stub.ListDuplicateCandidates(pb.ListDuplicateCandidatesRequest(page_size=101)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PAGE_SIZE",
    )
