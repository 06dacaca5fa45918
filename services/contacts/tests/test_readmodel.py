"""The contacts read model equals a fold of each contact's stream, whatever the batch size."""

from __future__ import annotations

import random
import uuid

import pytest

from services.contacts.adapters.readmodel import ContactsProjection
from services.contacts.application.queries import ContactQueries
from services.contacts.domain import contact as d
from shared.eventstore import NewEvent, StreamState
from shared.eventstore.postgres import PostgresEventStore
from shared.projections.runner import ProjectionRunner


async def seed(store: PostgresEventStore, rng: random.Random) -> list[str]:
    ids = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(12)]
    state: dict[str, d.Contact] = {}
    for step in range(120):
        cid = rng.choice(ids)
        if cid not in state:
            decided = d.decide_register(
                cid, d.ProfileInput(external_id=f"x-{cid[:8]}", tags=["new"])
            )
        else:
            field = rng.choice(["first_name", "last_name", "tags", "email", "phone"])
            value = {
                "first_name": d.ProfileInput(first_name=f"F{step}"),
                "last_name": d.ProfileInput(last_name=rng.choice(["", f"L{step}"])),
                "tags": d.ProfileInput(tags=rng.sample(["a", "b", "c", "d"], rng.randint(0, 3))),
                "email": d.ProfileInput(email=rng.choice(["", f"u{step}@shop.io"])),
                "phone": d.ProfileInput(phone=rng.choice(["", "+14155552671"])),
            }[field]
            decided = d.decide_update(state[cid], [field], value)
            if not decided:
                continue
        stream = d.stream_of(cid)
        version = state[cid].version if cid in state else -1
        r = await store.append(
            stream,
            [NewEvent(t, data) for t, data in decided],
            StreamState.NO_STREAM if version < 0 else version,
        )
        after = state.get(cid)
        for t, data in decided:
            after = d.evolve(after, t, data, r.recorded_at, r.version)  # type: ignore[arg-type]
        assert after is not None
        state[cid] = after
    return list(state)


@pytest.mark.parametrize("batch_size", [1, 3, 500])
async def test_read_model_equals_fold_of_streams(dsn: str, batch_size: int) -> None:
    store = await PostgresEventStore.connect(dsn)
    try:
        ids = await seed(store, random.Random(batch_size))
        runner = ProjectionRunner(store, ContactsProjection(), batch_size=batch_size)
        await runner.catch_up()
        queries = ContactQueries(store.pool)
        for cid in ids:
            events = await store.read_stream(d.stream_of(cid))
            folded = d.fold((e.type, e.data, e.recorded_at, e.version) for e in events)
            row = await queries.get(cid)
            assert row == folded, cid
    finally:
        await store.close()


async def test_tag_array_literal_round_trips_any_text(dsn: str) -> None:
    import asyncpg

    from services.contacts.adapters.readmodel import _pg_array

    values = ["plain", 'q"uote', "back\\slash", "com,ma", "{brace}", "sp ace", "NULL", "", "ü"]
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT $1::text::text[]", _pg_array(values)) == values
        assert await conn.fetchval("SELECT $1::text::text[]", _pg_array([])) == []
    finally:
        await conn.close()
