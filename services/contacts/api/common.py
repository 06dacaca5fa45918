"""Helpers both contacts servicers share: argument checks, event metadata, error mapping."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import structlog

from services.contacts.domain import errors as de
from shared.grpckit import errors as ge

DOMAIN = "contacts.crm"
MAX_REQUEST_ID = 128
MAX_PAGE = 1000
DEFAULT_PAGE = 100
T = TypeVar("T")


def invalid(field: str, reason: str, message: str) -> ge.InvalidArgument:
    return ge.InvalidArgument(
        reason, f"{field}: {message}", domain=DOMAIN, violations=[(field, message)]
    )


def contact_id(value: str, field: str = "contact_id") -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise invalid(field, "INVALID_CONTACT_ID", "must be a UUID") from None


def request_id(value: str) -> str:
    if len(value) > MAX_REQUEST_ID:
        raise invalid("request_id", "INVALID_REQUEST_ID", f"at most {MAX_REQUEST_ID} characters")
    return value


def page_size(value: int) -> int:
    if value < 0 or value > MAX_PAGE:
        raise invalid("page_size", "INVALID_PAGE_SIZE", f"must be 0..{MAX_PAGE}")
    return value or DEFAULT_PAGE


def meta(request_id: str, context: grpc.aio.ServicerContext) -> dict[str, Any]:
    """The metadata every event of this call carries."""
    md = dict(context.invocation_metadata() or ())
    bound = structlog.contextvars.get_contextvars()
    return {
        "schema": 1,
        "request_id": request_id,
        "correlation_id": bound.get("correlation_id", ""),
        "actor": md.get("x-actor", ""),
        "traceparent": md.get("traceparent", ""),
    }


async def domain_call(call: Callable[[], Awaitable[T]]) -> T:
    """Run an application call, translating domain errors into rich gRPC statuses."""
    try:
        return await call()
    except de.Invalid as e:
        violations = [(f, d) for f, _, d in e.violations]
        raise ge.InvalidArgument(
            e.reason, e.message, domain=DOMAIN, violations=violations
        ) from None
    except de.NotFound as e:
        raise ge.NotFound(e.reason, e.message, domain=DOMAIN, metadata=e.metadata) from None
    except de.Conflict as e:
        raise ge.AlreadyExists(e.reason, e.message, domain=DOMAIN, metadata=e.metadata) from None
    except de.StaleEtag as e:
        raise ge.Aborted(e.reason, e.message, domain=DOMAIN, metadata=e.metadata) from None
    except de.Precondition as e:
        raise ge.FailedPrecondition(
            e.reason, e.message, domain=DOMAIN, metadata=e.metadata
        ) from None
