"""import_contacts: a CSV file through `crm contacts import` into a running contacts service."""

from __future__ import annotations

import csv
import tempfile
import time
from pathlib import Path

import asyncpg

from bench.common import SCALE, Metric, log
from bench.procs import free_port, running, service_env, wait_serving
from services.contacts.cli import import_csv
from shared.testing import tokens

ROWS = int(100_000 * SCALE)


def _write_csv(path: Path, rows: int) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["email", "external_id", "first_name", "last_name", "tags", "attributes.score:number"]
        )
        for i in range(rows):
            w.writerow(
                [
                    f"buyer{i}@shop.example",
                    f"cust-{i}",
                    f"First{i}",
                    "Last",
                    "imported;csv",
                    i % 100,
                ]
            )


async def _copy_baseline(dsn: str, path: Path) -> float:
    """The same rows parsed from the file and COPYed into a plain table (no events, no checks)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            """CREATE TABLE bench_import_raw (email text, external_id text, first_name text,
               last_name text, tags text, score float8)"""
        )
        started = time.perf_counter()
        with path.open(newline="") as f:
            reader = csv.reader(f)
            next(reader)
            records = [(*r[:5], float(r[5])) for r in reader]
        await conn.copy_records_to_table("bench_import_raw", records=records)
        return len(records) / (time.perf_counter() - started)
    finally:
        await conn.execute("DROP TABLE IF EXISTS bench_import_raw")
        await conn.close()


async def import_contacts(dsn: str) -> Metric:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "contacts.csv"
        _write_csv(path, ROWS)
        log(f"  {ROWS:,} rows, {path.stat().st_size / 1e6:.1f} MB")
        port = free_port()
        async with running(
            "contacts-serve-import", ["-m", "services.contacts", "serve"], service_env(dsn, port)
        ) as (proc, log_path):
            await wait_serving(port, proc, log_path)
            started = time.perf_counter()
            response, local = await import_csv(
                path, f"127.0.0.1:{port}", token=tokens.SERVICE_TOKEN, batch=1000
            )
            rate = ROWS / (time.perf_counter() - started)
        if response.created != ROWS or response.failed or local.errors:
            log(f"  unexpected summary: {response.created} created, {response.failed} failed")
        baseline = await _copy_baseline(dsn, path)
    log(f"  import {rate:,.0f} contacts/s, COPY {baseline:,.0f} rows/s")
    return Metric(
        "import_contacts",
        rate,
        "contacts/s",
        baseline,
        "COPY of the parsed rows into a plain table",
        extra={"rows": ROWS, "created": response.created, "failed": response.failed},
    )
