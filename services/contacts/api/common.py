"""The contacts servicers' request helpers: shared/grpckit/calls.py bound to this domain."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from shared.grpckit import calls
from shared.grpckit import errors as ge

DOMAIN = "contacts.crm"
T = TypeVar("T")


def invalid(field: str, reason: str, message: str) -> ge.InvalidArgument:
    return calls.invalid(DOMAIN, field, reason, message)


def contact_id(value: str, field: str = "contact_id") -> str:
    return calls.uuid_arg(DOMAIN, value, field, "INVALID_CONTACT_ID")


def request_id(value: str) -> str:
    return calls.request_id(DOMAIN, value)


def page_size(value: int) -> int:
    return calls.page_size(DOMAIN, value)


def meta(request_id: str, context: grpc.aio.ServicerContext) -> dict[str, Any]:
    return calls.event_meta(request_id, context)


async def domain_call(call: Callable[[], Awaitable[T]]) -> T:
    return await calls.domain_call(DOMAIN, call)
