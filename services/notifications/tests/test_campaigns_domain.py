"""Campaigns, the pure part: the audience frozen (include minus exclude, once each, a digest that
proves it), A/B variants with a holdout (deterministic per contact, shared by weight), 09:00 in
each recipient's zone, the throttle, and the campaign's life."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.notifications.domain.campaigns import audience as a
from services.notifications.domain.campaigns import campaign as c
from services.notifications.domain.campaigns import definition as d
from shared.domain.errors import Invalid, Precondition

IDS = [str(uuid.UUID(int=i)) for i in range(10_000)]


def test_the_audience_is_included_minus_excluded_each_once_with_a_digest() -> None:
    vip, newsletter, bounced = IDS[:5], IDS[3:8], [IDS[4], IDS[7]]
    frozen = a.freeze([vip, newsletter], [bounced])
    assert frozen.contact_ids == tuple(sorted(set(IDS[:8]) - set(bounced)))
    assert frozen.size == 6
    again = a.freeze([reversed(newsletter), vip], [bounced])  # any order: the same proof
    assert again.digest == frozen.digest == a.digest(list(reversed(frozen.contact_ids)))
    assert a.freeze([vip], []).digest != frozen.digest


def test_variants_and_the_holdout_are_shared_as_asked_and_stable() -> None:
    variants = [a.Variant("A", "offer-a", 3), a.Variant("B", "offer-b", 1)]
    got = [a.variant_of("black-friday", cid, variants, 1_000) for cid in IDS]
    counts = {name: got.count(name) for name in ("A", "B", a.HOLDOUT)}
    assert 900 <= counts[a.HOLDOUT] <= 1_100  # 10%
    assert 6_500 <= counts["A"] <= 7_000 and 2_100 <= counts["B"] <= 2_400  # 3:1 of the rest
    assert got == [a.variant_of("black-friday", cid, variants, 1_000) for cid in IDS]
    other = [a.variant_of("cyber-monday", cid, variants, 1_000) for cid in IDS]
    assert other != got  # each campaign splits its own way


@given(
    st.lists(st.integers(0, 5), min_size=1, max_size=4).filter(lambda w: sum(w) > 0),
    st.integers(0, a.BUCKETS - 1),
    st.sampled_from(IDS[:50]),
)
def test_a_contact_always_gets_a_variant_with_weight_or_the_holdout(
    weights: list[int], holdout: int, contact_id: str
) -> None:
    variants = [a.Variant(f"v{i}", f"t{i}", w) for i, w in enumerate(weights)]
    got = a.variant_of("c", contact_id, variants, holdout)
    assert got == a.HOLDOUT or any(v.name == got and v.weight > 0 for v in variants)


def test_nine_in_the_morning_in_each_recipients_zone() -> None:
    friday, nine = date(2026, 11, 27), time(9)
    assert a.local_send_time(friday, nine, ZoneInfo("Europe/Paris")) == datetime(
        2026, 11, 27, 8, tzinfo=UTC
    )
    assert a.local_send_time(friday, nine, ZoneInfo("Asia/Tokyo")) == datetime(
        2026, 11, 27, 0, tzinfo=UTC
    )
    assert a.local_send_time(friday, nine, ZoneInfo("America/New_York")) == datetime(
        2026, 11, 27, 14, tzinfo=UTC
    )


def test_the_throttle_spaces_sends_evenly() -> None:
    start = datetime(2026, 11, 27, 8, tzinfo=UTC)
    assert a.throttled(start, 4, 3) == [start + timedelta(seconds=20 * i) for i in range(4)]
    assert a.throttled(start, 2, 0) == [start, start]


def _run(*changes: tuple[str, Mapping[str, Any]]) -> c.Campaign:
    state = c.Campaign("camp-1")
    for change, data in changes:
        for type_, event in c.decide(state, change, data):
            state = c.evolve(state, type_, event)
    return state


def test_a_campaigns_life() -> None:
    scheduled: tuple[str, Mapping[str, Any]] = (
        c.SCHEDULED,
        {"send_time": "2026-11-27T00:00:00+00:00", "local_time": "09:00"},
    )
    started: tuple[str, Mapping[str, Any]] = (
        c.STARTED,
        {"audience_size": 6, "audience_digest": "ab"},
    )
    s = _run(scheduled)
    assert (s.state, s.local_time) == (c.WAITING, "09:00")
    assert _run(scheduled, (c.PAUSED, {}), (c.RESUMED, {})).state == c.WAITING
    s = _run(scheduled, started, (c.PAUSED, {}), (c.PAUSED, {}), (c.RESUMED, {}), (c.RESUMED, {}))
    assert (s.state, s.audience_size) == (c.SENDING, 6)
    assert _run(scheduled, started, (c.COMPLETED, {})).state == c.DONE
    assert _run(scheduled, (c.CANCELLED, {}), (c.CANCELLED, {})).state == c.STOPPED


@pytest.mark.parametrize(
    "changes,refused",
    [
        ([], c.STARTED),  # a draft is scheduled first
        ([c.SCHEDULED, c.CANCELLED], c.RESUMED),
        ([c.SCHEDULED, c.STARTED, c.COMPLETED], c.CANCELLED),
        ([c.SCHEDULED, c.STARTED], c.SCHEDULED),  # too late to move it
    ],
)
def test_changes_the_state_forbids_are_refused(changes: list[str], refused: str) -> None:
    data = {c.STARTED: {"audience_size": 1, "audience_digest": "x"}}
    state = _run(*[(ch, data.get(ch, {})) for ch in changes])
    with pytest.raises(Precondition) as info:
        c.decide(state, refused, data.get(refused, {}))
    assert info.value.reason == "CAMPAIGN_STATE"


def test_pacing_never_sends_early_and_keeps_the_gap() -> None:
    t0 = datetime(2026, 11, 27, 8, tzinfo=UTC)
    dues = [t0, t0, t0 + timedelta(seconds=5), t0 + timedelta(hours=1)]
    assert a.paced(dues, 4) == [
        t0,
        t0 + timedelta(seconds=15),
        t0 + timedelta(seconds=30),
        t0 + timedelta(hours=1),
    ]
    assert a.paced(dues, 0) == dues


@given(
    st.lists(st.integers(0, 3600), max_size=30).map(sorted),
    st.integers(0, 120),
)
def test_paced_instants_are_in_order_not_early_and_at_most_the_rate(
    offsets: list[int], per_minute: int
) -> None:
    t0 = datetime(2026, 11, 27, 8, tzinfo=UTC)
    dues = [t0 + timedelta(seconds=s) for s in offsets]
    out = a.paced(dues, per_minute)
    assert len(out) == len(dues) and all(o >= d for o, d in zip(out, dues, strict=True))
    if per_minute:
        gap = timedelta(minutes=1) / per_minute
        assert all(b - x >= gap for x, b in itertools.pairwise(out))


GOOD = {
    "name": "Sale",
    "include_segments": ["vip"],
    "variants": [{"name": "a", "template_key": "sale"}],
}


@pytest.mark.parametrize(
    "change,field,reason",
    [
        ({"name": ""}, "name", "INVALID_NAME"),
        ({"include_segments": []}, "include_segments", "SEGMENTS_REQUIRED"),
        ({"exclude_segments": ["Bad Key"]}, "exclude_segments[0]", "INVALID_SEGMENT_KEY"),
        ({"exclude_segments": ["vip"]}, "exclude_segments", "SEGMENT_BOTH"),
        ({"kind": "MESSAGE_KIND_OTHER"}, "kind", "INVALID_KIND"),
        ({"variants": []}, "variants", "VARIANTS_REQUIRED"),
        ({"variants": [{"name": "holdout", "template_key": "x"}]}, "variants[0].name", None),
        ({"variants": [{"name": "a"}]}, "variants[0].template_key", "TEMPLATE_REQUIRED"),
        ({"variants": [{"name": "a", "template_key": "x", "weight": -1}]}, None, "INVALID_WEIGHT"),
        ({"holdout_basis_points": 10_000}, "holdout_basis_points", "INVALID_HOLDOUT"),
        ({"throttle_per_minute": -5}, "throttle_per_minute", "INVALID_THROTTLE"),
    ],
)
def test_a_bad_definition_names_its_field(
    change: dict[str, Any], field: str | None, reason: str | None
) -> None:
    assert d.problems(GOOD) == []
    found = d.problems({**GOOD, **change})
    assert found
    if field is not None:
        assert field in [f for f, _, _ in found]
    if reason is not None:
        assert reason in [r for _, r, _ in found]


def test_a_created_campaign_keeps_its_definition_and_is_refused_whole() -> None:
    [(type_, data)] = c.decide_create("camp-1", GOOD)
    state = c.apply(None, type_, data, datetime(2026, 1, 1, tzinfo=UTC), 0)
    assert (state.state, state.definition, state.version) == (c.DRAFT, GOOD, 0)
    with pytest.raises(Invalid) as info:
        c.decide_create("camp-1", {**GOOD, "name": "", "variants": []})
    assert [f for f, _, _ in info.value.violations] == ["definition.name", "definition.variants"]


NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)


def test_schedules_read() -> None:
    assert d.schedule_of({"now": True}, NOW).start_at == NOW
    soon = NOW + timedelta(hours=1)
    assert d.schedule_of({"send_time": "2026-11-20T13:00:00Z"}, NOW).start_at == soon
    local = d.schedule_of(
        {
            "local": {
                "day": "2026-11-27",
                "time_of_day": "09:00",
                "fallback_time_zone": "Asia/Tokyo",
            }
        },
        NOW,
    )
    # Frozen when 09:00 first happens anywhere (UTC+14): 19:00 UTC the day before.
    assert local.start_at == datetime(2026, 11, 26, 19, tzinfo=UTC)
    assert local.to_data() == {
        "send_time": "2026-11-26T19:00:00Z",
        "local_day": "2026-11-27",
        "local_time": "09:00",
        "fallback_time_zone": "Asia/Tokyo",
    }


@pytest.mark.parametrize(
    "schedule,reason",
    [
        ({}, "SCHEDULE_REQUIRED"),
        ({"send_time": "2026-11-20T11:00:00Z"}, "SEND_TIME_PAST"),
        ({"local": {"day": "2026-13-01", "time_of_day": "09:00"}}, "INVALID_DAY"),
        ({"local": {"day": "2026-11-27", "time_of_day": "9:00"}}, "INVALID_TIME"),
        ({"local": {"day": "2026-11-27", "time_of_day": "25:00"}}, "INVALID_TIME"),
        (
            {"local": {"day": "2026-11-27", "time_of_day": "09:00", "fallback_time_zone": "X/Y"}},
            "INVALID_TIME_ZONE",
        ),
        ({"local": {"day": "2026-11-18", "time_of_day": "09:00"}}, "SEND_TIME_PAST"),
    ],
)
def test_bad_schedules_are_refused(schedule: dict[str, Any], reason: str) -> None:
    with pytest.raises(Invalid) as info:
        d.schedule_of(schedule, NOW)
    assert info.value.reason == reason
