"""Bulk import: upsert contacts by external id, else email, else phone, batch by batch.

A batch is resolved with a few set-based reads (identity stream heads, matched contacts, keys)
and written in one transaction. Anything unusual for a batch (an identity repeated within it, an
update that moves an identity, a concurrent writer) goes through the ordinary command path, row
by row, so the result is the same as calling RegisterContact/UpdateContact per row. Events carry
``backfill: true`` in their metadata: flows and notifications ignore them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.contacts.application.commands import ContactCommands
from services.contacts.application.contact_events import NS, fold_contact
from services.contacts.application.ports import KeyStore
from services.contacts.domain import contact as domain
from services.contacts.domain.contact import Contact, ProfileInput
from services.contacts.domain.identity import KINDS, NORMALISERS, BadIdentity, identity_stream
from shared.application.commands import new_events
from shared.domain.errors import DomainError, Invalid
from shared.eventstore import (
    DuplicateEventId,
    EventStore,
    StreamAppend,
    StreamState,
    WrongExpectedVersion,
)

MAX_ERRORS = 1000  # errors reported in detail; the count covers all


@dataclass(frozen=True, slots=True)
class ImportRow:
    row: int  # 1-based data row number in the source file
    profile: ProfileInput
    fields: tuple[str, ...]  # the columns this row sets (empty cells leave a field unchanged)


@dataclass(frozen=True, slots=True)
class RowError:
    row: int
    field: str
    reason: str
    message: str


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    errors: list[RowError] = field(default_factory=list)

    def fail(self, row: int, field_: str, reason: str, message: str) -> None:
        self.failed += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(RowError(row, field_, reason, message))

    def fail_domain(self, row: int, exc: DomainError) -> None:
        field_ = exc.violations[0][0] if isinstance(exc, Invalid) else exc.metadata.get("field", "")
        self.fail(row, field_, exc.reason, exc.message)


@dataclass(frozen=True, slots=True)
class _Candidate:
    row: ImportRow
    ids: dict[str, str]  # normalised identities
    contact_id: str  # the id it gets if it is new
    registered: list[domain.Event]  # its registration, decided (and so validated) once


@dataclass
class _Plan:
    appends: list[StreamAppend] = field(default_factory=list)
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    slow: list[ImportRow] = field(default_factory=list)


class ContactImporter:
    def __init__(self, store: EventStore, keys: KeyStore, commands: ContactCommands) -> None:
        self.store, self.keys, self.commands = store, keys, commands
        self.contact = commands.contact

    async def import_batch(
        self, rows: Sequence[ImportRow], report: ImportReport, meta: Mapping[str, Any]
    ) -> None:
        meta = {**meta, "backfill": True}
        plan = await self._plan(rows, report, meta)
        if plan.appends:
            try:
                async with self.store.transaction() as uow:
                    await uow.append_multi(plan.appends)
            except (WrongExpectedVersion, DuplicateEventId):
                # Someone wrote to one of these streams meanwhile: redo the batch row by row.
                plan = _Plan(slow=list(rows))
        report.created += plan.created
        report.updated += plan.updated
        report.unchanged += plan.unchanged
        for row in plan.slow:
            await self._one(row, report, meta)

    async def _plan(
        self, rows: Sequence[ImportRow], report: ImportReport, meta: Mapping[str, Any]
    ) -> _Plan:
        plan = _Plan()
        valid: list[_Candidate] = []
        seen: set[str] = set()
        for r in rows:
            try:
                ids = {k: NORMALISERS[k](v) for k in KINDS if (v := getattr(r.profile, k))}
                cid = str(uuid.uuid4())  # used if the row turns out to be a new contact
                registered = domain.decide_register(cid, r.profile)  # also validates the row
            except BadIdentity as exc:
                kind = next(k for k in KINDS if getattr(r.profile, k))
                report.fail(r.row, kind, f"INVALID_{kind.upper()}", str(exc))
                continue
            except Invalid as exc:
                report.fail_domain(r.row, exc)
                continue
            streams = {identity_stream(k, v) for k, v in ids.items()}
            if streams & seen:  # the file repeats an identity: keep file order, row by row
                plan.slow.append(r)
            else:
                seen |= streams
                valid.append(_Candidate(r, ids, cid, registered))
        heads = await self.store.read_heads(list(seen))

        def holder(kind: str, value: str) -> str | None:
            head = heads.get(identity_stream(kind, value))
            return (
                head.data["contact_id"] if head and head.type == domain.IDENTITY_CLAIMED else None
            )

        matched: dict[str, ImportRow] = {}
        new: list[_Candidate] = []
        for c in valid:
            holders = {h for k, v in c.ids.items() if (h := holder(k, v))}
            if len(holders) > 1:
                why = "the row's identities belong to different contacts"
                report.fail(c.row.row, "email", "IDENTITY_TAKEN", why)
            elif holders:
                matched[holders.pop()] = c.row
            else:
                new.append(c)
        if matched:
            await self._plan_updates(matched, plan, report, meta)
        if new:
            keys = await self.keys.ensure(c.contact_id for c in new)
            for c in new:
                stream = domain.stream_of(c.contact_id)
                events = self.contact.events(
                    stream, c.registered, "", meta, keys[c.contact_id], c.contact_id
                )
                plan.appends.append(StreamAppend(stream, events, StreamState.NO_STREAM))
                for kind, value in c.ids.items():
                    s = identity_stream(kind, value)
                    head = heads.get(s)  # a released identity is claimed after its last event
                    claim = [(domain.IDENTITY_CLAIMED, {"contact_id": c.contact_id, "kind": kind})]
                    expected = head.version if head else StreamState.NO_STREAM
                    events = new_events(NS, s, claim, "", meta)
                    plan.appends.append(StreamAppend(s, events, expected))
                plan.created += 1
        return plan

    async def _plan_updates(
        self,
        matched: dict[str, ImportRow],
        plan: _Plan,
        report: ImportReport,
        meta: Mapping[str, Any],
    ) -> None:
        streams = await self.store.read_streams([domain.stream_of(c) for c in matched])
        keys = await self.keys.get_many(matched)
        for cid, r in matched.items():
            recorded = streams.get(domain.stream_of(cid), [])
            state = fold_contact(recorded, keys.get(cid))
            if state is None or state.merged_into or state.erased:
                plan.slow.append(r)  # the command path explains (or follows the merge)
                continue
            try:
                decided = domain.decide_update(state, list(r.fields), r.profile)
            except DomainError as exc:
                report.fail_domain(r.row, exc)
                continue
            if not decided:
                plan.unchanged += 1
                continue
            after = _fold_more(state, decided)
            if any(getattr(after, k) != getattr(state, k) for k in KINDS):
                plan.slow.append(r)  # moves an identity: claims and releases, row by row
                continue
            stream = domain.stream_of(cid)
            plan.appends.append(
                StreamAppend(
                    stream,
                    self.contact.events(stream, decided, "", meta, keys.get(cid), cid),
                    state.version,
                )
            )
            plan.updated += 1

    async def _one(self, r: ImportRow, report: ImportReport, meta: Mapping[str, Any]) -> None:
        """One row through the ordinary commands."""
        try:
            ids = {k: NORMALISERS[k](v) for k in KINDS if (v := getattr(r.profile, k))}
            existing = None
            for kind in ("external_id", "email", "phone"):
                if kind in ids and (existing := await self._holder(kind, ids[kind])):
                    break
            if existing is None:
                await self.commands.register(r.profile, meta=meta)
                report.created += 1
                return
            state = await self.commands.load(existing)
            while state is not None and state.merged_into:
                state = await self.commands.load(state.merged_into)
            assert state is not None
            after = await self.commands.update(
                state.contact_id, list(r.fields), r.profile, meta=meta
            )
            if after.version == state.version:
                report.unchanged += 1
            else:
                report.updated += 1
        except BadIdentity as exc:
            kind = next(k for k in KINDS if getattr(r.profile, k))
            report.fail(r.row, kind, f"INVALID_{kind.upper()}", str(exc))
        except DomainError as exc:
            report.fail_domain(r.row, exc)

    async def _holder(self, kind: str, value: str) -> str | None:
        heads = await self.store.read_heads([identity_stream(kind, value)])
        head = next(iter(heads.values()), None)
        return head.data["contact_id"] if head and head.type == domain.IDENTITY_CLAIMED else None


def _fold_more(state: Contact, decided: Sequence[domain.Event]) -> Contact:
    for i, (t, d) in enumerate(decided):
        state = domain.evolve(state, t, d, state.update_time, state.version + i + 1)  # type: ignore[arg-type]
    return state
