"""Calls to another service: what its gRPC errors mean to the caller (docs/architecture.md,
"Calling another service").

A service that calls another answers its own callers in its own terms. ``Upstream.error``
turns the other service's status into one of ours: a refusal about the caller's input stays a
refusal (INVALID_ARGUMENT on the field the caller named, NOT_FOUND, ALREADY_EXISTS,
FAILED_PRECONDITION with the upstream reason and metadata), everything else (the other service
away, overloaded, too slow, or broken) is UNAVAILABLE with "<UPSTREAM>_UNAVAILABLE", so the
caller retries later, never INTERNAL, and never the upstream's message as ours. An upstream
that refuses our own credentials (UNAUTHENTICATED, PERMISSION_DENIED: CRM_SERVICE_TOKEN unset,
wrong or rotated away) is UNAVAILABLE too, and logged as an error: an operator must act.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import structlog
from grpc_status import rpc_status

from shared.domain.errors import Conflict, DomainError, Invalid, NotFound, Precondition
from shared.grpckit import errors as ge

log = structlog.get_logger(__name__)


def reason_of(err: grpc.aio.AioRpcError) -> tuple[str, dict[str, str]]:
    """The upstream ErrorInfo's reason and metadata ("" and {} when it sent none)."""
    status = rpc_status.from_call(err)
    info = ge.error_info(status) if status is not None else None
    return (info.reason, dict(info.metadata)) if info is not None else ("", {})


@dataclass(frozen=True)
class Upstream:
    name: str  # the called service, e.g. "contacts"
    domain: str  # our ErrorInfo domain, e.g. "orders.crm"

    def error(self, err: grpc.aio.AioRpcError, field: str, doing: str) -> Exception:
        """Our error for ``err``, met while ``doing`` (e.g. "resolve the customer") with the
        caller's ``field``."""
        reason, metadata = reason_of(err)
        code = err.code()
        refusal: DomainError | None = None
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            refusal = Invalid([(field, reason or "INVALID_ARGUMENT", err.details() or "invalid")])
        elif code == grpc.StatusCode.NOT_FOUND:
            refusal = NotFound(
                reason or "NOT_FOUND", f"{self.name}: {doing}: not found", **metadata
            )
        elif code == grpc.StatusCode.ALREADY_EXISTS:
            refusal = Conflict(
                reason or "ALREADY_EXISTS", f"{self.name}: {doing}: exists", **metadata
            )
        elif code == grpc.StatusCode.FAILED_PRECONDITION:
            refusal = Precondition(
                reason or "FAILED_PRECONDITION", f"{self.name}: {doing}: refused", **metadata
            )
        if refusal is not None:
            return refusal
        if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            log.error(
                "upstream.refused_credentials", upstream=self.name, code=code.name, reason=reason
            )
        return ge.Unavailable(
            f"{self.name.upper()}_UNAVAILABLE",
            f"the {self.name} service could not {doing} ({code.name}); retry later",
            domain=self.domain,
            metadata={"upstream_code": code.name},
        )
