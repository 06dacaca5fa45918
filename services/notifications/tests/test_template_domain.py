"""A template's decisions: checks on save, versions, archive."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.notifications.domain import template as t
from services.notifications.domain.variant import EMAIL, SMS, WEBHOOK, Variant
from shared.domain.errors import Invalid, NotFound, Precondition

AT = datetime(2026, 1, 1, tzinfo=UTC)
EMAIL_OK = [Variant("", subject="Hi", text="Hello {{ n }}")]


def created(variants: list[Variant] = EMAIL_OK) -> t.Template:
    events = t.decide_create("id-1", "welcome", EMAIL, "Welcome", variants)
    state = t.fold((e, d, AT, i) for i, (e, d) in enumerate(events))
    assert state is not None
    return state


def reasons(call: object) -> list[tuple[str, str]]:
    with pytest.raises(Invalid) as info:
        call()  # type: ignore[operator]
    return [(f, r) for f, r, _ in info.value.violations]


@pytest.mark.parametrize(
    ("channel", "variants", "expected"),
    [
        (EMAIL, [], [("variants", "MISSING_DEFAULT_VARIANT")]),
        (EMAIL, [Variant("fr", subject="a", text="b")], [("variants", "MISSING_DEFAULT_VARIANT")]),
        (EMAIL, [Variant("", text="b")], [("variants[0].subject", "INVALID_VARIANT")]),
        (
            EMAIL,
            [Variant("", subject="a", text="b", body="c")],
            [("variants[0].body", "INVALID_VARIANT")],
        ),
        (SMS, [Variant("", subject="a", body="b")], [("variants[0].subject", "INVALID_VARIANT")]),
        (WEBHOOK, [Variant("")], [("variants[0].body", "INVALID_VARIANT")]),
        (
            SMS,
            [Variant("", body="a"), Variant("FR", body="b"), Variant("fr", body="c")],
            [("variants[2].locale", "DUPLICATE_LOCALE")],
        ),
        (
            SMS,
            [Variant("", body="a"), Variant("french", body="b")],
            [("variants[1].locale", "INVALID_LOCALE")],
        ),
        (
            SMS,
            [Variant("", body="a\n{{ x }"), Variant("fr", body="{% endif %}")],
            [("variants[0].body", "TEMPLATE_SYNTAX"), ("variants[1].body", "TEMPLATE_SYNTAX")],
        ),
        ("", [Variant("", body="a")], [("channel", "INVALID_CHANNEL")]),
    ],
)
def test_checks_on_save(
    channel: str, variants: list[Variant], expected: list[tuple[str, str]]
) -> None:
    assert reasons(lambda: t.decide_create("id", "k", channel, "n", variants)) == expected


def test_syntax_violation_gives_the_line() -> None:
    with pytest.raises(Invalid) as info:
        t.decide_create("id", "k", SMS, "n", [Variant("", body="a\nb\n{{ x }")])
    assert info.value.violations[0][2].startswith("line 3: ")


def test_key_and_name() -> None:
    got = reasons(lambda: t.decide_create("id", "Bad Key", EMAIL, " ", EMAIL_OK))
    assert got == [("key", "INVALID_KEY"), ("name", "INVALID_NAME")]


def test_versions_and_locales_normalised() -> None:
    state = created([Variant("fr_ca", subject="S", text="T"), *EMAIL_OK])
    assert [v.locale for v in state.latest.variants] == ["", "fr-CA"]
    assert t.decide_update(state, "Welcome", list(state.latest.variants)) == []
    (event,) = t.decide_update(state, "Welcome", [Variant("", subject="New", text="T")])
    assert event[0] == t.REVISED and event[1]["version"] == 2
    after = t.evolve(state, *event, AT, 1)
    assert after.at(1) == state.latest
    assert after.at(0).version == 2 and after.at(2).variants[0].subject == "New"
    with pytest.raises(NotFound):
        after.at(3)


def test_archived_refuses_new_versions_and_archives_once() -> None:
    state = created()
    (event,) = t.decide_archive(state)
    archived = t.evolve(state, *event, AT, 1)
    assert t.decide_archive(archived) == []
    with pytest.raises(Precondition):
        t.decide_update(archived, "x", EMAIL_OK)
