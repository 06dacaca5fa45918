"""Shared pieces: goals, the Metric record, progress output, payloads and statistics."""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

SCALE = float(os.environ.get("BENCH_SCALE", "1.0"))
REGISTERED = "crm.contacts.v1.ContactRegistered"
UPDATED = "crm.contacts.v1.ContactUpdated"
_STARTED = time.perf_counter()


@dataclass(frozen=True)
class Goal:
    target: float
    higher_is_better: bool = True
    on_ratio: bool = False  # compare the ratio to the baseline instead of the value

    def text(self) -> str:
        op = "≥" if self.higher_is_better else "≤"
        return f"{op} {self.target:g}x" if self.on_ratio else f"{op} {self.target:,g}"

    def met(self, m: Metric) -> bool | None:
        got = m.ratio if self.on_ratio else m.value
        if math.isnan(got):
            return None
        return got >= self.target if self.higher_is_better else got <= self.target


# docs/architecture.md §6, in one place.
GOALS: dict[str, Goal] = {
    "append_single_8w": Goal(0.8, on_ratio=True),
    "append_batch100": Goal(50_000),
    "read_all": Goal(200_000),
    "projection_rebuild_contacts": Goal(40_000),
    "grpc_register_contact": Goal(2_000),
    "grpc_register_contact_p99_ms": Goal(20, higher_is_better=False),
    # the operators' issue: tokens cost at most a tenth of the rate (bench/auth_cost.py)
    "grpc_register_contact_auth_cost": Goal(0.9, on_ratio=True),
    "projection_lag_p99_ms": Goal(100, higher_is_better=False),
    "import_contacts": Goal(20_000),
    # the orders issue
    "grpc_place_order": Goal(1_500),
    "grpc_place_order_p99_ms": Goal(25, higher_is_better=False),
    "projection_rebuild_metrics": Goal(30_000),
    # the segmentation service
    "segment_event_latency_p99_ms": Goal(100, higher_is_better=False),
    "segment_backfill": Goal(0.5, on_ratio=True),
    "segmentation_projection": Goal(0.5, on_ratio=True),
    # auditors (issue 13): against read_all on the same log
    "events_export_rate": Goal(0.5, on_ratio=True),
    "verify_rate": Goal(0.5, on_ratio=True),
    # automation (issue 12): a flow's dry run against read_all on the same log
    "dry_run_rate": Goal(0.5, on_ratio=True),
    # the notifications delivery workers
    "delivery_worker_rss": Goal(200, higher_is_better=False),
    # the notifications service end to end (issue 11)
    "notifications_email_rate": Goal(0.5, on_ratio=True),
    "notifications_decision_p99_ms": Goal(50, higher_is_better=False),
    # a campaign to a segment, end to end (issue 12): against plain smtplib in the same run
    "campaign_send_rate": Goal(0.5, on_ratio=True),
    # the flow engine's timers (issue 12): delay steps with 100k runs waiting
    "flow_timer_lateness_p99_ms": Goal(1000, higher_is_better=False),
}


@dataclass
class Metric:
    name: str
    value: float
    unit: str
    baseline: float
    baseline_desc: str  # what the baseline measured
    samples: list[float] = field(default_factory=list)
    baseline_samples: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else math.nan

    @property
    def goal(self) -> Goal | None:
        return GOALS.get(self.name)

    def as_json(self) -> dict[str, Any]:
        goal = self.goal
        return {
            "name": self.name,
            "value": round(self.value, 3),
            "unit": self.unit,
            "baseline": round(self.baseline, 3),
            "ratio": None if math.isnan(self.ratio) else round(self.ratio, 3),
            "baseline_desc": self.baseline_desc,
            "goal": goal.text() if goal else None,
            "met": goal.met(self) if goal else None,
            "samples": [round(s, 3) for s in self.samples],
            "baseline_samples": [round(s, 3) for s in self.baseline_samples],
            **self.extra,
        }


def log(msg: str) -> None:
    print(f"[bench {time.perf_counter() - _STARTED:6.1f}s] {msg}", file=sys.stderr, flush=True)


def scaled(n: float, minimum: float = 1) -> float:
    return max(minimum, n * SCALE)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    k = max(0, math.ceil(q / 100 * len(ordered)) - 1)
    return ordered[k]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


async def interleaved(
    raw: Callable[[int], Awaitable[float]],
    store: Callable[[int], Awaitable[float]],
    rounds: int,
    label: str,
    budget: float = math.inf,
) -> tuple[list[float], list[float]]:
    """raw, store, raw, store, ...: this box is noisy, so compare medians of alternating runs.
    No new round starts once ``budget`` seconds have passed (keeps `make bench` under 5 min)."""
    raws: list[float] = []
    stores: list[float] = []
    started = time.perf_counter()
    for r in range(rounds):
        if r and time.perf_counter() - started > budget * SCALE:
            log(f"  {label}: stopping after {r} round(s), time budget used")
            break
        raws.append(await raw(r))
        log(f"  {label} round {r + 1}/{rounds}: raw {raws[-1]:,.0f}/s")
        stores.append(await store(r))
        log(f"  {label} round {r + 1}/{rounds}: store {stores[-1]:,.0f}/s")
    return raws, stores


# --- payloads shaped like the events services/contacts/domain/contact/ decides -------------------

_FIRST = ("Ada", "Grace", "Alan", "Barbara", "Edsger", "Frances", "Donald", "Margaret")
_LAST = ("Lovelace", "Hopper", "Turing", "Liskov", "Dijkstra", "Allen", "Knuth", "Hamilton")
_TAGS = ("newsletter", "vip", "b2b", "returning", "cart-abandoned", "wholesale")


def registered(contact_id: str, n: int) -> dict[str, Any]:
    return {
        "contact_id": contact_id,
        "email": f"customer{n}.{contact_id[:8]}@shop.example.com",
        "first_name": _FIRST[n % len(_FIRST)],
        "last_name": _LAST[n % len(_LAST)],
        "tags": sorted({_TAGS[n % len(_TAGS)], _TAGS[(n // 7) % len(_TAGS)]}),
    }


def updated(contact_id: str, n: int) -> dict[str, Any]:
    return {
        "contact_id": contact_id,
        "changed_fields": ["last_name", "tags"],
        "last_name": _LAST[(n + 3) % len(_LAST)],
        "tags": [_TAGS[(n + 1) % len(_TAGS)], "updated"],
    }


def metadata() -> dict[str, Any]:
    rid = uuid.uuid4().hex
    return {
        "schema": 1,
        "request_id": rid,
        "correlation_id": rid,
        "actor": "bench",
        "traceparent": f"00-{uuid.uuid4().hex}-{rid[:16]}-01",
    }
