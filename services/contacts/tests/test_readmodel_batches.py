"""The contacts read model does not depend on batch boundaries.

Random command sequences go through the service's own ContactCommands (register, update,
archive, restore, erase, merge, unmerge) into a real store; the stored log is then projected in
random chunks. Every row must equal the domain's fold of its stream and the as-of read
(GetContact as_of = now) at the end.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.contacts.adapters.keys import DataKeys, unseal
from services.contacts.adapters.readmodel import ContactsProjection
from services.contacts.application.commands import ContactCommands
from services.contacts.application.queries import ContactQueries
from services.contacts.domain import contact as d
from shared.domain.errors import DomainError
from shared.eventstore import RecordedEvent
from shared.testing.batches import batch_sizes, fresh_store, project_in_batches
from shared.testing.postgres import DatabaseFactory

SLOTS = 3
EMAILS = ("ada@shop.io", "bob@shop.io", "a.d.a+x@gmail.com", "")
PHONES = ("+14155552671", "+442071838750", "")
# Weighted: erasure and merges end a contact's writable life, so they come less often.
OPS = ("update",) * 4 + ("archive", "restore") * 3 + ("erase", "merge", "unmerge", "register")
steps = st.lists(
    st.tuples(
        st.sampled_from(OPS), st.integers(0, SLOTS), st.integers(0, SLOTS), st.integers(0, 99)
    ),
    min_size=12,
    max_size=40,
)


def _change(v: int) -> tuple[list[str], d.ProfileInput]:
    """One of a few profile changes (update mask and values), chosen by ``v``."""
    choices: list[dict[str, Any]] = [
        {"email": EMAILS[v % len(EMAILS)], "phone": PHONES[v % len(PHONES)]},
        {"first_name": f"F{v % 3}", "last_name": f"L{v % 2}"},
        {"tags": ["vip", "new", "b2b"][: v % 4]},
        {"attributes": {"tier": {"number_value": v % 5}} if v % 2 else {}},
        {"locale": "de-CH", "time_zone": "Europe/Zurich"},
    ]
    fields = choices[v % len(choices)]
    return list(fields), d.ProfileInput(**fields)


async def run_steps(
    commands: ContactCommands, plan: Sequence[tuple[str, int, int, int]]
) -> list[str]:
    """Register a few contacts, then execute the plan on them (indexes wrap around); a command
    the domain refuses is skipped, as a client would see it refused."""
    ids = [
        (await commands.register(d.ProfileInput(email=f"c{n}@shop.io", tags=["new"]))).contact_id
        for n in range(SLOTS)
    ]
    for op, i, j, v in plan:
        with contextlib.suppress(DomainError):
            await _act(commands, ids, op, ids[i % len(ids)], ids[j % len(ids)], v)
    return ids


async def _act(
    commands: ContactCommands, ids: list[str], op: str, cid: str, other: str, v: int
) -> None:
    if op == "register":  # identities may be taken (refused) or released by an erasure
        profile = d.ProfileInput(email=EMAILS[v % 3], phone=PHONES[v % 3], first_name="N")
        ids.append((await commands.register(profile)).contact_id)
    elif op == "update":
        await commands.update(cid, *_change(v))
    elif op == "archive":
        await commands.change(cid, lambda s: d.decide_archive(s, ""))
    elif op == "restore":
        await commands.change(cid, d.decide_restore)
    elif op == "erase":
        await commands.erase(cid, "gdpr")
    elif op == "merge":
        await commands.merge(cid, other)
    elif op == "unmerge":
        await commands.unmerge(cid)


def _fold(events: Sequence[RecordedEvent], key: bytes | None) -> d.Contact | None:
    return d.fold(
        (e.type, unseal(key, e.data["contact_id"], e.data)[0], e.recorded_at, e.version)
        for e in events
    )


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(plan=steps, sizes=batch_sizes)
async def test_contacts_rows_equal_the_fold_whatever_the_batches(
    databases: DatabaseFactory, plan: list[tuple[str, int, int, int]], sizes: list[int]
) -> None:
    async with fresh_store(databases) as store:
        keys = DataKeys(store.pool)
        commands = ContactCommands(store, keys)
        ids = await run_steps(commands, plan)
        await project_in_batches(store, ContactsProjection(), sizes)
        queries = ContactQueries(store.pool)
        now = datetime.now(UTC)
        assert await store.pool.fetchval("SELECT count(*) FROM contacts_rm.contacts") == len(ids)
        for cid in ids:
            events = await store.read_stream(d.stream_of(cid))
            row = await queries.get(cid)
            assert row == _fold(events, await keys.get(cid)), (cid, [e.type for e in events])
            assert row == await commands.load(cid, as_of=now), cid


async def test_archive_then_erase_in_two_batches_keeps_archived(
    databases: DatabaseFactory,
) -> None:
    """The instance from the issue: archive, a batch boundary, erase."""
    async with fresh_store(databases) as store:
        commands = ContactCommands(store, DataKeys(store.pool))
        ids = await run_steps(commands, [("archive", 0, 0, 0), ("erase", 0, 0, 0)])
        await project_in_batches(store, ContactsProjection(), [SLOTS + 1, 1])
        row = await ContactQueries(store.pool).get(ids[0])
        assert row is not None and (row.archived, row.erased) == (True, True)
        assert row == await commands.load(ids[0], as_of=datetime.now(UTC))
