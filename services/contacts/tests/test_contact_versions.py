"""BatchGetContactVersions: a contact as it stood right after a given event, decrypted - how
another service reads personal fields as of the contact event it is processing."""

from __future__ import annotations

import uuid

import grpc
from google.protobuf import field_mask_pb2

from crm.contacts.v1 import contacts_pb2 as pb
from services.contacts.tests.conftest import Env
from services.contacts.tests.helpers import expect_error, register


async def test_each_contact_as_of_a_version_of_its_stream(env: Env) -> None:
    tag = uuid.uuid4().hex[:8]
    ada = await register(env, email=f"ada-{tag}@one.example", first_name="Ada")
    changed = pb.Contact(contact_id=ada.contact_id, email=f"ada-{tag}@two.example")
    mask = field_mask_pb2.FieldMask(paths=["email"])
    await env.stub.UpdateContact(pb.UpdateContactRequest(contact=changed, update_mask=mask))
    bob = await register(env, email=f"bob-{tag}@example.com")
    nobody = str(uuid.uuid4())
    ref = pb.ContactVersionRef
    got = await env.stub.BatchGetContactVersions(
        pb.BatchGetContactVersionsRequest(
            refs=[
                ref(contact_id=ada.contact_id, version=0),
                ref(contact_id=ada.contact_id, version=1),
                ref(contact_id=bob.contact_id, version=0),
                ref(contact_id=nobody, version=0),
            ]
        )
    )
    assert [(c.contact_id, c.etag, c.email) for c in got.contacts] == [
        (ada.contact_id, "0", f"ada-{tag}@one.example"),
        (ada.contact_id, "1", f"ada-{tag}@two.example"),
        (bob.contact_id, "0", f"bob-{tag}@example.com"),
    ]
    assert [(m.contact_id, m.version) for m in got.missing] == [(nobody, 0)]


async def test_an_erased_contact_comes_back_without_personal_fields(env: Env) -> None:
    c = await register(env, email=f"gone-{uuid.uuid4().hex[:8]}@example.com", first_name="G")
    await env.stub.EraseContact(pb.EraseContactRequest(contact_id=c.contact_id, reason="gdpr"))
    got = await env.stub.BatchGetContactVersions(
        pb.BatchGetContactVersionsRequest(refs=[pb.ContactVersionRef(contact_id=c.contact_id)])
    )
    [before] = got.contacts  # the registration, read after the key was destroyed
    assert (before.email, before.first_name) == ("", "")


async def test_bad_refs_are_refused(env: Env) -> None:
    bad = pb.BatchGetContactVersionsRequest(
        refs=[pb.ContactVersionRef(contact_id=str(uuid.uuid4()), version=-1)]
    )
    fields = await expect_error(
        env.stub.BatchGetContactVersions(bad), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_VERSION"
    )
    assert fields == ["refs[0].version"]
    many = pb.BatchGetContactVersionsRequest(
        refs=[pb.ContactVersionRef(contact_id=str(uuid.uuid4())) for _ in range(501)]
    )
    await expect_error(
        env.stub.BatchGetContactVersions(many), grpc.StatusCode.INVALID_ARGUMENT, "TOO_MANY_ITEMS"
    )
