"""The attribution rule (pure): the window's edges, the last touch among several (ties broken
the same way as the read model's), the rates' denominator, and the settings that make the rule:
refused when they make no sense, handed to the project role's reports projection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.notifications import app
from services.notifications.adapters.reports_readmodel import ReportsProjection
from services.notifications.domain import tracking
from services.notifications.domain.attribution import Rule, Touch, last_touch, rate
from services.notifications.settings import NotificationsSettings, attribution_rule
from shared.testing import tokens

T0 = datetime(2026, 12, 1, 12, tzinfo=UTC)


def test_the_window_holds_from_the_touch_to_its_end() -> None:
    rule = Rule(timedelta(days=5))
    assert rule.counts(T0, T0) and rule.counts(T0, T0 + timedelta(days=5))
    assert not rule.counts(T0, T0 + timedelta(days=5, microseconds=1))
    assert not rule.counts(T0, T0 - timedelta(microseconds=1))


def test_the_last_touch_before_the_order_is_credited() -> None:
    touches = [
        Touch(T0, "a"),
        Touch(T0 + timedelta(hours=2), "b"),
        Touch(T0 + timedelta(days=9), "c"),
    ]
    rule = Rule()
    assert last_touch(touches, T0 + timedelta(hours=1), rule) == "a"
    assert last_touch(touches, T0 + timedelta(hours=3), rule) == "b"
    assert last_touch(touches, T0 + timedelta(days=6), rule) is None  # b's window is over
    assert last_touch(touches, T0 - timedelta(hours=1), rule) is None
    assert last_touch([Touch(T0, "b"), Touch(T0, "a")], T0, rule) == "b"  # ties: greatest id
    assert last_touch([], T0, rule) is None


def test_touches_and_rates() -> None:
    assert Rule().touch_types == (tracking.CLICKED,)
    assert set(Rule(touch="open").touch_types) == {tracking.CLICKED, tracking.OPENED}
    assert (rate(1, 4), rate(3, 0)) == (0.25, 0.0)
    with pytest.raises(ValueError, match="above 0"):
        Rule(timedelta(0))
    with pytest.raises(ValueError, match="click, open"):
        Rule(touch="view")


def test_the_settings_make_the_project_roles_rule() -> None:
    settings = NotificationsSettings(
        attribution_window_days=7, attribution_touch="open", **tokens.SETTINGS
    )
    [reports] = [p for p in app.projections(settings) if p.name == ReportsProjection.name]
    assert isinstance(reports, ReportsProjection)
    assert reports.rule == Rule(timedelta(days=7), "open")
    assert "604800.0, 'open'" in reports.ddl
    for bad in ({"attribution_window_days": 0}, {"attribution_touch": "views"}):
        with pytest.raises(SystemExit, match="ATTRIBUTION_"):
            attribution_rule(NotificationsSettings(**bad, **tokens.SETTINGS))
