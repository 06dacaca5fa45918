"""Domain errors shared by every service; the gRPC interceptor maps them to statuses
(shared/grpckit/errors.from_domain)."""

from __future__ import annotations

QUOTE = 32  # characters of an offending value an error text may quote


def quote(value: object, limit: int = QUOTE) -> str:
    """An offending value for an error text: repr of at most ``limit`` characters, then "…",
    so an error stays small however large the input was."""
    text = str(value)
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "…"


class DomainError(Exception):
    def __init__(self, reason: str, message: str, **metadata: str) -> None:
        super().__init__(message)
        self.reason, self.message, self.metadata = reason, message, metadata


class Invalid(DomainError):
    """Bad input. ``violations`` lists (field, description) pairs."""

    def __init__(self, violations: list[tuple[str, str, str]]) -> None:
        # each violation: (field, reason, description)
        self.violations = violations
        field, reason, desc = violations[0]
        super().__init__(
            reason,
            f"{field}: {desc}" + (f" (+{len(violations) - 1} more)" if len(violations) > 1 else ""),
        )


class NotFound(DomainError):
    pass


class Conflict(DomainError):
    """Something unique is already held (an identity, an id)."""


class StaleEtag(DomainError):
    pass


class Precondition(DomainError):
    """The aggregate is in a state that forbids the command (archived, erased, shipped…)."""
