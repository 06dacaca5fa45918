"""An auditor's benchmarks, each against the store's read_all on the same log in the same run:

- ``events_export_rate``: events/s that `crm events export` writes as JSON lines to a file,
  through a project role's Admin API (ExportEvents, the CLI's own download_export), the role a
  separate process (bench/admin_server.py: the Admin API alone);
- ``verify_rate``: events/s that `crm events verify --file --against` checks offline
  (verify_export over that file, against two signed checkpoints of the same log, the key
  pinned): the auditor's verification without a database.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from bench import store
from bench.common import Metric, interleaved, log, median, scaled
from bench.procs import free_port, running, service_env, wait_serving
from crm.admin.v1 import admin_pb2 as pb
from crm.admin.v1 import admin_pb2_grpc as pb_grpc
from services.cli_audit_calls import download_export
from shared.eventstore.audit.checkpoints import Checkpoint, SigningKey
from shared.eventstore.audit.offline import verify_export
from shared.eventstore.audit.postgres import PostgresAuditLog
from shared.eventstore.postgres import PostgresEventStore
from shared.grpckit.client import bearer, open_channel
from shared.testing import tokens

ROUNDS = 3
BUDGET = 20.0  # seconds (times BENCH_SCALE) after which no new round starts
MORE_AFTER_FIRST_CHECKPOINT = 10_000  # events between the two checkpoints


class LogAudit:
    """The log (read_all's, topped up), two checkpoints of it, and the export file, made once
    for both benchmarks."""

    def __init__(self, es: PostgresEventStore, dsn: str) -> None:
        self.es, self.dsn = es, dsn
        self.key = SigningKey.generate()
        self.checkpoints: list[Checkpoint] = []
        self.events = 0
        self.streams = 0
        self._dir = tempfile.TemporaryDirectory(prefix="crm-bench-export-")
        self.file = Path(self._dir.name) / "log.jsonl"
        self.exported = False

    def close(self) -> None:
        self._dir.cleanup()

    async def prepare(self) -> None:
        if self.checkpoints:
            return
        audit = PostgresAuditLog(self.es.pool)  # the store's pool: not closed here
        await store.top_up(self.es, int(scaled(store.READ_MIN_EVENTS, 10_000)))
        self.checkpoints = [c for c in [await audit.create_checkpoint(self.key)] if c]
        have = int(await self.es.pool.fetchval("SELECT count(*) FROM eventstore.events"))
        await store.top_up(self.es, have + int(scaled(MORE_AFTER_FIRST_CHECKPOINT, 1000)))
        self.checkpoints += [c for c in [await audit.create_checkpoint(self.key)] if c]
        self.events = int(await self.es.pool.fetchval("SELECT count(*) FROM eventstore.events"))
        self.streams = self.checkpoints[-1].streams
        await self.read_all()  # warm the cache: the first pass after the appends is slower
        log(f"  the log: {self.events:,} events in {self.streams:,} streams, 2 checkpoints")

    @contextlib.asynccontextmanager
    async def admin_api(self) -> AsyncIterator[pb_grpc.AdminServiceStub]:
        port = free_port()
        env = service_env(self.dsn, port)
        async with running("admin-export", ["-m", "bench.admin_server"], env) as (proc, path):
            await wait_serving(port, proc, path)
            async with open_channel(f"127.0.0.1:{port}") as channel:
                yield pb_grpc.AdminServiceStub(channel)

    async def export_once(self, stub: pb_grpc.AdminServiceStub) -> float:
        """`crm events export > file` as an auditor: events/s."""
        started = time.perf_counter()
        with self.file.open("wb") as out:
            summary = await download_export(
                stub, pb.ExportEventsRequest(), bearer(tokens.TOKENS["auditor"]), out.write
            )
        took = time.perf_counter() - started
        assert summary.events == self.events, (summary.events, self.events)
        self.exported = True
        return summary.events / took

    def verify_once(self) -> float:
        """`crm events verify --file … --against …` (offline): events/s."""
        started = time.perf_counter()
        with self.file.open("rb") as lines:
            report = verify_export(lines, self.checkpoints, pinned=[self.key.public_key])
        took = time.perf_counter() - started
        assert report.ok and report.checkpoints == 2, report.to_json()
        return report.events / took

    async def read_all(self) -> float:
        n, rate = await store._read_store(self.es)
        assert n == self.events, (n, self.events)
        return rate

    async def export_rate(self) -> Metric:
        await self.prepare()
        async with self.admin_api() as stub:
            raws, rates = await interleaved(
                lambda _r: self.read_all(),
                lambda _r: self.export_once(stub),
                rounds=ROUNDS,
                label="events_export_rate",
                budget=BUDGET,
            )
        return Metric(
            name="events_export_rate",
            value=median(rates),
            unit="events/s",
            baseline=median(raws),
            baseline_desc="the store's read_all (pages of 5000) over the same log, same run",
            samples=rates,
            baseline_samples=raws,
            extra={
                "events": self.events,
                "streams": self.streams,
                "file_bytes": self.file.stat().st_size,
                "path": "Admin API ExportEvents (a separate process) -> download_export -> file",
            },
        )

    async def verify_rate(self) -> Metric:
        await self.prepare()
        if not self.exported:
            async with self.admin_api() as stub:
                await self.export_once(stub)

        async def verify(_r: int) -> float:
            return self.verify_once()

        raws, rates = await interleaved(
            lambda _r: self.read_all(), verify, rounds=ROUNDS, label="verify_rate", budget=BUDGET
        )
        return Metric(
            name="verify_rate",
            value=median(rates),
            unit="events/s",
            baseline=median(raws),
            baseline_desc="the store's read_all (pages of 5000) over the same log, same run",
            samples=rates,
            baseline_samples=raws,
            extra={
                "events": self.events,
                "streams": self.streams,
                "checkpoints": len(self.checkpoints),
                "path": "verify_export of the export file (offline) against 2 checkpoints",
            },
        )
