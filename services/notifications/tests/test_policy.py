"""The send policy (pure): the order of its checks, each reason, quiet hours across DST, and
properties over generated facts."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.notifications.domain import policy as p
from services.notifications.domain.variant import EMAIL, SMS, WEBHOOK

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
RULES = p.Rules()
PARIS = ZoneInfo("Europe/Paris")


def facts(**kw: object) -> p.Facts:
    base: dict[str, object] = {
        "channel": EMAIL,
        "kind": p.MARKETING,
        "now": NOW,
        "address": "ada@example.com",
        "consent_state": p.SUBSCRIBED,
        "time_zone": "Europe/Paris",
    }
    return p.Facts(**{**base, **kw})  # type: ignore[arg-type]


def test_a_subscribed_contact_within_every_limit_is_sent_to() -> None:
    d = p.decide(facts(), RULES)
    assert (d.outcome, d.reason, d.cap, d.time_zone) == (p.SEND, "", 3, "Europe/Paris")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"erased": True, "archived": True, "address": ""}, p.CONTACT_ERASED),
        ({"archived": True, "address": "", "suppressed": True}, p.CONTACT_ARCHIVED),
        ({"address": "", "suppressed": True}, p.NO_ADDRESS),
        ({"suppressed": True, "consent_state": "CONSENT_STATE_UNSUBSCRIBED"}, p.SUPPRESSED),
        (
            {"consent_state": "CONSENT_STATE_PENDING_CONFIRMATION", "sends_in_window": 9},
            p.NO_CONSENT,
        ),
        ({"sends_in_window": 3, "last_marketing_send": NOW}, p.CAPPED),
        ({"last_marketing_send": NOW - timedelta(hours=15, minutes=59)}, p.SMART_SENDING),
    ],
)
def test_the_first_check_that_refuses_decides(change: dict[str, object], reason: str) -> None:
    d = p.decide(facts(**change), RULES)
    assert (d.outcome, d.reason) == (p.SKIP, reason)


def test_smart_sending_ends_after_its_interval_and_the_cap_counts_the_window() -> None:
    assert p.decide(facts(last_marketing_send=NOW - timedelta(hours=16)), RULES).outcome == p.SEND
    assert p.decide(facts(sends_in_window=2), RULES).outcome == p.SEND


def test_transactional_needs_no_consent_and_ignores_caps_but_not_suppression() -> None:
    kw = {"kind": p.TRANSACTIONAL, "consent_state": "", "sends_in_window": 99}
    assert p.decide(facts(**kw, last_marketing_send=NOW), RULES).outcome == p.SEND
    assert p.decide(facts(**kw, suppressed=True), RULES).reason == p.SUPPRESSED


def test_webhooks_need_a_url_but_no_consent() -> None:
    hook = facts(channel=WEBHOOK, consent_state="", address="https://hooks.example/x")
    assert p.decide(hook, RULES).outcome == p.SEND
    assert p.decide(facts(channel=WEBHOOK, address=""), RULES).reason == p.NO_ADDRESS


def test_sms_at_night_in_the_contacts_zone_waits_for_the_morning() -> None:
    night = datetime(2026, 6, 1, 21, 30, tzinfo=UTC)  # 23:30 in Paris (CEST)
    d = p.decide(facts(channel=SMS, address="+33600000000", now=night), RULES)
    assert (d.outcome, d.reason) == (p.DEFER, p.QUIET_HOURS)
    assert d.defer_until == datetime(2026, 6, 2, 6, 0, tzinfo=UTC)  # 08:00 in Paris
    assert d.quiet_hours == p.QuietHours(time(21), time(8))
    # the same instant is 17:30 in New York: not quiet there
    ny = facts(channel=SMS, address="+12125550100", now=night, time_zone="America/New_York")
    assert p.decide(ny, RULES).outcome == p.SEND


def test_an_unknown_or_empty_zone_is_the_default_zone() -> None:
    late = datetime(2026, 6, 1, 22, 0, tzinfo=UTC)
    for name in ("", "Mars/Olympus_Mons"):
        d = p.decide(facts(channel=SMS, now=late, time_zone=name), RULES)
        assert (d.outcome, d.time_zone) == (p.DEFER, "UTC")
        assert d.defer_until == datetime(2026, 6, 2, 8, 0, tzinfo=UTC)


def test_the_end_of_quiet_hours_follows_the_spring_forward_jump() -> None:
    # Paris springs forward on 2026-03-29 at 02:00 (CET) to 03:00 (CEST): a window ending at
    # 02:30 ends when the clock jumps, at 01:00 UTC, not at 02:30 (which never exists).
    window = p.QuietHours(time(22), time(2, 30))
    start = datetime(2026, 3, 28, 23, 0, tzinfo=UTC)  # 00:00 in Paris
    assert p.next_allowed(start, window, PARIS) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)


def test_quiet_hours_over_the_fall_back_end_at_the_first_morning() -> None:
    # Paris falls back on 2026-10-25 at 03:00 (CEST) to 02:00 (CET): 08:00 is CET, 07:00 UTC.
    start = datetime(2026, 10, 24, 20, 0, tzinfo=UTC)  # 22:00 CEST
    window = p.QuietHours(time(21), time(8))
    assert p.next_allowed(start, window, PARIS) == datetime(2026, 10, 25, 7, 0, tzinfo=UTC)


def test_a_jump_back_before_the_start_leaves_the_window() -> None:
    # quiet from 02:30: at 03:00 CEST the clock goes back to 02:00 CET, outside the window.
    window = p.QuietHours(time(2, 30), time(8))
    start = datetime(2026, 10, 25, 0, 45, tzinfo=UTC)  # 02:45 CEST
    assert p.next_allowed(start, window, PARIS) == datetime(2026, 10, 25, 1, 0, tzinfo=UTC)


def test_quiet_hours_settings_parse() -> None:
    assert p.parse_window("21:00-08:00") == p.QuietHours(time(21), time(8))
    assert p.parse_window(" ") is None
    with pytest.raises(ValueError):
        p.parse_window("9pm")


# --- properties ----------------------------------------------------------------------------------

ZONES = st.sampled_from(
    [
        "UTC",
        "Europe/Paris",
        "America/New_York",
        "America/St_Johns",
        "Australia/Lord_Howe",
        "Asia/Kolkata",
        "Pacific/Chatham",
        "America/Santiago",
    ]
)
INSTANTS = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)
)
WALL = st.times().map(lambda t: t.replace(microsecond=0, second=0))
WINDOWS = st.builds(p.QuietHours, WALL, WALL)


@given(now=INSTANTS, window=WINDOWS, name=ZONES)
def test_a_deferral_is_outside_quiet_hours_and_the_earliest_such_instant(
    now: datetime, window: p.QuietHours, name: str
) -> None:
    tz = ZoneInfo(name)
    until = p.next_allowed(now, window, tz)
    assert until >= now
    assert not p.in_quiet_hours(until, window, tz)
    if until > now:  # every second before it, back to now, is quiet
        assert p.in_quiet_hours(now, window, tz)
        assert p.in_quiet_hours(max(now, until - timedelta(seconds=1)), window, tz)
        assert p.in_quiet_hours(now + (until - now) / 2, window, tz)


FACTS = st.builds(
    p.Facts,
    channel=st.sampled_from([EMAIL, SMS, WEBHOOK]),
    kind=st.sampled_from(p.KINDS),
    now=INSTANTS,
    erased=st.booleans(),
    archived=st.booleans(),
    address=st.sampled_from(["", "x@example.com"]),
    consent_state=st.sampled_from(
        ["", p.SUBSCRIBED, "CONSENT_STATE_UNSUBSCRIBED", "CONSENT_STATE_NEVER_SUBSCRIBED"]
    ),
    suppressed=st.booleans(),
    sends_in_window=st.integers(0, 10),
    last_marketing_send=st.none() | INSTANTS,
    time_zone=ZONES,
)


@given(f=FACTS)
def test_transactional_is_never_capped_or_refused_for_consent(f: p.Facts) -> None:
    d = p.decide(replace(f, kind=p.TRANSACTIONAL), RULES)
    assert d.reason not in (p.CAPPED, p.NO_CONSENT, p.SMART_SENDING)


@given(f=FACTS)
def test_suppression_always_wins_over_consent_caps_and_quiet_hours(f: p.Facts) -> None:
    d = p.decide(replace(f, suppressed=True), RULES)
    if f.channel != WEBHOOK and f.address and not (f.erased or f.archived):
        assert (d.outcome, d.reason) == (p.SKIP, p.SUPPRESSED)
    assert d.outcome != p.SEND or f.channel == WEBHOOK


@given(f=FACTS)
def test_a_send_means_every_check_passed(f: p.Facts) -> None:
    d = p.decide(f, RULES)
    if d.outcome == p.SEND:
        assert f.address and not (f.erased or f.archived)
        if f.kind == p.MARKETING and f.channel != WEBHOOK:
            assert f.consent_state == p.SUBSCRIBED and not f.suppressed
            assert d.cap is not None and f.sends_in_window < d.cap
    if d.outcome == p.DEFER:
        assert d.defer_until is not None and d.defer_until > f.now
