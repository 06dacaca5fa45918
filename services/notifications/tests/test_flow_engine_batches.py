"""The flow engine does not depend on batch boundaries: what it reads once per batch (flows'
states, the batch's contacts' open runs and zones: adapters/flow_batch.py) is read again as
the batch changes it. Random interleavings of several contacts' cart, order and consent events
go through two engines on two stores, one taking the whole log in one batch and the other one
event at a time; the runs (per contact and trigger key: status, step, how it ended) and each
run's events must be the same."""

from __future__ import annotations

import random
import uuid
from typing import Any

import pytest

from services.notifications.adapters import flow_run_tables as t
from services.notifications.domain.flows import run as runs
from services.notifications.tests.flow_env import Env
from shared.eventstore import NewEvent, StreamState
from shared.projections.runner import ProjectionRunner
from shared.testing.batches import fresh_store
from shared.testing.postgres import DatabaseFactory

ORDERS = "crm.orders.v1."
CONSENT = "crm.contacts.v1.ConsentGranted"
CONTACTS = [str(uuid.UUID(int=n + 1)) for n in range(3)]
CARTS = [str(uuid.UUID(int=100 + n)) for n in range(3)]


def _log(rng: random.Random) -> list[tuple[str, NewEvent]]:
    """(stream, event) in log order: each contact's carts abandoned, recovered or ordered, and
    consents granted, interleaved."""
    out = []
    for _ in range(40):
        contact, cart = rng.choice(CONTACTS), rng.choice(CARTS)
        kind = rng.choice(["abandoned", "abandoned", "recovered", "ordered", "consent"])
        data: dict[str, Any] = {"contact_id": contact}
        if kind == "consent":
            out.append((f"consent-{contact}", NewEvent(CONSENT, {**data, "channel": "email"})))
            continue
        key = f"{contact[-4:]}{cart[-4:]}"  # a cart is one contact's
        cart_id = str(uuid.UUID(int=int(key, 16)))
        data["cart_id"] = cart_id
        if kind == "abandoned":
            out.append((f"cart-{cart_id}", NewEvent(ORDERS + "CartAbandoned", data)))
        elif kind == "recovered":
            data["how"] = "ordered"
            out.append((f"cart-{cart_id}", NewEvent(ORDERS + "CartRecovered", data)))
        else:
            order = str(uuid.uuid4())
            data["order_id"] = order
            out.append((f"order-{order}", NewEvent(ORDERS + "OrderPlaced", data)))
    return out


async def _runs(env: Env) -> list[tuple[Any, ...]]:
    """Each run as far as batch boundaries could change it, in a stable order (the flow is
    told by its trigger key: a cart's id, or the contact's for the welcome series)."""
    rows = await env.store.pool.fetch(f"SELECT * FROM {t.SCHEMA}.runs")
    out = []
    for r in rows:
        row = t.run_of(r)
        types = [e.type for e in await env.store.read_stream(runs.stream_of(row.run.run_id))]
        out.append(
            (
                row.run.contact_id,
                row.trigger_key,
                row.run.status,
                row.run.step,
                row.run.ended,
                tuple(types),
            )
        )
    return sorted(out, key=repr)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
async def test_one_batch_or_one_event_at_a_time_give_the_same_runs(
    databases: DatabaseFactory, seed: int
) -> None:
    log = _log(random.Random(seed))
    seen = []
    for batch_size in (500, 1):
        async with fresh_store(databases) as store:
            env = Env(store)
            env.runner = ProjectionRunner(
                store, env.engine, retries=1, retry_delay=0, batch_size=batch_size
            )
            await env.flow("abandoned-cart")
            await env.flow("welcome-series")
            await env.runner.catch_up()
            for stream, event in log:
                await store.append(stream, [event], StreamState.ANY)
            await env.runner.catch_up()
            seen.append(await _runs(env))
    whole, one_by_one = seen
    assert whole == one_by_one
    assert len(whole) >= 2  # the draw started runs
    assert any(r[2] == runs.DONE for r in whole)  # and ended some
