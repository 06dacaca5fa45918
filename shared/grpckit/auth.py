"""Who is calling, and may they (docs/architecture.md §5).

Every call of a suite API carries ``authorization: Bearer <token>``. The token table gives each
token a name and one role — ``service`` (another service of the suite), ``operator`` or
``auditor`` — and holds only the SHA-256 of each token, never the token: a leaked table lets
no one in. It comes from the settings ``CRM_TOKENS`` (text) and ``CRM_TOKENS_FILE`` (a file,
e.g. a mounted Kubernetes Secret), one token a line::

    # name      role      sha256 of the token (hex)
    orders      service   9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    ops-alice   operator  …

or the same as JSON: ``[{"name": …, "role": …, "sha256": …}, …]``. A name may appear with
several tokens (rotation: the old and the new token both work until the old line is removed);
a token may appear once.

What each RPC allows is declared in its proto (``option (crm.options.v1.access)``,
protos/crm/options/v1/options.proto) and read here from the descriptors: the roles that may
call it, and whether its answer holds personal data. The interceptor (interceptor.py) asks
``AccessControl.admit`` before anything else a call does:

- no token → UNAUTHENTICATED ``TOKEN_MISSING``; a token not in the table (or not a bearer
  token) → UNAUTHENTICATED ``TOKEN_INVALID``;
- a role the RPC does not list, or an RPC that declares nothing → PERMISSION_DENIED
  ``ROLE_NOT_ALLOWED`` (metadata: role, method);
- an operator calling an RPC whose answer holds personal data without saying why (metadata
  ``x-crm-reason``) → INVALID_ARGUMENT ``REASON_REQUIRED``.

The admitted caller is then available to the servicer as ``caller()``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from google.protobuf import descriptor_pool

from crm.options.v1 import options_pb2
from shared.grpckit import errors as ge

SERVICE, OPERATOR, AUDITOR = (
    options_pb2.ROLE_SERVICE,
    options_pb2.ROLE_OPERATOR,
    options_pb2.ROLE_AUDITOR,
)
ROLES: Mapping[str, int] = {"service": SERVICE, "operator": OPERATOR, "auditor": AUDITOR}
ROLE_NAMES: Mapping[int, str] = {v: k for k, v in ROLES.items()}
# The roles that see decrypted personal data; any other gets it redacted.
SEES_PERSONAL_DATA = frozenset({SERVICE, OPERATOR})
REASON_HEADER = "x-crm-reason"
MAX_REASON = 500
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


@dataclass(frozen=True)
class Rule:
    """What an RPC declares: the roles that may call it, and whether its answer holds
    decrypted personal data."""

    roles: frozenset[int]
    personal_data: bool = False


def declared_rule(service: str, method: str) -> Rule | None:
    """The rule a method declares in its proto (``crm.options.v1.access``); None when the method
    or the option is unknown (then nobody may call it)."""
    try:
        desc = descriptor_pool.Default().FindServiceByName(service).methods_by_name[method]
    except KeyError:
        return None
    options = desc.GetOptions()
    if not options.HasExtension(options_pb2.access):
        return None
    access = options.Extensions[options_pb2.access]
    return Rule(frozenset(access.roles), access.personal_data)


@dataclass(frozen=True)
class Caller:
    """The admitted caller of the call being served."""

    name: str
    role: int
    method: str  # "<package>.<Service>/<Method>"
    reason: str  # x-crm-reason, "" when not given

    @property
    def role_name(self) -> str:
        return ROLE_NAMES[self.role]

    @property
    def sees_personal_data(self) -> bool:
        return self.role in SEES_PERSONAL_DATA


_caller: ContextVar[Caller | None] = ContextVar("crm_caller", default=None)


def caller() -> Caller:
    """Who makes the call being served (set by the interceptor before the servicer runs)."""
    found = _caller.get()
    if found is None:
        raise RuntimeError("no caller: only a call admitted by the interceptor has one")
    return found


def current_caller() -> Caller | None:
    return _caller.get()


def admitted(found: Caller) -> Caller:
    """Make ``found`` the caller of the call being served (what ``admit`` does last)."""
    _caller.set(found)
    return found


class AccessControl:
    """Admits or refuses each call; ``rules`` says what a method allows (default: what its proto
    declares)."""

    def __init__(
        self,
        tokens: TokenTable,
        rules: Callable[[str, str], Rule | None] = declared_rule,
    ) -> None:
        self.tokens, self.rules = tokens, rules

    def rule(self, service: str, method: str) -> Rule | None:
        return self.rules(service, method)

    def admit(
        self, metadata: Mapping[str, str], rule: Rule | None, service: str, method: str
    ) -> Caller:
        header = metadata.get("authorization", "")
        if not header:
            raise ge.Unauthenticated(
                "TOKEN_MISSING", "send the metadata `authorization: Bearer <token>`"
            )
        scheme, _, token = header.strip().partition(" ")
        entry = self.tokens.authenticate(token.strip()) if scheme.lower() == "bearer" else None
        if entry is None:
            raise ge.Unauthenticated("TOKEN_INVALID", "the bearer token is not valid here")
        full = f"{service}/{method}"
        if rule is None or entry.role not in rule.roles:
            allowed = sorted(ROLE_NAMES[r] for r in (rule.roles if rule else ()) if r in ROLE_NAMES)
            raise ge.PermissionDenied(
                "ROLE_NOT_ALLOWED",
                f"role {entry.role_name} may not call {method}",
                metadata={"role": entry.role_name, "method": full, "allowed": ",".join(allowed)},
            )
        reason = metadata.get(REASON_HEADER, "").strip()[:MAX_REASON]
        if rule.personal_data and entry.role == OPERATOR and not reason:
            raise ge.InvalidArgument(
                "REASON_REQUIRED",
                f"{method} returns personal data: say why in the metadata `{REASON_HEADER}`",
                metadata={"method": full},
                violations=[(REASON_HEADER, "required for operators")],
            )
        return admitted(Caller(entry.name, entry.role, full, reason))


def roles_of(names: Sequence[str]) -> frozenset[int]:
    """Role numbers from their names (tests, probes)."""
    return frozenset(ROLES[n] for n in names)
