"""Assertions every service's API and contract tests share."""

from __future__ import annotations

from collections.abc import Awaitable
from types import ModuleType
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from grpc_status import rpc_status

from shared.events.envelope import decode_as
from shared.eventstore import RecordedEvent
from shared.grpckit.errors import error_info, field_violations


async def expect_error(
    call: Awaitable[Any], code: grpc.StatusCode, reason: str, domain: str
) -> list[str]:
    """Await ``call``: it must fail with ``code`` and one ErrorInfo (``reason``, ``domain``) and
    no stack trace in the message; return the BadRequest fields it names."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    err = info.value
    assert err.code() == code, err.details()
    status = rpc_status.from_call(err)
    assert status is not None, "the status must carry details"
    detail = error_info(status)
    assert detail is not None, err.details()
    assert (detail.reason, detail.domain) == (reason, domain), (detail, err.details())
    assert "Traceback" not in (err.details() or "")
    return field_violations(status)


def published_message(event: RecordedEvent, events_pb2: ModuleType) -> Message:
    """The stored event decoded as the message its type names in the service's published
    events proto, the way a consumer decodes it (shared.events.envelope: upcast, then strict
    decoding; raises on a type it does not define, unknown fields or wrong types)."""
    package, _, name = event.type.rpartition(".")
    assert package == events_pb2.DESCRIPTOR.package, event.type
    return decode_as(event, getattr(events_pb2, name)).message
