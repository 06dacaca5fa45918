"""The contacts application tier on the in-memory event store with an in-memory key store: the
command handlers' rules (identity uniqueness, sealing, erasure, merges, retries) at unit-test
speed. The real tier (PostgreSQL, the key table, gRPC) is tested by the API tests; these add
speed, they do not replace them."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from typing import Any

import pytest

from services.contacts.application.commands import ContactCommands
from services.contacts.domain import contact as domain
from services.contacts.domain.contact import ProfileInput
from shared.domain.errors import Conflict, DomainError, StaleEtag
from shared.eventstore.memory import InMemoryEventStore


class FakeKeys:
    """Keys in a dict; a destroyed key is None, as in the key table."""

    def __init__(self) -> None:
        self.keys: dict[str, bytes | None] = {}

    async def ensure(self, contact_ids: Iterable[str], conn: Any = None) -> dict[str, bytes | None]:
        for cid in contact_ids:
            self.keys.setdefault(cid, os.urandom(32))
        return dict(self.keys)

    async def get_many(
        self, contact_ids: Iterable[str], conn: Any = None
    ) -> dict[str, bytes | None]:
        return {cid: self.keys[cid] for cid in contact_ids if cid in self.keys}

    async def get(self, contact_id: str) -> bytes | None:
        return self.keys.get(contact_id)

    async def destroy(self, contact_id: str, conn: Any = None) -> None:
        if contact_id in self.keys:
            self.keys[contact_id] = None


@pytest.fixture
def store() -> InMemoryEventStore:
    return InMemoryEventStore()


@pytest.fixture
def keys() -> FakeKeys:
    return FakeKeys()


@pytest.fixture
def contacts(store: InMemoryEventStore, keys: FakeKeys) -> ContactCommands:
    return ContactCommands(store, keys)


async def test_personal_fields_are_sealed_in_the_log_and_open_in_the_fold(
    contacts: ContactCommands, store: InMemoryEventStore
) -> None:
    c = await contacts.register(ProfileInput(email="ada@example.com", first_name="Ada"))
    [registered] = await store.read_stream(domain.stream_of(c.contact_id))
    assert "ada@example.com" not in str(registered.data)
    assert (await contacts.load(c.contact_id)) == c
    assert c.email == "ada@example.com" and c.first_name == "Ada"


async def test_an_identity_belongs_to_one_contact(contacts: ContactCommands) -> None:
    ada = await contacts.register(ProfileInput(email="ada@example.com"))
    with pytest.raises(Conflict) as taken:
        await contacts.register(ProfileInput(email="ADA@example.com"))
    assert taken.value.reason == "IDENTITY_TAKEN"
    assert taken.value.metadata["contact_id"] == ada.contact_id
    bob = await contacts.register(ProfileInput(email="bob@example.com"))
    with pytest.raises(Conflict):
        await contacts.update(bob.contact_id, ["email"], ProfileInput(email="ada@example.com"))
    # Released by a change, the identity can be claimed again.
    await contacts.update(ada.contact_id, ["email"], ProfileInput(email="ada@new.example"))
    again = await contacts.update(bob.contact_id, ["email"], ProfileInput(email="ada@example.com"))
    assert again.email == "ada@example.com"


async def test_racing_registrations_of_one_identity_make_one_contact(
    contacts: ContactCommands,
) -> None:
    results = await asyncio.gather(
        *(contacts.register(ProfileInput(email="race@example.com")) for _ in range(5)),
        return_exceptions=True,
    )
    made = [r for r in results if not isinstance(r, BaseException)]
    assert len(made) == 1
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, BaseException))


async def test_a_retried_registration_gets_the_first_contact(contacts: ContactCommands) -> None:
    first = await contacts.register(ProfileInput(email="r@example.com"), request_id="reg-1")
    again = await contacts.register(ProfileInput(email="r@example.com"), request_id="reg-1")
    assert again == first


async def test_erasure_destroys_the_key_and_releases_identities(
    contacts: ContactCommands, keys: FakeKeys
) -> None:
    c = await contacts.register(ProfileInput(email="gone@example.com", first_name="Gone"))
    erased = await contacts.erase(c.contact_id, "request")
    assert erased.erased and keys.keys[c.contact_id] is None
    folded = await contacts.load(c.contact_id)
    assert folded is not None and folded.first_name == "" and folded.email == ""
    # The identity is free again.
    assert (await contacts.register(ProfileInput(email="gone@example.com"))).email


async def test_merge_moves_identities_and_unmerge_restores_them(contacts: ContactCommands) -> None:
    survivor = await contacts.register(ProfileInput(email="s@example.com"))
    merged = await contacts.register(ProfileInput(email="m@example.com", phone="+14155550100"))
    after = await contacts.merge(survivor.contact_id, merged.contact_id, request_id="m-1")
    assert after.phone == "+14155550100"
    assert await contacts.merge(survivor.contact_id, merged.contact_id, request_id="m-1") == after
    with pytest.raises(DomainError) as twice:  # another request: it is merged already
        await contacts.merge(survivor.contact_id, merged.contact_id, request_id="m-2")
    assert twice.value.reason == "CONTACT_MERGED"
    back, restored = await contacts.unmerge(merged.contact_id, request_id="u-1")
    assert (back.phone, restored.phone) == ("", "+14155550100")


async def test_a_stale_etag_is_refused(contacts: ContactCommands) -> None:
    c = await contacts.register(ProfileInput(email="e@example.com"))
    await contacts.update(c.contact_id, ["first_name"], ProfileInput(first_name="A"))
    with pytest.raises(StaleEtag) as stale:
        await contacts.update(
            c.contact_id, ["first_name"], ProfileInput(first_name="B"), etag=str(c.version)
        )
    assert stale.value.reason == "ETAG_MISMATCH"
