"""The signatures the intake endpoints check (pure): Standard Webhooks on bounce and complaint
reports, Twilio's scheme on SMS status callbacks. Both compare in constant time.

- Standard Webhooks (https://www.standardwebhooks.com): ``webhook-id``, ``webhook-timestamp``
  (Unix seconds) and ``webhook-signature``: space-separated ``v1,<base64 HMAC-SHA256 of
  "id.timestamp.body">`` entries under the secret's key (``whsec_`` + base64); a timestamp
  more than TOLERANCE from now is refused (replays).
- Twilio: ``X-Twilio-Signature`` = base64 HMAC-SHA1, keyed with the account's auth token, of the
  full public URL (query included) followed by each POSTed parameter's name and value, sorted
  by name.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable
from datetime import datetime, timedelta

TOLERANCE = timedelta(minutes=5)


def webhook_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: ``whsec_<base64>`` (the prefix optional, the
    padding too), decoded. ValueError for a secret that is not base64 or is empty."""
    text = secret.removeprefix("whsec_")
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        raise ValueError("a Standard Webhooks secret is whsec_ followed by base64") from None
    if not key:
        raise ValueError("a Standard Webhooks secret may not be empty")
    return key


def webhook_signature(key: bytes, webhook_id: str, timestamp: str, body: bytes) -> str:
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def webhook_verified(
    key: bytes, webhook_id: str, timestamp: str, signatures: str, body: bytes, now: datetime
) -> bool:
    """Whether one of the ``v1,`` signatures is the body's, and the timestamp is recent."""
    if not (key and webhook_id and timestamp.isdigit() and len(timestamp) <= 12 and signatures):
        return False
    sent = datetime.fromtimestamp(int(timestamp), now.tzinfo)
    if abs(now - sent) > TOLERANCE:
        return False
    expected = webhook_signature(key, webhook_id, timestamp, body)
    found = False
    for entry in signatures.split():
        version, _, value = entry.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected.encode()):
            found = True
    return found


def twilio_signature(token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    signed = url + "".join(k + v for k, v in sorted(params, key=lambda kv: kv[0]))
    digest = hmac.new(token.encode(), signed.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def twilio_verified(
    token: str, url: str, params: Iterable[tuple[str, str]], signature: str
) -> bool:
    if not (token and signature):
        return False
    expected = twilio_signature(token, url, params)
    return hmac.compare_digest(expected.encode(), signature.encode())
