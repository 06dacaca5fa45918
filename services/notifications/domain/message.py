"""A template version rendered for a locale: the variant chosen by fallback, each of its fields
rendered, and for SMS the encoding and segment count (pure)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.notifications.domain import sms
from services.notifications.domain.render import (
    RenderFailure,
    fields_read,
    kind_of,
    names_read,
    render_part,
)
from services.notifications.domain.template import Version
from services.notifications.domain.variant import EMAIL, SMS, WEBHOOK


@dataclass(frozen=True, slots=True)
class Rendered:
    locale: str  # the variant rendered ("" = default)
    channel: str
    subject: str = ""
    text: str = ""
    html: str = ""
    body: str = ""
    sms: sms.SmsSize | None = None


def render(channel: str, version: Version, locale: str, variables: Mapping[str, Any]) -> Rendered:
    """``version`` rendered for ``locale`` with ``variables``; RenderFailure (naming the field,
    the line and the variable) when it cannot be."""
    variant = version.variant(locale)
    assert variant is not None, "every saved version has a default variant"

    def part(name: str) -> str:
        source = variant.part(name)
        if not source:
            return ""
        return render_part(
            kind_of((channel, name)), name, source, variables, locale or variant.locale
        )

    if channel == EMAIL:
        subject = part("subject").strip()
        if "\n" in subject or "\r" in subject:
            raise RenderFailure("subject", None, "renders with a line break")
        return Rendered(variant.locale, channel, subject, part("text"), part("html"))
    body = part("body")
    if channel == SMS:
        return Rendered(variant.locale, channel, body=body, sms=sms.measure(body))
    assert channel == WEBHOOK, channel
    try:
        json.loads(body)
    except ValueError as err:
        raise RenderFailure("body", None, f"does not render to JSON: {err}"[:300]) from None
    return Rendered(variant.locale, channel, body=body)


def names_read_by(version: Version, locale: str) -> set[str]:
    """The top-level variables the variant chosen for ``locale`` reads."""
    variant = version.variant(locale)
    assert variant is not None, "every saved version has a default variant"
    parts = ("subject", "text", "html", "body")
    return {n for part in parts for n in names_read(variant.part(part))}


def fields_read_by(version: Version, locale: str, name: str) -> set[str] | None:
    """The fields of ``name`` the chosen variant reads; None when it uses ``name`` whole."""
    variant = version.variant(locale)
    assert variant is not None, "every saved version has a default variant"
    out: set[str] = set()
    for part in ("subject", "text", "html", "body"):
        found = fields_read(variant.part(part), name)
        if found is None:
            return None
        out |= found
    return out
