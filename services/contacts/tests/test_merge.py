"""Identity resolution: duplicate candidates, merge, unmerge."""

from __future__ import annotations

import grpc

from crm.contacts.v1 import contacts_pb2 as pb
from services.contacts.tests.test_grpc_api import Env, env, expect_error, register

__all__ = ["env"]

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
