"""Which published events start a flow's run (type, filter, segment, backfill, the trigger key
and the data a run keeps) and which end one (exit events; a withdrawn consent or an erasure for
a flow that sends marketing)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from services.notifications.domain.flows import run as r
from services.notifications.domain.flows.trigger import Start, ends_runs, starts
from services.notifications.tests.test_flow_runs import example

ADA = "6f1c0e2a-1b7d-4c55-9a0e-3e2d1c4b5a69"
ABANDONED = "crm.orders.v1.CartAbandoned"


def test_an_abandoned_cart_starts_one_run_per_cart_keeping_plain_fields() -> None:
    flow = example("abandoned-cart")
    data = {"cart_id": "c-1", "contact_id": ADA, "subtotal": 1950, "items": [{"sku": "T"}]}
    assert starts(flow, ABANDONED, "e-1", data, {}) == Start(
        ADA,
        "c-1",
        {
            "cart_id": "c-1",
            "contact_id": ADA,
            "subtotal": 1950,
            "event_type": ABANDONED,
            "event_id": "e-1",
        },
    )
    assert starts(flow, "crm.orders.v1.OrderPlaced", "e-2", data, {}) is None
    assert starts(flow, ABANDONED, "e-3", {"cart_id": "c-2"}, {}) is None  # a guest's cart


def test_filters_and_backfill() -> None:
    welcome = example("welcome-series")
    granted = "crm.contacts.v1.ConsentGranted"
    email = {"contact_id": ADA, "channel": "email", "personal": "sealed…"}
    start = starts(welcome, granted, "e", email, {})
    assert start is not None and start.trigger_key == ADA and "personal" not in start.trigger
    assert starts(welcome, granted, "e", {**email, "channel": "CHANNEL_SMS"}, {}) is None
    assert starts(welcome, granted, "e", email, {"backfill": True}) is None  # an import


def test_segment_entries_of_the_flows_segment_not_a_backfill() -> None:
    win_back = example("win-back")
    exited = "crm.segmentation.v1.ContactExitedSegment"
    data = {
        "contact_id": ADA,
        "segment_key": "ordered-last-90-days",
        "cause": "MEMBERSHIP_CAUSE_TIME_PASSED",
    }
    assert starts(win_back, exited, "e", data, {}) is not None
    assert starts(win_back, exited, "e", {**data, "segment_key": "vip"}, {}) is None
    for cause in ("MEMBERSHIP_CAUSE_BACKFILL", "MEMBERSHIP_CAUSE_RULE_CHANGED"):
        assert starts(win_back, exited, "e", {**data, "cause": cause}, {}) is None


def test_what_ends_runs() -> None:
    cart, review = example("abandoned-cart"), example("review-request")
    assert ends_runs(cart, "crm.orders.v1.OrderPlaced")
    assert not ends_runs(review, "crm.orders.v1.OrderPlaced")
    for event in ("crm.contacts.v1.ConsentWithdrawn", "crm.contacts.v1.ContactErased"):
        assert ends_runs(cart, event) and ends_runs(review, event)  # both send marketing
    now, paris = datetime(2026, 11, 27, 8, tzinfo=UTC), ZoneInfo("Europe/Paris")
    events, _ = r.start("run", review, "f", 1, ADA, {}, now, paris)
    run = r.fold(events)
    assert run is not None
    ended, _ = r.event_seen(run, review, "crm.contacts.v1.ConsentWithdrawn", {}, "e", now, paris)
    assert ended[-1][0] == r.ENDED and ended[-1][1]["reason"] == r.EXITED
