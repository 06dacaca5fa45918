"""python -m bench: a fresh database crm_bench_<random> (dropped at the end), every benchmark in
turn, a table on stdout, bench/results/latest.json."""

from __future__ import annotations

import os
import platform
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import uvloop

from bench import (
    auth_cost,
    campaigns,
    db,
    delivery,
    flow_timers,
    flows,
    grpc_load,
    importer,
    notifications,
    notifications_latency,
    orders,
    projection,
    report,
    segmentation,
    store,
)
from bench.common import SCALE, Metric, log
from bench.log_audit import LogAudit
from services.registry import SERVICES
from shared.db import connect_pool
from shared.eventstore.postgres import PostgresEventStore
from shared.testing.postgres import with_database
from shared.testing.suite import migrate_everything

POOL = 10  # connections per pool: the 8 writers plus headroom
# BENCH_ONLY=read_all,append_single_8w runs a subset (while iterating on one number).
ONLY = {n for n in os.environ.get("BENCH_ONLY", "").split(",") if n}


async def _guarded(
    name: str, metrics: list[Metric], notes: list[str], step: Callable[[], Awaitable[Any]]
) -> Any:
    """Run one benchmark; a failure becomes a note and the others still run."""
    if ONLY and name not in ONLY:
        return None
    log(f"{name} ...")
    started = time.perf_counter()
    try:
        result = await step()
    except Exception as exc:
        log(f"{name} FAILED: {exc!r}")
        traceback.print_exc()
        notes.append(f"{name} failed: {exc!r}")
        return None
    for m in result if isinstance(result, list) else [result] if isinstance(result, Metric) else []:
        metrics.append(m)
        log(
            f"  {m.name}: {m.value:,.1f} {m.unit} (baseline {m.baseline:,.1f}, ratio {m.ratio:.2f})"
        )
    log(f"{name} done in {time.perf_counter() - started:.1f}s")
    return result


async def run(admin_dsn: str) -> tuple[list[Metric], dict[str, Any]]:
    name = f"crm_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        server_version = await admin.fetchval("SHOW server_version")
    finally:
        await admin.close()
    dsn = with_database(admin_dsn, name)
    metrics: list[Metric] = []
    notes: list[str] = []
    info: dict[str, Any] = {"database": name, "postgres": server_version}
    try:
        log(f"database {name} (PostgreSQL {server_version}), BENCH_SCALE={SCALE}")
        await migrate_everything(dsn, SERVICES)
        es = await PostgresEventStore.connect(dsn, min_size=POOL, max_size=POOL)
        raw = await connect_pool(dsn, min_size=POOL, max_size=POOL)
        try:
            await store.create_raw_table(raw)
            await _guarded("append_single_8w", metrics, notes, lambda: store.append_single(es, raw))
            batch = await _guarded(
                "append_batch100", metrics, notes, lambda: store.append_batch(es, raw)
            )
            copy_rate = batch.baseline if batch else float("nan")
            await _guarded(
                "append_batch100_one_stream",
                metrics,
                notes,
                lambda: store.append_batch_one_stream(es, copy_rate),
            )
            await _guarded(
                "projection_rebuild_contacts", metrics, notes, lambda: projection.rebuild(es, raw)
            )
            await _guarded(
                "projection_rebuild_metrics",
                metrics,
                notes,
                lambda: orders.rebuild_metrics(es, raw, notes),
            )
            await _guarded("read_all", metrics, notes, lambda: store.read_all(es, raw))
            await _guarded("dry_run_rate", metrics, notes, lambda: flows.dry_run_rate(es, notes))
            audit = LogAudit(es, dsn)
            try:
                await _guarded("events_export_rate", metrics, notes, audit.export_rate)
                await _guarded("verify_rate", metrics, notes, audit.verify_rate)
            finally:
                audit.close()
            await _guarded("grpc_register_contact", metrics, notes, lambda: _grpc(dsn, notes, info))
            await _guarded(
                "grpc_register_contact_auth_cost",
                metrics,
                notes,
                lambda: auth_cost.register_contact(dsn, notes),
            )
            await _guarded(
                "grpc_place_order", metrics, notes, lambda: _grpc_orders(dsn, notes, info)
            )
            await _guarded("import_contacts", metrics, notes, lambda: importer.import_contacts(dsn))
            await _guarded(
                "projection_lag_p99_ms",
                metrics,
                notes,
                lambda: projection.projection_lag(es, dsn, notes),
            )
            await _guarded(
                "segment_event_latency_p99_ms",
                metrics,
                notes,
                lambda: segmentation.event_latency(es, dsn, notes),
            )
            await _guarded(
                "segment_backfill", metrics, notes, lambda: segmentation.backfill(es, dsn, notes)
            )
            await _guarded(
                "segmentation_projection",
                metrics,
                notes,
                lambda: segmentation.projection(es, dsn, notes),
            )
            # Both delivery_worker_rss and delivery_worker_email_rate (BENCH_ONLY by the first).
            await _guarded(
                "delivery_worker_rss",
                metrics,
                notes,
                lambda: delivery.worker_rss_and_rate(notes),
            )
            # The notifications service end to end, through real processes.
            await _guarded(
                "notifications_email_rate",
                metrics,
                notes,
                lambda: notifications.email_rate(dsn, notes),
            )
            # A campaign to a segment, end to end through the same processes and segmentation's.
            await _guarded(
                "campaign_send_rate",
                metrics,
                notes,
                lambda: campaigns.send_rate(dsn, notes),
            )
            await _guarded(
                "notifications_decision_p99_ms",
                metrics,
                notes,
                lambda: notifications_latency.decision_p99(dsn, notes),
            )
            await _guarded(
                "flow_timer_lateness_p99_ms",
                metrics,
                notes,
                lambda: flow_timers.lateness(dsn, notes),
            )
        finally:
            await es.close()
            await raw.close()
    finally:
        try:
            admin = await asyncpg.connect(admin_dsn)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await admin.close()
            log(f"dropped database {name}")
        except (OSError, asyncpg.PostgresError) as exc:
            log(f"could NOT drop database {name}: {exc!r}; drop it by hand")
    info["notes"] = notes
    return metrics, info


async def _grpc(dsn: str, notes: list[str], info: dict[str, Any]) -> list[Metric]:
    metrics, configs = await grpc_load.grpc_register(dsn, notes)
    info["grpc_configs"] = configs
    return metrics


async def _grpc_orders(dsn: str, notes: list[str], info: dict[str, Any]) -> list[Metric]:
    metrics, configs = await orders.grpc_place_order(dsn, notes)
    info["grpc_place_order_configs"] = configs
    return metrics


def main() -> None:
    started = time.perf_counter()
    admin_dsn, done = db.server()
    try:
        metrics, info = uvloop.run(run(admin_dsn))
    finally:
        done()
    elapsed = time.perf_counter() - started
    info = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration_s": round(elapsed, 1),
        "scale": SCALE,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        **info,
    }
    path = report.write(metrics, info)
    report.show(metrics, info["notes"])
    log(f"wrote {path} in {elapsed:.0f}s total")


if __name__ == "__main__":
    main()
