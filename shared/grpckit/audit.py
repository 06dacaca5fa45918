"""Reads of personal data, recorded (docs/architecture.md §5).

An RPC that declares ``personal_data`` (protos/crm/options/v1/options.proto) asks
``PersonalDataAudit.disclose(contact_ids)`` before it answers:

- the caller's role sees personal data (service, operator): one ``crm.audit.v1.PersonalDataRead``
  event is appended — who (token name and role), what (the RPC and the contacts), when, and why
  (``x-crm-reason``) — and only then is the answer sent; if the event cannot be written, the
  call fails and nothing is disclosed;
- any other role (auditor): nothing is recorded, and the servicer redacts the answer.

One event per call, whatever the number of contacts, each in a stream of its own
(``personaldataread-<event id>``): concurrent reads never contend for a stream version, and the
category reads them all in order.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import structlog
from google.protobuf import json_format

from crm.audit.v1 import events_pb2
from shared.domain.timestamps import timestamp_text
from shared.eventstore import EventStore, NewEvent, StreamState
from shared.grpckit import auth

CATEGORY = "personaldataread"
TYPE = "crm.audit.v1.PersonalDataRead"


def _now() -> datetime:
    return datetime.now(UTC)


class PersonalDataAudit:
    def __init__(self, store: EventStore, clock: Callable[[], datetime] = _now) -> None:
        self.store, self.clock = store, clock

    async def disclose(self, contact_ids: Iterable[str]) -> bool:
        """True when the caller may see the personal data of ``contact_ids`` (the read is
        recorded when there is any); False when the answer must be redacted."""
        who = auth.caller()
        if not who.sees_personal_data:
            return False
        ids = list(dict.fromkeys(i for i in contact_ids if i))
        if ids:
            await self.record(who, ids)
        return True

    async def record(self, who: auth.Caller, contact_ids: list[str]) -> None:
        message = events_pb2.PersonalDataRead(
            principal=who.name,
            role=who.role,  # type: ignore[arg-type]
            method=who.method,
            contact_ids=contact_ids,
            reason=who.reason,
        )
        data = json_format.MessageToDict(message, preserving_proto_field_name=True)
        data["read_time"] = timestamp_text(self.clock())
        bound = structlog.contextvars.get_contextvars()
        meta = {
            "schema": 1,
            "correlation_id": bound.get("correlation_id", ""),
            "request_id": bound.get("request_id", ""),
            "principal": who.name,
            "role": who.role_name,
        }
        event_id = uuid.uuid4()
        await self.store.append(
            f"{CATEGORY}-{event_id}",
            [NewEvent(TYPE, data, meta, event_id=event_id)],
            StreamState.NO_STREAM,
        )
