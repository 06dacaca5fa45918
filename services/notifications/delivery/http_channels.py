"""SMS through a Twilio-style gateway and signed webhooks, over stdlib http.client (green after
monkey patching), a timeout on every connection, redirects not followed.

Both send the message id as ``Idempotency-Key``: a message sent again after an in-doubt batch
is the same request to the receiver. Webhooks follow Standard Webhooks
(https://www.standardwebhooks.com): ``webhook-id`` (the message id), ``webhook-timestamp``
(Unix seconds) and ``webhook-signature`` = ``v1,`` + base64 HMAC-SHA256 of
``id.timestamp.body`` under the secret's bytes (``whsec_`` + base64).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from services.notifications.delivery.outcome import Result, http_result, refused, unreachable

# Set by the workers; a request's extra header of the same name is dropped.
OWN_HEADERS = frozenset(
    {
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "idempotency-key",
        "content-type",
        "content-length",
        "host",
        "authorization",
        "user-agent",
    }
)
USER_AGENT = "crm-notifications-delivery/1"
MAX_ANSWER = 64 * 1024  # of a gateway's JSON answer, read for its sid


def secret_key(secret: str) -> bytes:
    """The key of a ``whsec_…`` secret (its base64 part, decoded)."""
    return base64.b64decode(secret.removeprefix("whsec_"), validate=True)


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def webhook_headers(
    key: bytes, message_id: str, timestamp: int, body: bytes, extra: Iterable[tuple[str, str]]
) -> dict[str, str]:
    headers = {n: v for n, v in extra if n.lower() not in OWN_HEADERS}
    headers |= {
        "Content-Type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(key, message_id, timestamp, body),
        "Idempotency-Key": message_id,
    }
    return headers


def sms_request(
    base_url: str,
    account_sid: str,
    auth_token: str,
    message_id: str,
    to: str,
    sender: str,
    text: str,
) -> tuple[str, bytes, dict[str, str]]:
    """The gateway's URL, form body and headers (basic auth with the account sid and token)."""
    auth = base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()
    body = urlencode({"To": to, "From": sender, "Body": text}).encode()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Authorization": f"Basic {auth}",
        "Idempotency-Key": message_id,
    }
    return f"{base_url.rstrip('/')}/Messages.json", body, headers


def gateway_sid(answer: bytes) -> str:
    """The ``sid`` of a gateway's JSON answer ("" when there is none)."""
    try:
        doc = json.loads(answer)
    except ValueError:
        return ""
    sid = doc.get("sid") if isinstance(doc, dict) else None
    return sid[:200] if isinstance(sid, str) else ""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


def post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Answer:
    """POST ``body``; raises OSError (and http.client.HTTPException) when no answer came."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url[:100]!r}")
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request("POST", path, body=body, headers={**headers, "User-Agent": USER_AGENT})
        response = conn.getresponse()
        return Answer(response.status, response.read(MAX_ANSWER))
    finally:
        conn.close()


def send_http(
    url: str, body: bytes, headers: Mapping[str, str], timeout: float, sid: bool
) -> Result:
    try:
        answer = post(url, body, headers, timeout)
    except (ValueError, http.client.InvalidURL) as exc:  # a bad URL or header (CR/LF)
        return refused(f"bad request: {exc}")
    except (OSError, http.client.HTTPException) as exc:
        return unreachable("http", exc)
    return http_result(answer.status, gateway_sid(answer.body) if sid else "")
