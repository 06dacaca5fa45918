"""Opaque, tamper-evident keyset page tokens (AIP-158).

A token is base64url(payload) "." base64url(HMAC-SHA256(key, payload)), where the payload holds
the last row's key and a fingerprint of the query's filter, so a token can neither be forged,
edited nor replayed against a different query. The key is ``PAGE_TOKEN_SECRET`` (one value per
deployment: every replica must accept every other replica's tokens). Anything that is not such a
token is INVALID_ARGUMENT with reason INVALID_PAGE_TOKEN.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Any

import orjson

from shared.domain.errors import Invalid

MAX_TOKEN = 1024  # characters; the request limit of every page_token field


DEV_SECRET = "dev-page-token-secret"  # noqa: S105 - the documented development default
_secret = [DEV_SECRET.encode()]


def use_secret(secret: str) -> None:
    """Set the deployment's key (the runtime does, from ``PAGE_TOKEN_SECRET``, at start)."""
    _secret[0] = secret.encode()


def _key() -> bytes:
    return _secret[0]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(payload: bytes) -> bytes:
    return hmac.new(_key(), b"crm page token\x00" + payload, hashlib.sha256).digest()


def _bad(why: str = "not a page token from this API") -> Invalid:
    return Invalid([("page_token", "INVALID_PAGE_TOKEN", why)])


def seal(payload: Any) -> str:
    """Any JSON-able value as a signed, opaque token."""
    raw = orjson.dumps(payload)
    return f"{_b64(raw)}.{_b64(_mac(raw))}"


def unseal(token: str) -> Any:
    """The value sealed in ``token``; INVALID_PAGE_TOKEN if it was not made by ``seal`` with
    this deployment's key."""
    try:
        if len(token) > MAX_TOKEN or not token.isascii():
            raise ValueError
        body, _, mac = token.partition(".")
        raw = _unb64(body)
        if not hmac.compare_digest(_unb64(mac), _mac(raw)):
            raise ValueError
        return orjson.loads(raw)
    except (ValueError, binascii.Error):
        raise _bad() from None


def encode_token(after: Any, fingerprint: str) -> str:
    return seal({"a": after, "f": fingerprint})


def decode_token(token: str, fingerprint: str) -> Any:
    data = unseal(token)
    if not isinstance(data, dict) or "a" not in data or not isinstance(data.get("f"), str):
        raise _bad()
    if data["f"] != fingerprint:
        raise _bad("the filter changed since the token")
    return data["a"]
