"""What the next hop answered, as a delivery status (the contract: DeliveryStatus in
protos/crm/notifications/v1/delivery.proto). Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["sent", "retry", "rejected"]
MAX_DETAIL = 500


@dataclass(frozen=True, slots=True)
class Result:
    status: Status
    detail: str  # what the next hop said, never message content
    provider_id: str = ""


def clip(text: str) -> str:
    return " ".join(text.split())[:MAX_DETAIL]


def smtp_result(code: int, reply: bytes | str) -> Result:
    """2xx (250) sent; 4xx try again later; 5xx refused for good. Any other code (no answer,
    a protocol error) is treated as temporary."""
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    detail = clip(f"{code} {text}")
    if 200 <= code < 300:
        return Result("sent", detail)
    if 500 <= code < 600:
        return Result("rejected", detail)
    return Result("retry", detail)


def http_result(code: int, provider_id: str = "") -> Result:
    """2xx sent; 408, 429 and 5xx try again later; any other answer (4xx, and 1xx/3xx:
    redirects are not followed) refused for good."""
    detail = f"HTTP {code}"
    if 200 <= code < 300:
        return Result("sent", detail, provider_id)
    if code in (408, 429) or 500 <= code < 600:
        return Result("retry", detail)
    return Result("rejected", detail)


def unreachable(what: str, exc: BaseException) -> Result:
    """No answer: connection refused or reset, timeout, DNS. Temporary."""
    return Result("retry", clip(f"{what}: {type(exc).__name__}: {exc}"))


def refused(why: str) -> Result:
    """A message that cannot be sent as given (a bad address, a header that would inject
    another): retrying would not help."""
    return Result("rejected", clip(why))


def not_configured(why: str) -> Result:
    """This worker lacks a channel's settings: the operator's to fix, so try again later."""
    return Result("retry", clip(why))
