"""The contact aggregate as the shared command runner sees it (shared/application/commands.py):
its stream, fold and evolve, the namespace its event ids derive from, and its personal fields
sealed with the contact's own data key (adapters/keys.py)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from services.contacts.adapters.keys import seal, unseal
from services.contacts.application.ports import KeyStore
from services.contacts.domain import contact as domain
from services.contacts.domain.contact import Contact
from shared.application.commands import Aggregate
from shared.eventstore import RecordedEvent

# Event ids and new contact ids derive from request ids in this namespace. Never change it: a
# request retried across the change would be executed twice.
NS = uuid.UUID("6f1c7a3e-2b1d-4f57-9a51-3c2f0e9d8b10")


class ContactKeys:
    """Sealing with the contact's data key: read for each use, never cached."""

    def __init__(self, keys: KeyStore) -> None:
        self.keys = keys

    async def key(self, id_: str) -> bytes | None:
        return await self.keys.get(id_)

    async def new_key(self, id_: str, connection: Any) -> bytes:
        key = (await self.keys.ensure([id_], connection))[id_]
        assert key is not None, "a new contact's key cannot have been destroyed"
        return key

    def seal(self, key: bytes, id_: str, data: Mapping[str, Any]) -> dict[str, Any]:
        return seal(key, id_, data)

    def unseal(self, key: bytes | None, id_: str, data: Mapping[str, Any]) -> dict[str, Any]:
        return unseal(key, id_, data)[0]


def contact_aggregate(keys: KeyStore) -> Aggregate[Contact]:
    return Aggregate(
        namespace=NS,
        stream_of=domain.stream_of,
        fold=lambda _id, rows: domain.fold(rows),
        evolve=domain.evolve,
        missing="CONTACT_NOT_FOUND",
        id_field="contact_id",
        sealing=ContactKeys(keys),
    )


def fold_contact(events: Sequence[RecordedEvent], key: bytes | None) -> Contact | None:
    """The contact from its recorded events (sealed fields opened with ``key``)."""
    return domain.fold(
        (e.type, unseal(key, e.data["contact_id"], e.data)[0], e.recorded_at, e.version)
        for e in events
    )
