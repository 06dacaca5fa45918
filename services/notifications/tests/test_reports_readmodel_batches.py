"""The reports read model does not depend on batch boundaries: random logs of message events
(decisions from the API, a flow step or a campaign variant, test messages; sent, failed for
good, delivered, bounced, opened, clicked, unsubscribed) and orders' OrderPlaced (before the
touches, inside the window, beyond it) and contacts' merges and unmerges are appended to a real
store; the log is projected in random batches, and the tables must equal a plain fold of the
same log (this file's, with the domain's last_touch) under the rule drawn (click or open, 1 or 5
days)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from services.notifications.adapters.reports_readmodel import (
    MERGED,
    PLACED,
    SCHEMA,
    UNMERGED,
    ReportsProjection,
)
from services.notifications.domain import attribution, tracking
from services.notifications.domain import decision as d
from services.notifications.domain.attribution import Rule, Touch
from shared.domain.timestamps import timestamp_from_text, timestamp_text
from shared.eventstore import NewEvent, RecordedEvent, StreamState
from shared.eventstore.postgres import PostgresEventStore
from shared.testing.batches import batch_sizes, fresh_store, project_in_batches
from shared.testing.postgres import DatabaseFactory

CONTACTS = [str(uuid.UUID(int=i + 1)) for i in range(3)]
FLOW, CAMPAIGN = str(uuid.UUID(int=100)), str(uuid.UUID(int=200))
ORIGINS = [
    d.Origin(),
    d.Origin(d.FLOW, flow_id=FLOW, flow_version=1, step_id="first", run_id="r1"),
    d.Origin(d.FLOW, flow_id=FLOW, flow_version=2, step_id="second", run_id="r2"),
    d.Origin(d.CAMPAIGN, campaign_id=CAMPAIGN, variant="a"),
    d.Origin(d.CAMPAIGN, campaign_id=CAMPAIGN, variant="b"),
    d.Origin(d.TEST),
]
STEPS: dict[str, tuple[str, dict[str, Any]]] = {
    "sent": (d.SENT, {"attempt": 1, "detail": "250 OK"}),
    "failed": (d.FAILED, {"attempt": 1, "detail": "550", "final": True}),
    "retrying": (d.FAILED, {"attempt": 1, "detail": "451", "retry_time": "2030-01-01T00:00:00Z"}),
    "delivered": (d.DELIVERED, {"provider_id": "SM1"}),
    "bounced": (d.BOUNCED, {"bounce_type": "BOUNCE_TYPE_HARD", "status": "5.1.1"}),
    "opened": (tracking.OPENED, {}),
    "clicked": (tracking.CLICKED, {"link": 0, "host": "shop.example"}),
    "unsubscribed": (tracking.UNSUBSCRIBED, {"channel": "CHANNEL_EMAIL", "source": "x"}),
}
OFFSETS = [timedelta(hours=-1), timedelta(hours=1), timedelta(days=3), timedelta(days=6)]
SETTINGS = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ops = st.one_of(
    st.tuples(st.just("decide"), st.integers(0, 2), st.integers(0, len(ORIGINS) - 1)),
    st.tuples(st.sampled_from(sorted(STEPS)), st.integers(0, 99), st.integers(0, 0)),
    st.tuples(st.just("order"), st.integers(0, 2), st.integers(0, len(OFFSETS) - 1)),
    st.tuples(st.sampled_from(["merge", "unmerge"]), st.integers(0, 2), st.integers(1, 2)),
)
rules = st.builds(
    Rule,
    st.sampled_from([timedelta(days=1), timedelta(days=5)]),
    st.sampled_from(["click", "open"]),
)
# Every step on a clicked message, a later touch of the same contact on another message (the
# last touch), orders in and out of the window.
EVERY = [
    ("decide", 0, 1),
    ("decide", 1, 3),
    ("decide", 2, 5),
    ("decide", 0, 4),
    *((step, 0, 0) for step in sorted(STEPS)),
    ("clicked", 1, 0),
    ("opened", 2, 0),
    ("clicked", 3, 0),
    ("order", 0, 1),
    ("order", 1, 2),
    ("order", 0, 3),
    ("order", 2, 1),
    ("merge", 1, 1),  # contact 1 into contact 2: 2's order is credited to 1's touches
    ("order", 2, 1),
    ("merge", 2, 1),  # contact 2 into contact 0: so is 0's, through 2
    ("clicked", 1, 0),  # contact 1's click is now 0's last touch
    ("order", 0, 1),
    ("unmerge", 1, 1),
    ("order", 2, 1),
]


async def append_plan(store: PostgresEventStore, plan: list[tuple[str, int, int]]) -> None:
    ids: list[str] = []
    for op, a, b in plan:
        if op == "decide":
            mid = str(uuid.uuid4())
            origin = ORIGINS[b]
            data = {
                "message_id": mid,
                "contact_id": "" if origin.source == d.TEST else CONTACTS[a],
                "channel": "CHANNEL_EMAIL",
                "kind": "MESSAGE_KIND_MARKETING",
                "template_id": str(uuid.UUID(int=7)),
                "trigger": origin.to_data(f"req-{len(ids)}"),
                "outcome": "OUTCOME_SEND",
                "decision": 1,
            }
            if origin.source == d.TEST:
                data["test"] = True
            ids.append(mid)
            event = NewEvent(d.DECIDED, data)
            await store.append(d.stream_of(mid), [event], StreamState.ANY)
        elif op in ("merge", "unmerge"):
            merged, survivor = CONTACTS[a], CONTACTS[(a + b) % 3]
            type_ = MERGED if op == "merge" else UNMERGED
            data = {"contact_id": merged, "survivor_id": survivor}
            await store.append(f"contact-{merged}", [NewEvent(type_, data)], StreamState.ANY)
        elif op == "order":
            oid = str(uuid.uuid4())
            placed = datetime.now(UTC) + OFFSETS[b]
            order = {
                "order_id": oid,
                "contact_id": CONTACTS[a],
                "currency": ["EUR", "USD"][b % 2],
                "total": 1000 + 7 * b,
                "subtotal": 1000 + 7 * b,
                "place_time": timestamp_text(placed),
            }
            await store.append(f"order-{oid}", [NewEvent(PLACED, order)], StreamState.ANY)
        elif ids:
            mid = ids[a % len(ids)]
            type_, data = STEPS[op]
            event = NewEvent(type_, {"message_id": mid, **data})
            await store.append(d.stream_of(mid), [event], StreamState.ANY)


@dataclass
class Folded:
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    touches: dict[str, list[Touch]] = field(default_factory=dict)
    conversions: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    merges: dict[str, str] = field(default_factory=dict)  # merged -> survivor

    def owners(self, contact: str) -> set[str]:
        """The contact and every contact merged into it, directly or not."""
        out = {contact}
        while more := {c for c, s in self.merges.items() if s in out} - out:
            out |= more
        return out


def fold(events: list[RecordedEvent], rule: Rule) -> Folded:
    """The tables as this test understands them, event by event in log order."""
    out = Folded()
    for e in events:
        if e.type == MERGED:
            out.merges[e.data["contact_id"]] = e.data["survivor_id"]
            continue
        if e.type == UNMERGED:
            out.merges.pop(e.data["contact_id"], None)
            continue
        if e.type == PLACED:
            owners = out.owners(e.data["contact_id"])
            at = timestamp_from_text(e.data["place_time"])
            touches = [t for c in owners for t in out.touches.get(c, [])]
            credited = attribution.last_touch(touches, at, rule)
            if credited is not None and e.data["order_id"] not in out.conversions:
                out.conversions[e.data["order_id"]] = (
                    credited,
                    e.data["currency"],
                    int(e.data["total"]),
                )
            continue
        mid = e.data["message_id"]
        if e.type == d.DECIDED:
            origin = d.Origin.from_data(e.data["trigger"])
            if not e.data.get("test") and mid not in out.messages:
                out.messages[mid] = {
                    "contact_id": e.data["contact_id"],
                    "source": origin.source,
                    "flow_id": origin.flow_id,
                    "step_id": origin.step_id,
                    "campaign_id": origin.campaign_id,
                    "variant": origin.variant,
                    "send_time": None,
                    "delivered": False,
                    "bounced": False,
                    "failed": False,
                    "open_time": None,
                    "click_time": None,
                    "unsubscribe_time": None,
                }
            continue
        m = out.messages.get(mid)
        if m is None:
            continue
        first = {
            d.SENT: "send_time",
            tracking.OPENED: "open_time",
            tracking.CLICKED: "click_time",
            tracking.UNSUBSCRIBED: "unsubscribe_time",
        }
        if e.type in first and m[first[e.type]] is None:
            m[first[e.type]] = e.recorded_at
        elif e.type == d.FAILED and e.data.get("final"):
            m["failed"] = True
        elif e.type in (d.DELIVERED, d.BOUNCED):
            m["delivered" if e.type == d.DELIVERED else "bounced"] = True
        if e.type in rule.touch_types:
            out.touches.setdefault(m["contact_id"], []).append(Touch(e.recorded_at, mid))
    return out


@SETTINGS
@given(plan=st.lists(ops, min_size=3, max_size=30), rule=rules, sizes=batch_sizes)
@example(plan=EVERY, rule=Rule(), sizes=[1, 4])
@example(plan=EVERY, rule=Rule(timedelta(days=1), "open"), sizes=[40])
async def test_report_tables_equal_the_fold_whatever_the_batches(
    databases: DatabaseFactory, plan: list[tuple[str, int, int]], rule: Rule, sizes: list[int]
) -> None:
    async with fresh_store(databases) as store:
        await append_plan(store, plan)
        log = await project_in_batches(store, ReportsProjection(rule), sizes)
        expected = fold(log, rule)
        rows = await store.pool.fetch(f"SELECT * FROM {SCHEMA}.messages")
        got = {
            str(r["message_id"]): {
                **{k: r[k] for k in expected_keys()},
                "contact_id": str(r["contact_id"]),
            }
            for r in rows
        }
        assert got == expected.messages
        conversions = await store.pool.fetch(f"SELECT * FROM {SCHEMA}.conversions")
        assert {
            str(c["order_id"]): (str(c["message_id"]), c["currency"], c["amount_minor"])
            for c in conversions
        } == expected.conversions


def expected_keys() -> tuple[str, ...]:
    return (
        "source",
        "flow_id",
        "step_id",
        "campaign_id",
        "variant",
        "send_time",
        "delivered",
        "bounced",
        "failed",
        "open_time",
        "click_time",
        "unsubscribe_time",
    )


def test_the_rule_is_part_of_the_definition() -> None:
    """Another window or touch is another definition: the leader rebuilds under it."""
    from shared.projections.schema import definition_hash

    hashes = {
        definition_hash(ReportsProjection(r))
        for r in (Rule(), Rule(timedelta(days=7)), Rule(touch="open"))
    }
    assert len(hashes) == 3
    assert definition_hash(ReportsProjection()) == definition_hash(ReportsProjection(Rule()))
