"""What another service's gRPC errors become for the caller (shared/grpckit/upstream.py)."""

from __future__ import annotations

import grpc
import pytest
from grpc_status import rpc_status

from shared.domain.errors import Conflict, Invalid, NotFound, Precondition
from shared.grpckit import errors as ge
from shared.grpckit.upstream import Upstream, reason_of

CONTACTS = Upstream("contacts", "orders.crm")


def upstream_error(err: ge.ServiceError) -> grpc.aio.AioRpcError:
    """The error a stub raises when the other service answered with ``err``."""
    status = rpc_status.to_status(err.to_status())
    return grpc.aio.AioRpcError(
        status.code,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(*status.trailing_metadata),
        details=status.details,
    )


def test_the_upstream_reason_and_metadata_are_read() -> None:
    err = upstream_error(ge.AlreadyExists("IDENTITY_TAKEN", "taken", metadata={"contact_id": "c"}))
    assert reason_of(err) == ("IDENTITY_TAKEN", {"contact_id": "c"})


@pytest.mark.parametrize(
    ("upstream", "ours", "reason"),
    [
        (ge.InvalidArgument("INVALID_EMAIL", "bad"), Invalid, "INVALID_EMAIL"),
        (ge.NotFound("CONTACT_NOT_FOUND", "none"), NotFound, "CONTACT_NOT_FOUND"),
        (ge.AlreadyExists("IDENTITY_TAKEN", "taken"), Conflict, "IDENTITY_TAKEN"),
        (ge.FailedPrecondition("CONTACT_ERASED", "gone"), Precondition, "CONTACT_ERASED"),
    ],
)
def test_a_refusal_stays_a_refusal_with_the_upstream_reason(
    upstream: ge.ServiceError, ours: type[Exception], reason: str
) -> None:
    mapped = CONTACTS.error(upstream_error(upstream), "customer.email", "resolve the customer")
    assert isinstance(mapped, ours)
    assert mapped.reason == reason  # type: ignore[attr-defined]
    if isinstance(mapped, Invalid):
        assert mapped.violations[0][:2] == ("customer.email", "INVALID_EMAIL")


@pytest.mark.parametrize(
    "upstream",
    [
        ge.Unavailable("DATABASE_UNAVAILABLE", "away"),
        ge.Internal("INTERNAL", "bug; quote error id 123"),
        ge.ResourceExhausted("TOO_MANY_REQUESTS", "busy"),
    ],
)
def test_anything_else_is_unavailable_in_our_domain(upstream: ge.ServiceError) -> None:
    mapped = CONTACTS.error(upstream_error(upstream), "customer.email", "resolve the customer")
    assert isinstance(mapped, ge.Unavailable)
    assert (mapped.reason, mapped.domain) == ("CONTACTS_UNAVAILABLE", "orders.crm")
    assert "quote error id" not in mapped.message  # never the upstream's words as ours
