"""The attribution rule is a setting of the project role: the role as `python -m
services.notifications project` runs it credits an order placed two days after a click under the
default 5-day window; started again with ATTRIBUTION_WINDOW_DAYS=1, its leader rebuilds the read
model under the new rule, and the order is no longer credited."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from services.notifications import spec
from services.notifications.adapters.reports_readmodel import SCHEMA
from services.notifications.domain import decision as d
from services.notifications.tests.test_reports_api import A, append_message, append_order
from shared.eventstore.postgres import PostgresEventStore
from shared.testing.service_env import projecting

pytestmark = pytest.mark.timeout(120)
STATE = f"SELECT (SELECT window_seconds FROM {SCHEMA}.rule), (SELECT count(*) FROM {SCHEMA}.conversions)"


async def _until(store: PostgresEventStore, wanted: tuple[float, int]) -> None:
    for _ in range(400):
        if tuple(await store.pool.fetchrow(STATE)) == wanted:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never {wanted}: {tuple(await store.pool.fetchrow(STATE))}")


async def test_a_new_window_rebuilds_the_read_model_under_it(dsn: str) -> None:
    store = await PostgresEventStore.connect(dsn, max_size=4)
    try:
        await append_message(store, A, d.Origin(d.CAMPAIGN, campaign_id=str(A)), "sent", "clicked")
        await append_order(store, A, "EUR", 1200, datetime.now(UTC) + timedelta(days=2))
        async with projecting(spec.SPEC, dsn):
            await _until(store, (5 * 86400.0, 1))
        async with projecting(spec.SPEC, dsn, settings={"attribution_window_days": 1}):
            await _until(store, (86400.0, 0))
    finally:
        await store.close()
