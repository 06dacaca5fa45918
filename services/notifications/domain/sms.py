"""SMS encoding and segment counting (3GPP TS 23.038 / 23.040).

A body whose every character is in the GSM 03.38 default alphabet or its extension table goes
as GSM-7: 160 septets fit one message, and a longer one is split into segments of 153 (the
rest carries the concatenation header); an extension character (^ { } [ ] ~ \\ | € and form
feed) takes two septets, an escape and the character, and the two never straddle segments.
Any other character makes the whole body UCS-2: 70 UTF-16 code units in one message, 67 per
segment, and a surrogate pair (an emoji) never straddles segments.
"""

from __future__ import annotations

from dataclasses import dataclass

GSM7 = "GSM7"
UCS2 = "UCS2"

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

SINGLE = {GSM7: 160, UCS2: 70}
PART = {GSM7: 153, UCS2: 67}


@dataclass(frozen=True, slots=True)
class SmsSize:
    encoding: str  # GSM7 or UCS2
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int


def encoding(text: str) -> str:
    return GSM7 if all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text) else UCS2


def _width(c: str, enc: str) -> int:
    if enc == GSM7:
        return 2 if c in GSM7_EXTENSION else 1
    return 2 if ord(c) > 0xFFFF else 1


def measure(text: str) -> SmsSize:
    """The encoding, size and segment count of an SMS body (an empty body is one segment)."""
    enc = encoding(text)
    widths = [_width(c, enc) for c in text]
    units = sum(widths)
    if units <= SINGLE[enc]:
        return SmsSize(enc, units, 1)
    segments, used = 1, 0
    for w in widths:  # greedy: a two-unit character that does not fit starts the next segment
        if used + w > PART[enc]:
            segments, used = segments + 1, 0
        used += w
    return SmsSize(enc, units, segments)
