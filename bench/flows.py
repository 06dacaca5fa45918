"""Flow benchmarks (services/notifications/README.md, "Flows"):

- dry_run_rate: history events replayed per second by a flow dry run (DryRunFlow's
  application: the abandoned-cart flow over the whole log of the categories a dry run reads,
  runs, timers and each send's policy decision in memory), next to `read_all` paging the same
  events from the same store in the same run (ratio = dry run / read_all). The log is seeded
  with consents, abandoned carts and orders for SEED_CONTACTS contacts (scaled), on top of
  whatever earlier benchmarks wrote.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import json_format

from bench.common import Metric, log, scaled
from crm.notifications.v1 import flow_definition_pb2 as dpb
from services.notifications.application.dry_runs import CATEGORIES, PAGE, FlowDryRuns
from services.notifications.application.flows import FlowCommands
from services.notifications.application.templates import TemplateCommands
from services.notifications.domain import policy
from services.notifications.domain.template import Variant
from services.notifications.domain.variant import EMAIL
from shared.domain.errors import DomainError
from shared.eventstore import NewEvent, StreamAppend, StreamState
from shared.eventstore.postgres import PostgresEventStore

SEED_CONTACTS = 40_000
EXAMPLE = Path(__file__).parents[1] / "services/notifications/examples/flows/abandoned-cart.yaml"


async def _seed(es: PostgresEventStore, contacts: int) -> int:
    """Per contact: an email consent, an abandoned cart, and for every other one an order."""
    appends: list[StreamAppend] = []
    events = 0
    for n in range(contacts):
        cid, cart = str(uuid.uuid4()), str(uuid.uuid4())
        granted = NewEvent(
            "crm.contacts.v1.ConsentGranted", {"contact_id": cid, "channel": "email"}
        )
        abandoned = NewEvent(
            "crm.orders.v1.CartAbandoned",
            {"contact_id": cid, "cart_id": cart, "currency": "EUR", "subtotal": 1300},
        )
        appends += [
            StreamAppend(f"consent-{cid}", [granted], StreamState.NO_STREAM),
            StreamAppend(f"cart-{cart}", [abandoned], StreamState.NO_STREAM),
        ]
        if n % 2:
            order = str(uuid.uuid4())
            placed = NewEvent(
                "crm.orders.v1.OrderPlaced",
                {"contact_id": cid, "order_id": order, "cart_id": cart, "currency": "EUR"},
            )
            appends.append(StreamAppend(f"order-{order}", [placed], StreamState.NO_STREAM))
        if len(appends) >= 3000:
            events += len(appends)
            await es.append_multi(appends)
            appends = []
    if appends:
        events += len(appends)
        await es.append_multi(appends)
    return events


def _definition() -> dict[str, Any]:
    """The shipped example in the JSON form the API gives the application."""
    parsed = json_format.ParseDict(yaml.safe_load(EXAMPLE.read_text()), dpb.FlowDefinition())
    return json_format.MessageToDict(parsed, preserving_proto_field_name=True)


async def _read_all(es: PostgresEventStore) -> tuple[int, float]:
    started, after, n = time.perf_counter(), 0, 0
    head = await es.head_position()
    while after < head:
        page = await es.read_all(after, categories=CATEGORIES, limit=PAGE)
        n += len(page.events)
        if page.last_position == after:
            break
        after = page.last_position
    return n, time.perf_counter() - started


async def dry_run_rate(es: PostgresEventStore, notes: list[str]) -> Metric:
    contacts = int(scaled(SEED_CONTACTS))
    seeded = await _seed(es, contacts)
    log(f"  seeded {seeded:,} events for {contacts:,} contacts")
    flows, templates = FlowCommands(es), TemplateCommands(es)
    definition = _definition()
    definition["key"] = f"bench-cart-{uuid.uuid4().hex[:8]}"
    made = await flows.create(definition)
    for key in ("cart-reminder", "cart-incentive"):
        variant = Variant("", subject="Your cart", text="{{ contact.first_name }}")
        with contextlib.suppress(DomainError):  # there already (an earlier run's)
            await templates.create(key, EMAIL, key.title(), [variant])
    dry_runs = FlowDryRuns(es, flows, templates, policy.Rules())
    now = datetime.now(UTC)
    start, end = now - timedelta(days=1), now + timedelta(days=2)
    baseline_events, baseline_took = await _read_all(es)
    started = time.perf_counter()
    sim = await dry_runs.run(made.flow_id, 0, None, start, end)
    took = time.perf_counter() - started
    rate, baseline = sim.events_read / took, baseline_events / baseline_took
    log(
        f"  dry run: {sim.events_read:,} events in {took:.1f}s, {sim.started:,} runs,"
        f" {len(sim.would):,} steps; read_all: {baseline_events:,} in {baseline_took:.1f}s"
    )
    if sim.started < contacts:
        notes.append(f"dry_run_rate: only {sim.started} runs started for {contacts} carts")
    return Metric("dry_run_rate", rate, "events/s", baseline, "read_all, same categories")
