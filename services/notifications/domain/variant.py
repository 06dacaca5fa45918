"""Channels and the per-locale variants of a template: which fields each channel has."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

# The channels, by their names in protos/crm/notifications/v1/events.proto (stored as such).
EMAIL = "CHANNEL_EMAIL"
SMS = "CHANNEL_SMS"
WEBHOOK = "CHANNEL_WEBHOOK"
CHANNELS = (EMAIL, SMS, WEBHOOK)


def metric_label(channel: str) -> str:
    """A Channel name as metrics label it: CHANNEL_EMAIL -> email."""
    return channel.removeprefix("CHANNEL_").lower()


# The fields each channel's variants carry (required ones first), and the optional ones.
PARTS: Mapping[str, tuple[str, ...]] = {
    EMAIL: ("subject", "text", "html"),
    SMS: ("body",),
    WEBHOOK: ("body",),
}
OPTIONAL = frozenset({(EMAIL, "html")})
TEXT_FIELDS = ("subject", "text", "html", "body")


@dataclass(frozen=True, slots=True)
class Variant:
    locale: str = ""  # "" = the default variant
    subject: str = ""
    text: str = ""
    html: str = ""
    body: str = ""

    def part(self, name: str) -> str:
        return str(getattr(self, name))

    def to_data(self) -> dict[str, str]:
        """As stored (TemplateVariant's JSON): the locale and the fields that are set."""
        out = {"locale": self.locale}
        out.update({f: self.part(f) for f in TEXT_FIELDS if self.part(f)})
        return out

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Variant:
        names = {f.name for f in fields(cls)}
        return cls(**{k: str(v) for k, v in data.items() if k in names})
