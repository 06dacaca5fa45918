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

from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass

from google.protobuf import descriptor_pool

from crm.options.v1 import options_pb2
from shared.grpckit import errors as ge
from shared.tokens import (  # the table itself is pure (shared/tokens.py); re-exported here
    AUDITOR,
    OPERATOR,
    ROLE_NAMES,
    ROLES,
    SEES_PERSONAL_DATA,
    SERVICE,
    Token,
    TokenTable,
    TokenTableError,
    hash_token,
    new_token,
    parse_tokens,
    table_line,
)

__all__ = [
    "AUDITOR",
    "OPERATOR",
    "ROLES",
    "ROLE_NAMES",
    "SEES_PERSONAL_DATA",
    "SERVICE",
    "AccessControl",
    "Caller",
    "Rule",
    "Token",
    "TokenTable",
    "TokenTableError",
    "caller",
    "current_caller",
    "declared_rule",
    "hash_token",
    "new_token",
    "parse_tokens",
    "roles_of",
    "table_line",
]

REASON_HEADER = "x-crm-reason"
MAX_REASON = 500


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
