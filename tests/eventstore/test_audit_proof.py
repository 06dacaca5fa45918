"""`crm audit prove` and `crm audit check-proof` on a real PostgreSQL: a proof of any event
verifies offline with the signer's key, and fails when anything in it is changed, when it is
checked with another key, or when the log no longer matches the checkpoint."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from shared.eventstore import StreamState
from shared.eventstore.audit.checkpoints import SigningKey, b64
from shared.eventstore.postgres import PostgresEventStore
from tests.eventstore.audit_support import Run, crm, ev, fill, recompute_chain, tamper


@pytest.fixture
async def store(dsn: str) -> AsyncIterator[PostgresEventStore]:
    s = await PostgresEventStore.connect(dsn)
    yield s
    await s.close()


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate()


async def event_ids(store: PostgresEventStore) -> list[str]:
    rows = await store.pool.fetch("SELECT event_id FROM eventstore.events ORDER BY position")
    return [str(r[0]) for r in rows]


async def check(path: Path, proof: Any, key: SigningKey) -> Run:
    path.write_bytes(orjson.dumps(proof))  # noqa: ASYNC240 - a small test file
    return await crm(
        "audit", "check-proof", str(path), "--public-key", b64(key.public_key), "--json"
    )


async def test_every_events_proof_verifies_offline(
    store: PostgresEventStore, dsn: str, key: SigningKey, tmp_path: Path
) -> None:
    await fill(store, streams=5, events=3)
    assert (await crm("audit", "checkpoint", "--create", dsn=dsn, key=key)).code == 0
    await store.append("c-0", [ev(n=9)], 2)  # after the checkpoint
    assert (await crm("audit", "checkpoint", "--create", dsn=dsn, key=key)).code == 0
    ids = await event_ids(store)
    for i, event_id in enumerate(ids[:-1]):
        made = await crm("audit", "prove", event_id, "--checkpoint", "1", dsn=dsn)
        assert made.code == 0, made.stderr
        proof = made.json()
        assert proof["checkpoint"]["number"] == 1 and proof["chain"][0]["event_id"] == event_id
        run = await check(tmp_path / f"p{i}.json", proof, key)
        assert run.code == 0, run.stdout
    late = await crm("audit", "prove", ids[-1], "--checkpoint", "1", dsn=dsn)
    assert late.code == 2 and "came after checkpoint 1" in late.stderr
    latest = await crm("audit", "prove", ids[-1], dsn=dsn)  # the latest checkpoint covers it
    assert latest.code == 0 and latest.json()["checkpoint"]["number"] == 2


async def test_a_changed_proof_or_another_key_fails(
    store: PostgresEventStore, dsn: str, key: SigningKey, tmp_path: Path
) -> None:
    await fill(store, streams=4, events=3)
    assert (await crm("audit", "checkpoint", "--create", dsn=dsn, key=key)).code == 0
    proof = (await crm("audit", "prove", (await event_ids(store))[3], dsn=dsn)).json()
    path = tmp_path / "proof.json"
    assert (await check(path, proof, key)).code == 0
    first = proof["chain"][0]
    data = {**proof, "chain": [{**first, "data": '{"n": 1, "s": 7}'}, *proof["chain"][1:]]}
    assert (await check(path, data, key)).kinds() == {"altered_event"}
    bent = {**proof, "audit_path": [b"\x00".hex() * 32, *proof["audit_path"][1:]]}
    assert (await check(path, bent, key)).kinds() == {"checkpoint_mismatch"}
    moved = {**proof, "leaf_index": proof["leaf_index"] + 1}
    assert (await check(path, moved, key)).kinds() == {"checkpoint_mismatch"}
    cut = {**proof, "chain": proof["chain"][:-1]}  # stops before the stream's head
    assert (await check(path, cut, key)).kinds() == {"checkpoint_mismatch"}
    other = await check(path, proof, SigningKey.generate())
    assert other.code == 1 and other.kinds() == {"forged_checkpoint"}
    garbled = tmp_path / "garbled.json"
    garbled.write_text("{")
    assert (await crm("audit", "check-proof", str(garbled))).code == 2


async def test_no_proof_from_a_log_that_no_longer_matches(
    store: PostgresEventStore, dsn: str, key: SigningKey
) -> None:
    await fill(store)
    await store.append("c-0", [ev(n=5)], StreamState.EXISTS)
    assert (await crm("audit", "checkpoint", "--create", dsn=dsn, key=key)).code == 0
    ids = await event_ids(store)
    await tamper(
        store,
        """UPDATE eventstore.events SET data = '{"n": 0, "s": 5}'
           WHERE stream_id = 'c-0' AND version = 0""",
        recompute_chain("c-0"),
    )
    run = await crm("audit", "prove", ids[0], dsn=dsn)
    assert run.code == 1 and "no longer matches checkpoint 1" in run.stderr
    # another stream's event is still proven: its leaf is intact, but the root is not
    assert (await crm("audit", "prove", ids[2], dsn=dsn)).code == 1
    assert (await crm("audit", "prove", ids[0], "--checkpoint", "7", dsn=dsn)).code == 2
