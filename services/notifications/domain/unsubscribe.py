"""The List-Unsubscribe headers of a marketing email (RFC 2369, one-click per RFC 8058), with
an HMAC-signed token naming the message, and nothing personal: the unsubscribe endpoint
(adapters/tracking_http.py) checks the signature and finds the contact through the message
(pure)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from dataclasses import dataclass

PURPOSE = b"crm.notifications.unsubscribe\n"  # a token signed for this use only


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    base_url: str  # TRACKING_BASE_URL, e.g. https://t.shop.example (the path /u/<token> follows)
    secret: bytes  # TRACKING_SECRET
    mailto: str = ""  # UNSUBSCRIBE_MAILTO, e.g. unsubscribe@shop.example ("" for none)

    def token(self, message_id: str) -> str:
        """``<message id, 22 chars>.<HMAC-SHA256, 32 chars>``: URL-safe, no personal data."""
        raw = uuid.UUID(message_id).bytes
        mac = hmac.new(self.secret, PURPOSE + raw, hashlib.sha256).digest()[:24]
        return f"{_b64(raw)}.{_b64(mac)}"

    def message_of(self, token: str) -> str | None:
        """The message a token names when its signature holds, else None."""
        head, _, sig = token.partition(".")
        try:
            raw, mac = _unb64(head), _unb64(sig)
        except (ValueError, TypeError):
            return None
        if len(raw) != 16:
            return None
        good = hmac.new(self.secret, PURPOSE + raw, hashlib.sha256).digest()[:24]
        return str(uuid.UUID(bytes=raw)) if hmac.compare_digest(good, mac) else None

    def headers(self, message_id: str) -> tuple[tuple[str, str], ...]:
        token = self.token(message_id)
        targets = [f"<{self.base_url.rstrip('/')}/u/{token}>"]
        if self.mailto:
            targets.append(f"<mailto:{self.mailto}?subject=unsubscribe%20{token}>")
        return (
            ("List-Unsubscribe", ", ".join(targets)),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        )
