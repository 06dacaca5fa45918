"""Errors as google.rpc.Status with one ErrorInfo (and BadRequest field violations).

A status travels in the response trailers, which gRPC limits to 16 KiB: a status that quotes
a huge input would be replaced by RESOURCE_EXHAUSTED without details. So every text is cut to a
bound here, whatever the caller put in it: the message, each violation and metadata value, and
the number of violations and metadata entries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from shared.domain import errors as de

MAX_MESSAGE = 512
MAX_TEXT = 256  # a violation's description, a metadata value
MAX_NAME = 128  # a field path, a metadata key
MAX_ENTRIES = 16  # violations, metadata entries


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, with an ellipsis when it was longer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ServiceError(Exception):
    """Raised anywhere below the servicer; the interceptor turns it into a rich status."""

    code = grpc.StatusCode.INTERNAL

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        domain: str = "",  # empty: the interceptor fills in the service's own domain
        metadata: Mapping[str, str] | None = None,
        violations: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.domain = domain
        self.metadata = dict(metadata or {})
        self.violations = list(violations)

    def to_status(self) -> status_pb2.Status:
        metadata = {
            clip(k, MAX_NAME): clip(v, MAX_TEXT)
            for k, v in list(self.metadata.items())[:MAX_ENTRIES]
        }
        info = error_details_pb2.ErrorInfo(
            reason=clip(self.reason, MAX_NAME), domain=self.domain or "crm", metadata=metadata
        )
        details = [_pack(info)]
        if self.violations:
            bad = error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=clip(f, MAX_NAME), description=clip(d, MAX_TEXT)
                    )
                    for f, d in self.violations[:MAX_ENTRIES]
                ]
            )
            details.append(_pack(bad))
        message = clip(self.message, MAX_MESSAGE)
        if len(self.violations) > MAX_ENTRIES:
            message += f" ({len(self.violations) - MAX_ENTRIES} more violations not listed)"
        return status_pb2.Status(
            code=getattr(code_pb2, self.code.name), message=message, details=details
        )


def _pack(msg: object) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(msg)  # type: ignore[arg-type]
    return a


class InvalidArgument(ServiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ServiceError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(ServiceError):
    code = grpc.StatusCode.ABORTED


class Unavailable(ServiceError):
    code = grpc.StatusCode.UNAVAILABLE


class ResourceExhausted(ServiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class DeadlineExceeded(ServiceError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Internal(ServiceError):
    code = grpc.StatusCode.INTERNAL


class Unauthenticated(ServiceError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(ServiceError):
    code = grpc.StatusCode.PERMISSION_DENIED


_FROM_DOMAIN: list[tuple[type[de.DomainError], type[ServiceError]]] = [
    (de.NotFound, NotFound),
    (de.Conflict, AlreadyExists),
    (de.StaleEtag, Aborted),
    (de.Precondition, FailedPrecondition),
]


def from_domain(e: de.DomainError) -> ServiceError:
    """The status of a domain error (the interceptor fills in the service's ErrorInfo domain)."""
    if isinstance(e, de.Invalid):
        return InvalidArgument(e.reason, e.message, violations=[(f, d) for f, _, d in e.violations])
    for domain_kind, kind in _FROM_DOMAIN:
        if isinstance(e, domain_kind):
            return kind(e.reason, e.message, metadata=e.metadata)
    return FailedPrecondition(e.reason, e.message, metadata=e.metadata)


def error_info(status: status_pb2.Status) -> error_details_pb2.ErrorInfo | None:
    """The ErrorInfo detail of a status (clients and tests use this)."""
    for d in status.details:
        if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            d.Unpack(info)
            return info
    return None


def field_violations(status: status_pb2.Status) -> list[str]:
    for d in status.details:
        if d.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            d.Unpack(bad)
            return [v.field for v in bad.field_violations]
    return []
