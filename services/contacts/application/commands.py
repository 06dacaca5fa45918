"""Contact command handlers: decide functions run by the shared command runner, with identity
claims in the same atomic write (identity_claims.py); merging and unmerging in merging.py."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from services.contacts.application import identity_claims, merging
from services.contacts.application.contact_events import NS, contact_aggregate, fold_contact
from services.contacts.application.ports import KeyStore
from services.contacts.domain import contact as domain
from services.contacts.domain.contact import Contact, ProfileInput
from shared.application.commands import CommandRunner, Event, new_id
from shared.eventstore import EventStore, RecordedEvent, StreamAppend


class ContactCommands:
    def __init__(self, store: EventStore, keys: KeyStore) -> None:
        self.store = store
        self.keys = keys
        self.runner = CommandRunner(store)
        self.contact = contact_aggregate(keys)

    async def history(self, contact_id: str) -> tuple[list[RecordedEvent], bytes | None]:
        """The contact's recorded events (sealed) and its data key (None once erased)."""
        loaded = await self.runner.load(self.contact, contact_id)
        return loaded.events, loaded.key

    async def load(
        self, contact_id: str, up_to_version: int | None = None, as_of: datetime | None = None
    ) -> Contact | None:
        loaded = await self.runner.load(
            self.contact, contact_id, up_to_version=up_to_version, as_of=as_of
        )
        return loaded.state

    async def load_versions(
        self, refs: Sequence[tuple[str, int]]
    ) -> list[tuple[str, int, Contact | None]]:
        """Each (contact, version) as the contact stood right after that version of its
        stream: one read of all the streams and one of the keys."""
        ids = sorted({cid for cid, _ in refs})
        streams = await self.store.read_streams([domain.stream_of(cid) for cid in ids])
        keys = await self.keys.get_many(ids)
        out = []
        for cid, version in refs:
            events = [e for e in streams.get(domain.stream_of(cid), []) if e.version <= version]
            state = fold_contact(events, keys.get(cid)) if events else None
            out.append((cid, version, state))
        return out

    @staticmethod
    def fold(events: Sequence[RecordedEvent], key: bytes | None) -> Contact | None:
        """The contact from events already read with ``history``."""
        return fold_contact(events, key)

    async def replayed(
        self, request_id: str, contact_id: str, fingerprint: str = ""
    ) -> Contact | None:
        """The result of an earlier execution of this request, if there was one."""
        done = await self.runner.earlier(self.contact, contact_id, request_id, fingerprint)
        return done.state if done is not None else None

    async def register(
        self, profile: ProfileInput, *, request_id: str = "", meta: Mapping[str, Any] = {}
    ) -> Contact:
        """The contact, its data key and its identity claims in one transaction: one commit,
        and no key without its contact."""
        contact_id = new_id(NS, "register", request_id)
        decided = domain.decide_register(contact_id, profile)
        identities = domain.evolve(None, *decided[0], None, 0).identities()  # type: ignore[arg-type]

        async def plan(attempt: int) -> tuple[list[Event], list[StreamAppend]]:
            # First attempt: assume the identities are new (no read, one round trip). After a
            # conflict, read the identity streams to name the holder or claim a released one.
            claims = await identity_claims.claims(
                self.store, contact_id, identities, {}, request_id, meta, optimistic=attempt == 0
            )
            return decided, claims

        return await self.runner.create(
            self.contact, contact_id, plan, request_id=request_id, meta=meta
        )

    async def update(
        self,
        contact_id: str,
        paths: Sequence[str],
        profile: ProfileInput,
        *,
        etag: str = "",
        request_id: str = "",
        meta: Mapping[str, Any] = {},
    ) -> Contact:
        async def claims(
            state: Contact | None, decided: list[Event], _n: int
        ) -> list[StreamAppend]:
            assert state is not None
            after = state
            for i, (t, d) in enumerate(decided):
                after = domain.evolve(after, t, d, state.update_time, state.version + i + 1)  # type: ignore[arg-type]
            claim, release = domain.identity_changes(state, after)
            return await identity_claims.claims(
                self.store, contact_id, claim, release, request_id, meta
            )

        return await self.runner.execute(
            self.contact,
            contact_id,
            lambda state: domain.decide_update(state, paths, profile),
            etag=etag,
            request_id=request_id,
            meta=meta,
            also=claims,
        )

    async def change(
        self,
        contact_id: str,
        decide: Callable[[Contact], list[Event]],
        *,
        etag: str = "",
        request_id: str = "",
        meta: Mapping[str, Any] = {},
    ) -> Contact:
        """A state change with no identity effects (archive, restore)."""
        return await self.runner.execute(
            self.contact, contact_id, decide, etag=etag, request_id=request_id, meta=meta
        )

    async def erase(
        self, contact_id: str, reason: str, *, request_id: str = "", meta: Mapping[str, Any] = {}
    ) -> Contact:
        """ContactErased, the release of every identity and the destruction of the data key,
        in one transaction on PostgreSQL: never a half-erased contact. Elsewhere the key is
        destroyed right after the append (an interrupted erasure is completed by calling
        EraseContact again)."""

        async def releases(
            state: Contact | None, _decided: list[Event], _n: int
        ) -> list[StreamAppend]:
            assert state is not None
            return await identity_claims.claims(
                self.store, contact_id, {}, state.identities(), request_id, meta
            )

        async def destroy_key(connection: Any) -> None:
            await self.keys.destroy(contact_id, connection)

        return await self.runner.execute(
            self.contact,
            contact_id,
            lambda state: domain.decide_erase(state, reason),
            request_id=request_id,
            meta=meta,
            also=releases,
            then=destroy_key,
        )

    async def merge(
        self,
        survivor_id: str,
        merged_id: str,
        *,
        request_id: str = "",
        meta: Mapping[str, Any] = {},
    ) -> Contact:
        """Merge ``merged_id`` into ``survivor_id`` (see merging.py)."""
        return await merging.merge(self, survivor_id, merged_id, request_id, meta)

    async def unmerge(
        self, merged_id: str, *, request_id: str = "", meta: Mapping[str, Any] = {}
    ) -> tuple[Contact, Contact]:
        """Undo a merge (see merging.py)."""
        return await merging.unmerge(self, merged_id, request_id, meta)
