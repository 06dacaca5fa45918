"""The audit side of each backend (shared/eventstore/audit/port.py): PostgreSQL and the
in-memory store give the same checkpoints, exports and proofs, checked by the same verifiers;
EventStoreDB refuses with a clear error."""

from __future__ import annotations

import contextlib
import io
from collections.abc import AsyncIterator
from typing import Any

import pytest

from shared.eventstore import StreamState
from shared.eventstore.audit.checkpoints import SigningKey
from shared.eventstore.audit.export import export
from shared.eventstore.audit.offline import verify_export
from shared.eventstore.audit.port import AuditLog, CheckpointsUnsupported, audit_log
from shared.eventstore.audit.proof import check_proof, make_proof
from shared.eventstore.audit.verify import tree_as_of, verify_log
from shared.eventstore.memory import InMemoryEventStore
from shared.eventstore.postgres import PostgresEventStore
from tests.eventstore.audit_support import ev


@pytest.fixture(params=["postgres", "memory"])
async def store(request: pytest.FixtureRequest, dsn: str) -> AsyncIterator[Any]:
    s: Any = (
        await PostgresEventStore.connect(dsn)
        if request.param == "postgres"
        else InMemoryEventStore()
    )
    yield s
    await s.close()


async def exported(audit: AuditLog, first: int, last: int) -> list[bytes]:
    out = io.BytesIO()
    await export(audit, first, last, out.write)
    return out.getvalue().splitlines(keepends=True)


async def test_checkpoint_verify_export_and_prove(store: Any) -> None:
    key = SigningKey.generate()
    audit = audit_log(store)
    assert await audit.create_checkpoint(key) is None  # an empty log: nothing to sign
    for n, name in enumerate(["ö-1", "a-1", "Z-1", "a-10"]):  # code point order: Z a a-10 ö
        await store.append(name, [ev(n=n), ev(n=n + 1)], StreamState.NO_STREAM)
    first = await audit.create_checkpoint(key)
    assert first is not None and await audit.create_checkpoint(key) is None
    assert [h.stream async for h in audit.heads(first.position)] == ["Z-1", "a-1", "a-10", "ö-1"]
    assert (first.streams, first.position) == (4, await audit.final_position())
    assert await tree_as_of(audit, first.position) == (first.streams, first.root)
    await store.append("a-1", [ev(n=9)], 1)
    second = await audit.create_checkpoint(key)
    assert second is not None and second.previous == first.digest()
    assert await audit.checkpoints() == [first, second] and await audit.checkpoints(1) == [second]
    assert await audit.latest_checkpoint() == second

    report = await verify_log(audit, [first, second], pinned=[key.public_key])
    assert report.ok and (report.events, report.streams, report.checkpoints) == (9, 4, 2)
    whole = await exported(audit, 0, second.position)
    assert verify_export(whole, [first, second], pinned=[key.public_key]).checkpoints == 2
    since, _ = await audit.positions_between(first.at, None)
    part = verify_export(await exported(audit, since, second.position), [first, second])
    assert part.ok and part.events == 1, part.to_json()

    async with contextlib.aclosing(audit.stream_tail("Z-1", 0, first.position)) as tail:
        event = await anext(tail)
    proof = await make_proof(audit, first, event.event_id)
    assert check_proof(proof, pinned=[key.public_key]).ok
    assert not check_proof(proof, pinned=[SigningKey.generate().public_key]).ok


def test_eventstoredb_keeps_no_checkpoints() -> None:
    from shared.eventstore.esdb import EventStoreDBStore

    with pytest.raises(CheckpointsUnsupported, match="EventStoreDBStore backend keeps no"):
        audit_log(EventStoreDBStore(client=None))
