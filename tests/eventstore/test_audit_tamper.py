"""`crm events verify --against checkpoints.jsonl` on a real PostgreSQL: each kind of tampering a
database superuser can do is found and reported (exit 1), and an untouched log passes (exit 0).

The checkpoints file is what an auditor exported before the tampering; the tampering is done
as a superuser would, with the append-only triggers switched off.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from shared.eventstore import StreamState
from shared.eventstore.audit.checkpoints import Checkpoint, SigningKey, b64
from shared.eventstore.audit.postgres import PostgresAuditLog
from shared.eventstore.postgres import PostgresEventStore
from tests.eventstore.audit_support import (
    checkpoints_file,
    crm,
    ev,
    fill,
    recompute_chain,
    swap_positions,
    tamper,
    verify_against,
)


@pytest.fixture
async def store(dsn: str) -> AsyncIterator[PostgresEventStore]:
    s = await PostgresEventStore.connect(dsn)
    yield s
    await s.close()


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate()


async def checkpoint(dsn: str, key: SigningKey) -> Checkpoint:
    run = await crm("audit", "checkpoint", "--create", dsn=dsn, key=key)
    assert run.code == 0, run.stderr
    return Checkpoint.from_json(orjson.loads(run.stdout))


async def positions(store: PostgresEventStore, stream: str) -> list[int]:
    rows = await store.pool.fetch(
        "SELECT position FROM eventstore.events WHERE stream_id = $1 ORDER BY version", stream
    )
    return [r[0] for r in rows]


async def test_an_untouched_log_matches_its_checkpoints(
    store: PostgresEventStore, dsn: str, key: SigningKey, tmp_path: Path
) -> None:
    await fill(store)
    first = await checkpoint(dsn, key)
    await store.append("c-9", [ev(n=1)], StreamState.NO_STREAM)
    second = await checkpoint(dsn, key)
    assert (first.number, first.streams, second.number, second.streams) == (1, 3, 2, 4)
    assert second.previous == first.digest() and second.position > first.position
    assert second.signed_by(key.public_key)
    again = await crm("audit", "checkpoint", "--create", dsn=dsn, key=key)
    assert again.code == 0 and again.stdout == "" and "not moved" in again.stderr
    run = await verify_against(dsn, await checkpoints_file(dsn, tmp_path / "c.jsonl"), key)
    assert run.code == 0, run.stdout
    assert run.json()["checkpoints_checked"] == 2 and run.json()["events"] == 7


async def test_an_altered_event(
    store: PostgresEventStore, dsn: str, key: SigningKey, tmp_path: Path
) -> None:
    await fill(store)
    await checkpoint(dsn, key)
    kept = await checkpoints_file(dsn, tmp_path / "c.jsonl")
    await tamper(
        store,
        """UPDATE eventstore.events SET data = '{"n": 99, "s": 1}'
           WHERE stream_id = 'c-1' AND version = 0""",
    )
    run = await verify_against(dsn, kept, key)
    assert run.code == 1
    assert run.kinds() == {"altered_event"}
    (finding,) = run.json()["findings"]
    assert (finding["stream"], finding["version"]) == ("c-1", 0)
    plain = await crm("events", "verify", dsn=dsn)  # the chains alone see it too
    assert plain.code == 1 and "altered_event" in plain.stderr


async def test_a_deleted_stream(
    store: PostgresEventStore, dsn: str, key: SigningKey, tmp_path: Path
) -> None:
    await fill(store)
    await checkpoint(dsn, key)
    kept = await checkpoints_file(dsn, tmp_path / "c.jsonl")
    await tamper(store, "DELETE FROM eventstore.events WHERE stream_id = 'c-0'")
    assert (await crm("events", "verify", dsn=dsn)).code == 0  # every chain left is intact
    run = await verify_against(dsn, kept, key)
    assert run.code == 1
    assert run.kinds() == {"checkpoint_mismatch"}
    assert "1 fewer" in run.json()["findings"][0]["message"]


async def test_a_truncated_tail(
    store: PostgresEventStore, dsn: str, key: SigningKey, tmp_path: Path
) -> None:
    await fill(store)
    await store.append("c-1", [ev(n=7), ev(n=8)], 1)
    cp = await checkpoint(dsn, key)
    kept = await checkpoints_file(dsn, tmp_path / "c.jsonl")
    tail = (await positions(store, "c-1"))[2:]
    assert tail[-1] == cp.position  # the log's last events
    await tamper(store, f"DELETE FROM eventstore.events WHERE position >= {tail[0]}")
    assert (await crm("events", "verify", dsn=dsn)).code == 0
    run = await verify_against(dsn, kept, key)
    assert run.code == 1
    assert run.kinds() == {"truncated", "checkpoint_mismatch"}
    # The writer refuses to go on from a log that lost what it signed.
    more = await crm("audit", "checkpoint", "--create", dsn=dsn, key=key)
    assert more.code == 1 and "tail was removed" in more.stderr


async def test_a_rewritten_stream_with_its_chain_recomputed(
    store: PostgresEventStore, dsn: str, key: SigningKey, tmp_path: Path
) -> None:
    await fill(store)
    await checkpoint(dsn, key)
    kept = await checkpoints_file(dsn, tmp_path / "c.jsonl")
    await tamper(
        store,
        """UPDATE eventstore.events SET data = '{"n": 99, "s": 2}'
           WHERE stream_id = 'c-2' AND version = 0""",
        recompute_chain("c-2"),
    )
    assert (await crm("events", "verify", dsn=dsn)).code == 0  # the chains cannot tell
    run = await verify_against(dsn, kept, key)
    assert run.code == 1
    assert run.kinds() == {"checkpoint_mismatch"}
    assert "no longer give its Merkle root" in run.json()["findings"][0]["message"]


async def test_history_reordered_within_a_stream(
    store: PostgresEventStore, dsn: str, key: SigningKey, tmp_path: Path
) -> None:
    await fill(store)
    await checkpoint(dsn, key)
    kept = await checkpoints_file(dsn, tmp_path / "c.jsonl")
    v0, v1 = await positions(store, "c-1")
    await tamper(store, *swap_positions(v0, v1))
    run = await verify_against(dsn, kept, key)
    assert run.code == 1
    assert run.kinds() == {"out_of_order", "checkpoint_mismatch"}
    order = next(f for f in run.json()["findings"] if f["kind"] == "out_of_order")
    assert (order["stream"], order["version"], order["position"]) == ("c-1", 1, v0)


async def test_history_reordered_across_streams(
    store: PostgresEventStore, dsn: str, key: SigningKey, tmp_path: Path
) -> None:
    """Two streams' events swap places in the global order: every chain is still intact, but
    the heads as of the checkpoint between them differ."""
    await store.append("a-1", [ev(n=1)], StreamState.NO_STREAM)
    await checkpoint(dsn, key)
    await store.append("b-1", [ev(n=2)], StreamState.NO_STREAM)
    await checkpoint(dsn, key)
    kept = await checkpoints_file(dsn, tmp_path / "c.jsonl")
    (a,), (b,) = await positions(store, "a-1"), await positions(store, "b-1")
    await tamper(store, *swap_positions(a, b))
    assert (await crm("events", "verify", dsn=dsn)).code == 0
    run = await verify_against(dsn, kept, key)
    assert run.code == 1
    assert run.kinds() == {"checkpoint_mismatch"}
    assert {f["checkpoint"] for f in run.json()["findings"]} == {1, 2}


async def test_a_forged_checkpoint(
    store: PostgresEventStore, dsn: str, key: SigningKey, tmp_path: Path
) -> None:
    await fill(store)
    await checkpoint(dsn, key)
    kept = await checkpoints_file(dsn, tmp_path / "c.jsonl")
    # The attacker rewrites a stream, then edits the checkpoint's root to match the new log.
    await tamper(
        store,
        """UPDATE eventstore.events SET data = '{"n": 5, "s": 0}'
           WHERE stream_id = 'c-0' AND version = 1""",
        recompute_chain("c-0"),
    )
    audit = PostgresAuditLog(store.pool)
    from shared.eventstore.audit.verify import tree_as_of

    body = orjson.loads(kept.read_text())
    _, root = await tree_as_of(audit, body["position"])
    forged = tmp_path / "forged.jsonl"
    forged.write_text(orjson.dumps({**body, "root": root.hex()}).decode() + "\n")
    run = await verify_against(dsn, forged, key)
    assert run.code == 1 and run.kinds() == {"forged_checkpoint"}
    # ... or signs a new one with a key of their own: the pinned key does not verify it.
    own = SigningKey.generate()
    resigned = own.sign(
        number=1,
        position=body["position"],
        at=Checkpoint.from_json(body).at,
        streams=body["streams"],
        root=root,
        previous=b"",
    )
    forged.write_text(orjson.dumps(resigned.to_json()).decode() + "\n")
    run = await verify_against(dsn, forged, key)
    assert run.code == 1 and run.kinds() == {"forged_checkpoint"}
    assert "any pinned key" in run.json()["findings"][0]["message"]
    # Unpinned, such a checkpoint verifies against the key it publishes: the report says so.
    unpinned = await crm("events", "verify", "--against", str(forged), "--json", dsn=dsn)
    assert unpinned.code == 0 and "no --public-key" in unpinned.json()["notes"][0]


async def test_a_checkpoint_removed_from_the_sequence(
    store: PostgresEventStore, dsn: str, key: SigningKey, tmp_path: Path
) -> None:
    for n in range(3):
        await store.append(f"c-{n}", [ev(n=n)], StreamState.NO_STREAM)
        await checkpoint(dsn, key)
    kept = await checkpoints_file(dsn, tmp_path / "c.jsonl")
    first, _, third = kept.read_text().splitlines()
    kept.write_text(f"{first}\n{third}\n")
    run = await verify_against(dsn, kept, key)
    assert run.code == 1 and run.kinds() == {"checkpoint_sequence"}
    assert "checkpoints 2 to 2 are missing" in run.json()["findings"][0]["message"]


async def test_usage_and_connection_errors_exit_2(tmp_path: Path, key: SigningKey) -> None:
    assert (await crm("events", "verify")).code == 2  # no database named
    bad = await crm("events", "verify", dsn="postgresql://nobody@127.0.0.1:1/none")
    assert bad.code == 2 and "database" in bad.stderr
    missing = await crm("events", "verify", "--file", str(tmp_path / "none.jsonl"))
    assert missing.code == 2
    garbled = tmp_path / "c.jsonl"
    garbled.write_text("{not json\n")
    assert (await crm("events", "verify", "--against", str(garbled), dsn="x")).code == 2
    assert (await crm("events", "verify", "--public-key", "short", dsn="x")).code == 2
    assert (await crm("audit", "checkpoint", "--create", dsn="x")).code == 2  # no key
    assert (await crm("audit", "prove", "not-a-uuid", dsn="x")).code == 2
    assert b64(key.public_key) in (await crm("audit", "public-key", key=key)).stdout
