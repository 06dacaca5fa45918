"""Opaque keyset page tokens (AIP-158): the last row's key plus a fingerprint of the filter, so
a token cannot be replayed against a different query."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from shared.domain.errors import Invalid


def encode_token(after: Any, fingerprint: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"a": after, "f": fingerprint})).decode()


def decode_token(token: str, fingerprint: str) -> Any:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token.encode()))
        after, ok = data["a"], data["f"] == fingerprint
    except (ValueError, KeyError, TypeError):
        raise Invalid([("page_token", "INVALID_PAGE_TOKEN", "not a token from this API")]) from None
    if not ok:
        raise Invalid([("page_token", "INVALID_PAGE_TOKEN", "the filter changed since the token")])
    return after
