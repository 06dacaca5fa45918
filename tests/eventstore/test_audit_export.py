"""`crm events export` and `crm events verify --file` on a real PostgreSQL: an export verifies
offline (with no database), agrees with the checkpoints it covers, and an edited, cut or
re-ordered file, or an export of a tampered log, does not."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from shared.domain.timestamps import timestamp_text
from shared.eventstore import StreamState
from shared.eventstore.audit.checkpoints import SigningKey, b64
from shared.eventstore.postgres import PostgresEventStore
from tests.eventstore.audit_support import (
    Run,
    checkpoints_file,
    crm,
    ev,
    fill,
    recompute_chain,
    tamper,
)


@pytest.fixture
async def store(dsn: str) -> AsyncIterator[PostgresEventStore]:
    s = await PostgresEventStore.connect(dsn)
    yield s
    await s.close()


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate()


async def history(store: PostgresEventStore, dsn: str, key: SigningKey) -> None:
    """Three streams, a checkpoint, more events (one with text JSON would re-encode otherwise),
    a second checkpoint, and events after it."""
    await fill(store)
    assert (await crm("audit", "checkpoint", "--create", dsn=dsn, key=key)).code == 0
    await store.append("c-1", [ev(note='é \u2028 "quoted"', amount=1.50, big=2**60)], 1)
    await store.append("d-1", [ev(n=1), ev(n=2)], StreamState.NO_STREAM)
    assert (await crm("audit", "checkpoint", "--create", dsn=dsn, key=key)).code == 0
    await store.append("c-0", [ev(n=3)], 1)


async def export(dsn: str, path: Path, *bounds: str) -> Path:
    run = await crm("events", "export", *bounds, dsn=dsn)
    assert run.code == 0, run.stderr
    path.write_text(run.stdout)  # noqa: ASYNC240 - a small test file
    return path


async def offline(log: Path, checkpoints: Path | None, key: SigningKey) -> Run:
    """No database: DATABASE_URL points nowhere."""
    against = ["--against", str(checkpoints)] if checkpoints else []
    return await crm(
        "events",
        "verify",
        "--file",
        str(log),
        *against,
        "--public-key",
        b64(key.public_key),
        "--json",
        dsn="postgresql://nobody@127.0.0.1:1/none",
    )


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_text().splitlines()]


async def test_a_whole_export_verifies_offline_against_the_checkpoints(
    store: PostgresEventStore, dsn: str, key: SigningKey, tmp_path: Path
) -> None:
    await history(store, dsn, key)
    log = await export(dsn, tmp_path / "log.jsonl")
    body = lines_of(log)
    assert body[0]["kind"] == "export" and body[-1] == {"kind": "end", "heads": 0, "events": 10}
    stored = await store.pool.fetch(
        "SELECT position, data::text, hash FROM eventstore.events ORDER BY position"
    )
    events = [b for b in body if b["kind"] == "event"]
    assert [(e["position"], e["data"], e["hash"]) for e in events] == [
        (r[0], r[1], bytes(r[2]).hex()) for r in stored
    ]
    run = await offline(log, await checkpoints_file(dsn, tmp_path / "c.jsonl"), key)
    assert run.code == 0, run.stdout
    assert (run.json()["events"], run.json()["checkpoints_checked"]) == (10, 2)


async def test_a_range_export_starts_from_the_heads_before_it(
    store: PostgresEventStore, dsn: str, key: SigningKey, tmp_path: Path
) -> None:
    await history(store, dsn, key)
    kept = await checkpoints_file(dsn, tmp_path / "c.jsonl")
    first, second = lines_of(kept)
    log = await export(dsn, tmp_path / "log.jsonl", "--since", str(first["position"] + 1))
    heads = [b for b in lines_of(log) if b["kind"] == "head"]
    assert [h["stream"] for h in heads] == ["c-0", "c-1", "c-2"]
    run = await offline(log, kept, key)
    # checkpoint 1 is the heads the export starts from; checkpoint 2 lies inside it
    assert run.code == 0 and run.json()["checkpoints_checked"] == 2, run.stdout
    until = await export(dsn, tmp_path / "u.jsonl", "--until", str(second["position"]))
    assert lines_of(until)[-1] == {"kind": "end", "heads": 0, "events": 9}
    assert (await offline(until, kept, key)).code == 0
    # by time: from the first event recorded at or after a moment, to the end
    at = await store.pool.fetchval(
        "SELECT recorded_at FROM eventstore.events WHERE stream_id = 'd-1' ORDER BY version LIMIT 1"
    )
    by_time = await export(dsn, tmp_path / "t.jsonl", "--since", timestamp_text(at))
    events = [b for b in lines_of(by_time) if b["kind"] == "event"]
    assert [e["stream"] for e in events] == ["d-1", "d-1", "c-0"]
    assert (await offline(by_time, kept, key)).code == 0


async def test_an_edited_cut_or_reordered_file_is_found_offline(
    store: PostgresEventStore, dsn: str, key: SigningKey, tmp_path: Path
) -> None:
    await history(store, dsn, key)
    log = await export(dsn, tmp_path / "log.jsonl")
    text = log.read_text().splitlines()

    async def check(lines: list[str]) -> set[str]:
        edited = tmp_path / "edited.jsonl"
        edited.write_text("\n".join(lines) + "\n")
        run = await offline(edited, None, key)
        assert run.code == 1
        return run.kinds()

    third = orjson.loads(text[3])
    altered = orjson.dumps({**third, "data": third["data"].replace("1", "7")}).decode()
    assert await check([*text[:3], altered, *text[4:]]) == {"altered_event"}
    assert await check(text[:-1]) == {"truncated"}  # no closing line
    assert "missing_events" in await check([*text[:1], *text[2:]])  # c-0 version 0 dropped
    swapped = [text[0], text[2], text[1], *text[3:]]  # c-0's versions 1 and 0
    assert "out_of_order" in await check(swapped)
    assert (await offline(log, None, key)).code == 0


async def test_an_export_of_a_tampered_log_disagrees_with_the_checkpoints(
    store: PostgresEventStore, dsn: str, key: SigningKey, tmp_path: Path
) -> None:
    await history(store, dsn, key)
    kept = await checkpoints_file(dsn, tmp_path / "c.jsonl")
    await tamper(
        store,
        """UPDATE eventstore.events SET data = '{"n": 9, "s": 2}'
           WHERE stream_id = 'c-2' AND version = 1""",
        recompute_chain("c-2"),
    )
    log = await export(dsn, tmp_path / "log.jsonl")
    assert (await offline(log, None, key)).code == 0  # its chains are consistent
    run = await offline(log, kept, key)
    assert run.code == 1 and run.kinds() == {"checkpoint_mismatch"}


async def test_export_reports_progress_and_refuses_bad_bounds(
    store: PostgresEventStore, dsn: str, tmp_path: Path
) -> None:
    await fill(store)
    run = await crm("events", "export", dsn=dsn)
    assert run.code == 0 and "exported 6 events" in run.stderr
    assert (await crm("events", "export", "--since", "yesterday", dsn=dsn)).code == 2
    assert (await crm("events", "export", "--since", "9", "--until", "3", dsn=dsn)).code == 2
    empty = await crm("events", "export", "--since", "2999-01-01T00:00:00Z", dsn=dsn)
    assert lines_of_text(empty.stdout)[-1] == {"kind": "end", "heads": 3, "events": 0}


def lines_of_text(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in text.splitlines()]
