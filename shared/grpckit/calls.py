"""Request helpers every servicer shares: argument checks and event metadata. (Domain errors
need no mapping here: servicers let them through and the interceptor maps them.)

Each takes the service's ErrorInfo ``domain`` (e.g. "orders.crm") so errors name their origin.
"""

from __future__ import annotations

import hashlib
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Any, overload

import grpc
import structlog
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from shared.application.commands import FINGERPRINT
from shared.grpckit import auth
from shared.grpckit import errors as ge

MAX_PAGE = 1000
DEFAULT_PAGE = 100


def invalid(domain: str, field: str, reason: str, message: str) -> ge.InvalidArgument:
    return ge.InvalidArgument(
        reason, f"{field}: {message}", domain=domain, violations=[(field, message)]
    )


def uuid_arg(domain: str, value: str, field: str, reason: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise invalid(domain, field, reason, "must be a UUID") from None


def required_uuid(domain: str, value: str, field: str, reason: str) -> str:
    """A required UUID argument: missing or malformed is INVALID_ARGUMENT ``reason``."""
    if not value:
        raise invalid(domain, field, reason, "required")
    return uuid_arg(domain, value, field, reason)


def page_size(domain: str, value: int, most: int = MAX_PAGE) -> int:
    """A page size in 0..``most`` (0: the default, at most ``most``)."""
    if value < 0 or value > most:
        raise invalid(domain, "page_size", "INVALID_PAGE_SIZE", f"must be 0..{most}")
    return value or min(DEFAULT_PAGE, most)


# The fingerprint of the request being served (set by the interceptor when it has a request id):
# a request id reused by a different request is told from a retry by it.
request_fingerprint: ContextVar[str] = ContextVar("request_fingerprint", default="")


def fingerprint(request: Message) -> str:
    return hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()[:32]


def event_meta(request_id: str, context: grpc.aio.ServicerContext | None) -> dict[str, Any]:
    """The metadata every event of this call carries."""
    md = dict((context.invocation_metadata() or ()) if context is not None else ())
    bound = structlog.contextvars.get_contextvars()
    meta = {
        "schema": 1,
        "request_id": request_id,
        "correlation_id": bound.get("correlation_id", ""),
        "actor": md.get("x-actor", ""),
        "traceparent": md.get("traceparent", ""),
    }
    if request_id and (fp := request_fingerprint.get()):
        meta[FINGERPRINT] = fp
    if (who := auth.current_caller()) is not None:  # authenticated, unlike x-actor
        meta["principal"], meta["role"] = who.name, who.role_name
    return meta


@overload
def timestamp(at: datetime) -> Timestamp: ...
@overload
def timestamp(at: datetime | None) -> Timestamp | None: ...
def timestamp(at: datetime | None) -> Timestamp | None:
    """A protobuf Timestamp for an aware datetime (None stays None: the field stays unset)."""
    if at is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(at)
    return ts


def timestamp_arg(
    domain: str,
    msg: Any,
    name: str,
    *,
    earliest: datetime | None = None,
    ahead: timedelta | None = None,
) -> datetime | None:
    """Request field ``name`` as an aware datetime, None when unset. A Timestamp outside
    0001..9999 or with nanos outside 0..10^9-1 is INVALID_ARGUMENT (INVALID_<NAME>), as is one
    before ``earliest`` or more than ``ahead`` after now (a business time's sane range)."""
    if not msg.HasField(name):
        return None
    ts = getattr(msg, name)
    reason = f"INVALID_{name.upper()}"
    if not 0 <= ts.nanos < 1_000_000_000:
        raise invalid(domain, name, reason, "nanos must be 0..999999999")
    try:
        at: datetime = ts.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise invalid(domain, name, reason, "not a valid timestamp") from None
    if earliest is not None and at < earliest:
        raise invalid(domain, name, reason, f"must not be before {earliest.isoformat()}")
    if ahead is not None and at > datetime.now(UTC) + ahead:
        raise invalid(domain, name, reason, f"must not be more than {ahead} in the future")
    return at
