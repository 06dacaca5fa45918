"""The token table (docs/architecture.md §5): who a bearer token is, without gRPC.

The table gives each token a name and one role — ``service``, ``operator`` or ``auditor`` — and
holds only the SHA-256 of each token. It comes from the settings ``CRM_TOKENS`` (text) and
``CRM_TOKENS_FILE`` (a file, e.g. a mounted Kubernetes Secret), one token a line
(``name role sha256``, ``#`` comments) or the same as JSON. shared/grpckit/auth.py admits the
calls of the asyncio services with it; the notifications delivery workers (an eventlet process
that must not load grpc) check their callers with it too, so it imports only the standard
library, orjson and the generated options protobuf.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from crm.options.v1 import options_pb2

SERVICE, OPERATOR, AUDITOR = (
    options_pb2.ROLE_SERVICE,
    options_pb2.ROLE_OPERATOR,
    options_pb2.ROLE_AUDITOR,
)
ROLES: Mapping[str, int] = {"service": SERVICE, "operator": OPERATOR, "auditor": AUDITOR}
ROLE_NAMES: Mapping[int, str] = {v: k for k, v in ROLES.items()}
# The roles that see decrypted personal data; any other gets it redacted.
SEES_PERSONAL_DATA = frozenset({SERVICE, OPERATOR})
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def hash_token(token: str) -> str:
    """The SHA-256 of a token as the table holds it (lowercase hex)."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def table_line(name: str, role: str, token: str) -> str:
    return f"{name} {role} {hash_token(token)}"


@dataclass(frozen=True)
class Token:
    name: str
    role: int
    digest: bytes  # SHA-256 of the token

    @property
    def role_name(self) -> str:
        return ROLE_NAMES[self.role]


class TokenTableError(ValueError):
    """The token table cannot be read; the message names the source and line, never a hash."""


def _entry(fields: Mapping[str, Any], where: str) -> Token:
    name, role, digest = (str(fields.get(k, "")).strip() for k in ("name", "role", "sha256"))
    if not _NAME.match(name):
        raise TokenTableError(f"{where}: a name is 1..64 of A-Z a-z 0-9 . _ @ -")
    if role not in ROLES:
        raise TokenTableError(f"{where}: role must be one of {', '.join(ROLES)}")
    if not _SHA256.match(digest.lower()):
        raise TokenTableError(f"{where}: sha256 must be 64 hex digits (the token's hash)")
    return Token(name, ROLES[role], bytes.fromhex(digest))


def parse_tokens(text: str, source: str) -> list[Token]:
    """The entries of one table text: lines ``name role sha256`` (``#`` comments), or JSON."""
    if text.lstrip().startswith("["):
        try:
            rows = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise TokenTableError(f"{source}: not valid JSON ({exc.msg})") from None
        if not all(isinstance(r, dict) for r in rows):
            raise TokenTableError(f"{source}: a JSON table is a list of objects")
        return [_entry(r, f"{source} entry {i + 1}") for i, r in enumerate(rows)]
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) != 3:
            raise TokenTableError(f"{source} line {number}: expected `name role sha256`")
        out.append(
            _entry(
                dict(zip(("name", "role", "sha256"), words, strict=True)), f"{source} line {number}"
            )
        )
    return out


class TokenTable:
    def __init__(self, tokens: Iterable[Token] = ()) -> None:
        self.tokens = tuple(tokens)
        digests = [t.digest for t in self.tokens]
        if len(set(digests)) != len(digests):
            raise TokenTableError("one token is listed twice; each token has one name and role")

    @classmethod
    def of(cls, settings: Any) -> TokenTable:
        """The table from ``CRM_TOKENS`` and the file ``CRM_TOKENS_FILE`` together."""
        tokens = parse_tokens(settings.crm_tokens, "CRM_TOKENS") if settings.crm_tokens else []
        if path := settings.crm_tokens_file:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                raise TokenTableError(f"CRM_TOKENS_FILE {path}: {exc.strerror}") from None
            tokens += parse_tokens(text, f"CRM_TOKENS_FILE {path}")
        return cls(tokens)

    def __len__(self) -> int:
        return len(self.tokens)

    def authenticate(self, token: str) -> Token | None:
        """The entry of ``token``, or None. Every entry is compared, in constant time each."""
        digest = hashlib.sha256(token.encode()).digest()
        found = None
        for entry in self.tokens:
            if hmac.compare_digest(entry.digest, digest):
                found = entry
        return found
