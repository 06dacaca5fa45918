"""Double opt-in confirmation tokens: <contact id, 16 bytes><secret, 32 bytes>, base64url.

The contact id inside lets a confirmation find its ledger without any index (and so without
read-model lag). The secret comes from the application (derived from the contact's key). The
ledger keeps only a token's SHA-256.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import uuid

from shared.domain.errors import Invalid

TOKEN_SECRET_BYTES = 32


def make_token(contact_id: str, secret: bytes) -> str:
    raw = uuid.UUID(contact_id).bytes + secret
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def token_contact(token: str) -> str:
    """The contact id inside a token; Invalid when it is not one of ours."""
    if not token:
        raise Invalid([("token", "TOKEN_REQUIRED", "a confirmation token is required")])
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii") + b"=" * (-len(token) % 4))
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raw = b""
    if (
        len(raw) != 16 + TOKEN_SECRET_BYTES
        or make_token(str(uuid.UUID(bytes=raw[:16])), raw[16:]) != token
    ):
        raise Invalid([("token", "INVALID_TOKEN", "not a confirmation token of this service")])
    return str(uuid.UUID(bytes=raw[:16]))


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
