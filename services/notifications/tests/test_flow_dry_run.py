"""A flow's dry run over a recorded history, pure: runs start, wait, end and send as they would
have live, each send decided by the policy on the facts as they stood (consent, caps from the
log's own marketing sends), timers firing between events in time order, nothing outside the
window started."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from services.notifications.domain import policy
from services.notifications.domain.flows.dry_run import RULE_NOT_EVALUATED, DryRun
from services.notifications.domain.variant import EMAIL
from services.notifications.tests.test_flow_definitions import EXAMPLES, checked, json_form

T0 = datetime(2025, 11, 28, 8, 0, tzinfo=UTC)  # Black Friday
ADA, BOB, CY = "ada", "bob", "cy"


def flow_of(name: str) -> Any:
    flow, problems = checked(json_form((EXAMPLES[0].parent / f"{name}.yaml").read_text()))
    assert problems == []
    return flow


def dry_run(start: datetime = T0, end: datetime = T0 + timedelta(days=2)) -> DryRun:
    channels = {"cart-reminder": EMAIL, "cart-incentive": EMAIL}
    return DryRun(flow_of("abandoned-cart"), "f", 1, channels, policy.Rules(), start, end)


def feed(run: DryRun, *events: tuple[datetime, str, dict[str, Any]]) -> DryRun:
    for n, (at, type_, data) in enumerate(events):
        run.see(type_, f"e-{n}", data, {}, at)
    run.finish()
    return run


def granted(at: datetime, who: str) -> tuple[datetime, str, dict[str, Any]]:
    return at, "crm.contacts.v1.ConsentGranted", {"contact_id": who, "channel": "email"}


def abandoned(at: datetime, who: str, cart: str) -> tuple[datetime, str, dict[str, Any]]:
    return at, "crm.orders.v1.CartAbandoned", {"contact_id": who, "cart_id": cart}


def test_what_the_abandoned_cart_flow_would_have_sent() -> None:
    run = feed(
        dry_run(),
        granted(T0 - timedelta(days=30), ADA),  # before the window: a fact, not a trigger
        granted(T0 - timedelta(days=30), CY),
        abandoned(T0, ADA, "c1"),
        abandoned(T0 + timedelta(minutes=5), BOB, "c2"),  # never consented
        abandoned(T0 + timedelta(minutes=10), CY, "c3"),
        (T0 + timedelta(minutes=30), "crm.orders.v1.OrderPlaced", {"contact_id": CY}),
    )
    sends = [(w.contact_id, w.step, w.outcome, w.reason) for w in run.would]
    assert sends == [
        (ADA, "reminder", policy.SEND, ""),
        (BOB, "reminder", policy.SKIP, policy.NO_CONSENT),
        # 24 h later: smart sending (16 h) lets ada's second through, bob still has no consent
        (ADA, "incentive", policy.SEND, ""),
        (BOB, "incentive", policy.SKIP, policy.NO_CONSENT),
    ]
    assert run.would[0].at == T0 + timedelta(hours=1)  # the delay, to the instant
    assert (run.started, run.ended) == (3, 3)  # cy's ended on the order, the others completed


def test_the_logs_own_marketing_sends_count_against_the_cap() -> None:
    decided = {
        "contact_id": ADA,
        "channel": EMAIL,
        "kind": policy.MARKETING,
        "outcome": policy.SEND,
    }
    earlier = [
        (T0 - timedelta(days=d), "crm.notifications.v1.MessageDecided", decided) for d in (3, 2, 1)
    ]
    run = feed(dry_run(), granted(T0 - timedelta(days=30), ADA), *earlier, abandoned(T0, ADA, "c"))
    assert [(w.step, w.reason) for w in run.would] == [
        ("reminder", policy.CAPPED),
        ("incentive", policy.CAPPED),
    ]


def test_nothing_starts_outside_the_window_and_late_timers_do_not_fire() -> None:
    end = T0 + timedelta(minutes=30)
    run = feed(dry_run(end=end), granted(T0 - timedelta(days=1), ADA), abandoned(T0, ADA, "c"))
    assert run.started == 1 and run.would == []  # the hour's delay ends after the window
    before = feed(
        dry_run(), granted(T0 - timedelta(days=2), ADA), abandoned(T0 - timedelta(days=1), ADA, "c")
    )
    assert before.started == 0 and before.would == []


def test_a_rule_condition_is_listed_named_and_goes_no_further() -> None:
    """Segmentation evaluates rules on current facts only: a dry run cannot answer a rule
    condition as of the window, so it lists the ask with its rule and the run stops there."""
    flow, problems = checked(
        {
            "key": "loyal",
            "name": "Loyal",
            "trigger": {"event": {"event_type": "crm.orders.v1.OrderPlaced"}},
            "steps": [
                {
                    "id": "check",
                    "condition": {
                        "rule": "orders_count >= 3",
                        "if_true": "thank",
                        "if_false": "done",
                    },
                },
                {"id": "thank", "send": {"template_key": "cart-reminder"}, "next": "done"},
                {"id": "done", "exit": {}},
            ],
        }
    )
    assert problems == []
    run = DryRun(flow, "f", 1, {"cart-reminder": EMAIL}, policy.Rules(), T0, T0 + timedelta(days=1))
    feed(
        run,
        granted(T0 - timedelta(days=1), ADA),
        (T0, "crm.orders.v1.OrderPlaced", {"contact_id": ADA}),
    )
    assert [(w.contact_id, w.step, w.effect, w.reason, w.rule) for w in run.would] == [
        (ADA, "check", "ask", RULE_NOT_EVALUATED, "orders_count >= 3")
    ]
    assert (run.started, run.ended) == (1, 0)


def test_an_erased_contact_is_sent_nothing() -> None:
    registered = {"contact_id": ADA, "time_zone": "Asia/Tokyo"}
    run = dry_run()
    feed(
        run,
        (T0 - timedelta(days=40), "crm.contacts.v1.ContactRegistered", registered),
        granted(T0 - timedelta(days=30), ADA),
        (T0 - timedelta(days=1), "crm.contacts.v1.ContactErased", {"contact_id": ADA}),
        abandoned(T0, ADA, "c1"),  # a cart of the erased contact's, read back from history
        abandoned(T0, BOB, "c2"),  # an ended run (erasure ends marketing runs) sends nothing
        (T0 + timedelta(minutes=5), "crm.contacts.v1.ContactErased", {"contact_id": BOB}),
    )
    assert [(w.contact_id, w.step, w.reason) for w in run.would][:1] == [
        (ADA, "reminder", policy.CONTACT_ERASED)
    ]
    assert BOB not in {w.contact_id for w in run.would}
