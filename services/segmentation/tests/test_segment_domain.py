"""A segment's definition: decisions and versions (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.segmentation.domain import segment as s
from shared.domain.errors import Invalid, Precondition

AT = datetime(2026, 12, 2, tzinfo=UTC)


def created(rule: str = "orders_count >= 1") -> s.Segment:
    [(t, d)] = s.decide_create("sid", "buyers", "Buyers", "", rule)
    return s.evolve(None, t, d, AT, 0)


def test_a_new_segment_has_rule_version_1() -> None:
    seg = created()
    assert (seg.key, seg.rule_version, seg.version, seg.archived) == ("buyers", 1, 0, False)


@pytest.mark.parametrize(
    ("key", "name", "rule", "reason"),
    [
        ("Bad Key", "n", "x", "INVALID_KEY"),
        ("ok", "  ", "x", "INVALID_NAME"),
        ("ok", "n", " ", "INVALID_RULE"),
        ("-dash-first", "n", "x", "INVALID_KEY"),
    ],
)
def test_bad_definitions_are_refused(key: str, name: str, rule: str, reason: str) -> None:
    with pytest.raises(Invalid) as info:
        s.decide_create("sid", key, name, "", rule)
    assert reason in [v[1] for v in info.value.violations]


def test_a_changed_rule_is_a_new_version_a_new_name_is_not() -> None:
    seg = created()
    [(t, d)] = s.decide_update(seg, "Buyers!", "", seg.rule)
    renamed = s.evolve(seg, t, d, AT, 1)
    assert (renamed.name, renamed.rule_version) == ("Buyers!", 1)
    [(t, d)] = s.decide_update(renamed, "Buyers!", "", "orders_count >= 2")
    assert s.evolve(renamed, t, d, AT, 2).rule_version == 2
    assert s.decide_update(renamed, "Buyers!", "", renamed.rule) == []


def test_an_archived_segment_is_not_updated_and_archiving_is_idempotent() -> None:
    seg = created()
    [(t, d)] = s.decide_archive(seg)
    gone = s.evolve(seg, t, d, AT, 1)
    assert gone.archived and s.decide_archive(gone) == []
    with pytest.raises(Precondition):
        s.decide_update(gone, "x", "", "orders_count >= 1")
