"""SMS encoding and segment counting: table tests at every boundary, and properties against an
independent count."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.notifications.domain import sms

BASIC = sorted(sms.GSM7_BASIC)
EXT = sorted(sms.GSM7_EXTENSION)


@pytest.mark.parametrize(
    ("text", "encoding", "units", "segments"),
    [
        ("", sms.GSM7, 0, 1),
        ("a" * 160, sms.GSM7, 160, 1),
        ("a" * 161, sms.GSM7, 161, 2),
        ("a" * 306, sms.GSM7, 306, 2),
        ("a" * 307, sms.GSM7, 307, 3),
        ("€" * 80, sms.GSM7, 160, 1),  # extension characters count two
        ("€" * 81, sms.GSM7, 162, 2),
        ("a" * 159 + "€", sms.GSM7, 161, 2),
        ("a" * 152 + "€" + "a" * 10, sms.GSM7, 164, 2),  # the pair moves to segment 2
        ("a" * 152 + "€" + "a" * 152, sms.GSM7, 306, 3),  # …so 306 septets need 3 here
        ("Grüße, 10€ [ok]", sms.GSM7, 18, 1),
        ("ç" * 70, sms.UCS2, 70, 1),  # ç (lower case) is not GSM-7; Ç is
        ("Ç" * 70, sms.GSM7, 70, 1),
        ("ç" * 71, sms.UCS2, 71, 2),
        ("ç" * 134, sms.UCS2, 134, 2),
        ("ç" * 135, sms.UCS2, 135, 3),
        ("😀" * 35, sms.UCS2, 70, 1),  # a surrogate pair counts two
        ("😀" * 36, sms.UCS2, 72, 2),
        ("a" * 66 + "😀" + "a" * 10, sms.UCS2, 78, 2),  # the pair is not split
        ("Привет", sms.UCS2, 6, 1),
    ],
)
def test_encoding_units_and_segments(text: str, encoding: str, units: int, segments: int) -> None:
    assert sms.measure(text) == sms.SmsSize(encoding, units, segments)


@given(st.lists(st.sampled_from(BASIC), max_size=500).map("".join))
def test_plain_gsm7_segments_are_160_then_153(text: str) -> None:
    size = sms.measure(text)
    assert size.encoding == sms.GSM7 and size.units == len(text)
    assert size.segments == (1 if len(text) <= 160 else math.ceil(len(text) / 153))


@given(st.lists(st.sampled_from(BASIC + EXT), max_size=500).map("".join))
def test_gsm7_with_extensions(text: str) -> None:
    size = sms.measure(text)
    units = len(text) + sum(c in sms.GSM7_EXTENSION for c in text)
    assert size.encoding == sms.GSM7 and size.units == units
    if units <= 160:
        assert size.segments == 1
    else:  # at least the plain count, at most one more per escape that could straddle
        assert math.ceil(units / 153) <= size.segments <= math.ceil(units / 152)


@given(st.text(st.characters(codec="utf-16", exclude_categories=["Cs"]), max_size=300))
def test_anything_outside_gsm7_is_ucs2_counted_in_utf16_units(text: str) -> None:
    size = sms.measure(text)
    if all(c in sms.GSM7_BASIC or c in sms.GSM7_EXTENSION for c in text):
        assert size.encoding == sms.GSM7
        return
    units = len(text.encode("utf-16-le")) // 2
    assert size.encoding == sms.UCS2 and size.units == units
    if units <= 70:
        assert size.segments == 1
    else:
        assert math.ceil(units / 67) <= size.segments <= math.ceil(units / 66)
