"""Locale tags and the fallback chain (fr-CA → fr → default)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.notifications.domain import locale as loc


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("", ""),
        ("fr", "fr"),
        ("FR", "fr"),
        ("fr-ca", "fr-CA"),
        ("fr_CA", "fr-CA"),
        ("zh-hant-tw", "zh-Hant-TW"),
        ("es-419", "es-419"),
    ],
)
def test_canonical(tag: str, expected: str) -> None:
    assert loc.canonical(tag) == expected


@pytest.mark.parametrize("tag", ["f", "french-canada", "fr--CA", "12", "fr CA", "é", "x" * 40])
def test_not_a_tag(tag: str) -> None:
    with pytest.raises(loc.LocaleError):
        loc.canonical(tag)


@pytest.mark.parametrize(
    ("available", "asked", "chosen"),
    [
        ({"", "fr", "fr-CA"}, "fr-CA", "fr-CA"),
        ({"", "fr"}, "fr-CA", "fr"),
        ({"", "fr"}, "fr-ca", "fr"),
        ({"", "de"}, "fr-CA", ""),
        ({"", "fr-CA"}, "fr", ""),  # a more specific variant is never a fallback
        ({"", "zh-Hant"}, "zh-Hant-TW", "zh-Hant"),
        ({"", "fr"}, "", ""),
        ({"fr"}, "de", None),
    ],
)
def test_pick(available: set[str], asked: str, chosen: str | None) -> None:
    assert loc.pick(available, asked) == chosen


TAGS = st.from_regex(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}", fullmatch=True)


@given(TAGS, st.sets(TAGS, max_size=5))
def test_the_default_always_catches_and_the_most_specific_wins(tag: str, others: set[str]) -> None:
    available = {loc.canonical(t) for t in others} | {""}
    chosen = loc.pick(available, tag)
    chain = loc.chain(tag)
    assert chain[-1] == "" and chain[0] == loc.canonical(tag)
    assert chosen is not None and chosen in chain
    # nothing more specific than the chosen one was available
    assert not set(chain[: chain.index(chosen)]) & available
