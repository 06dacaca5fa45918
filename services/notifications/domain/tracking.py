"""Tracking (pure): the signed tokens of the open pixel (``/o/<token>``) and of tracked links
(``/c/<token>``), and the events a tracking hit appends to the message's stream
(MessageOpened, MessageClicked, MessageUnsubscribed). A token names a message (and a link's
index), never a person: the endpoints find the contact through the message. Each token is
signed for its own use (a pixel's token does not open a link), HMAC-SHA256 with
TRACKING_SECRET, truncated to 192 bits."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.notifications.domain.decision import PREFIX

OPENED = PREFIX + "MessageOpened"
CLICKED = PREFIX + "MessageClicked"
UNSUBSCRIBED = PREFIX + "MessageUnsubscribed"
EVENTS = (OPENED, CLICKED, UNSUBSCRIBED)

OPEN = b"crm.notifications.open\n"
CLICK = b"crm.notifications.click\n"
MAX_LINKS = 1000  # links tracked per message; later ones are left as written
MAC_BYTES = 24

Event = tuple[str, dict[str, Any]]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes | None:
    if not text or len(text) > 64 or not text.isascii():
        return None
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        return None


def _mac(secret: bytes, purpose: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, purpose + payload, hashlib.sha256).digest()[:MAC_BYTES]


def _sign(secret: bytes, purpose: bytes, payload: bytes) -> str:
    return f"{_b64(payload)}.{_b64(_mac(secret, purpose, payload))}"


def _verify(secret: bytes, purpose: bytes, token: str) -> bytes | None:
    head, dot, sig = token.partition(".")
    payload, mac = _unb64(head), _unb64(sig)
    if not dot or payload is None or mac is None:
        return None
    good = _mac(secret, purpose, payload)
    return payload if hmac.compare_digest(good, mac) else None


@dataclass(frozen=True, slots=True)
class TrackingTokens:
    """The open and click tokens of TRACKING_SECRET, and the URLs under TRACKING_BASE_URL."""

    base_url: str  # e.g. https://t.shop.example
    secret: bytes

    @property
    def root(self) -> str:
        return self.base_url.rstrip("/")

    def open_token(self, message_id: str) -> str:
        return _sign(self.secret, OPEN, uuid.UUID(message_id).bytes)

    def click_token(self, message_id: str, index: int) -> str:
        if not 0 <= index < MAX_LINKS:
            raise ValueError(f"link index {index} out of range")
        return _sign(self.secret, CLICK, uuid.UUID(message_id).bytes + index.to_bytes(2, "big"))

    def open_url(self, message_id: str) -> str:
        return f"{self.root}/o/{self.open_token(message_id)}"

    def click_url(self, message_id: str, index: int) -> str:
        return f"{self.root}/c/{self.click_token(message_id, index)}"

    def opened(self, token: str) -> str | None:
        """The message an open token names when its signature holds, else None."""
        payload = _verify(self.secret, OPEN, token)
        return str(uuid.UUID(bytes=payload)) if payload and len(payload) == 16 else None

    def clicked(self, token: str) -> tuple[str, int] | None:
        """(message, link index) a click token names when its signature holds, else None."""
        payload = _verify(self.secret, CLICK, token)
        if payload is None or len(payload) != 18:
            return None
        index = int.from_bytes(payload[16:], "big")
        return (str(uuid.UUID(bytes=payload[:16])), index) if index < MAX_LINKS else None


def minute(at: datetime) -> str:
    """The dedup window of opens and clicks: one event per message (and link) per minute."""
    return at.strftime("%Y-%m-%dT%H:%M")


def opened(message_id: str) -> Event:
    return OPENED, {"message_id": message_id}


def clicked(message_id: str, link: int, host: str) -> Event:
    """``link``: the link's index in the message's HTML (0 first); ``host``: where it leads
    (the host only: a URL's path and query may hold personal data)."""
    return CLICKED, {"message_id": message_id, "link": link, "host": host[:253]}


def unsubscribed(
    message_id: str, contact_id: str, channel: str, source: str, changed: bool
) -> Event:
    """The contact withdrew its consent on ``channel`` from this message (``source``:
    list-unsubscribe for the RFC 8058 one-click POST, unsubscribe-page for the page's button);
    ``changed`` false when it had already been withdrawn."""
    data: dict[str, Any] = {
        "message_id": message_id,
        "contact_id": contact_id,
        "channel": channel,
        "source": source,
    }
    if changed:
        data["changed"] = True
    return UNSUBSCRIBED, data
