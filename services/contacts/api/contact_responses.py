"""Domain values -> ContactsService messages: a contact, one event of its history, the report of
an import. A caller whose role may not see personal data (auditors: shared/grpckit/audit.py)
gets the personal fields — those sealed in events (adapters/keys.py PERSONAL) — left out and
the message marked ``personal_data_redacted``."""

from __future__ import annotations

import orjson
from google.protobuf import json_format

from crm.contacts.v1 import contacts_pb2 as pb
from services.contacts.adapters.keys import ERASED, SEALED, unseal
from services.contacts.application.importer import ImportReport
from services.contacts.domain.contact import Contact
from shared.eventstore import RecordedEvent
from shared.grpckit import calls

REDACTED = "[redacted]"  # what an auditor sees in an event in place of its personal fields


def personal_ids(contacts: list[Contact]) -> list[str]:
    """The contacts whose answer holds personal data (an erased one holds none)."""
    return [c.contact_id for c in contacts if not c.erased]


def contact_pb(c: Contact, shown: bool = True) -> pb.Contact:
    """``shown``: with its personal fields; else without them, marked redacted."""
    msg = pb.Contact(
        contact_id=c.contact_id,
        tags=list(c.tags),
        etag=str(c.version),
        locale=c.locale,
        time_zone=c.time_zone,
        archived=c.archived,
        erased=c.erased,
        merged_into=c.merged_into,
    )
    if not shown:
        msg.personal_data_redacted = not c.erased
    else:
        msg.email, msg.phone, msg.external_id = c.email, c.phone, c.external_id
        msg.first_name, msg.last_name = c.first_name, c.last_name
        for name, value in c.attributes.items():
            json_format.ParseDict(dict(value), msg.attributes[name])
    if c.create_time:
        msg.create_time.CopyFrom(calls.timestamp(c.create_time))
    if c.update_time:
        msg.update_time.CopyFrom(calls.timestamp(c.update_time))
    return msg


def holds_personal_data(events: list[RecordedEvent], key: bytes | None) -> bool:
    """Whether answering ``events`` would decrypt personal data."""
    return key is not None and any(SEALED in e.data for e in events)


def event_pb(e: RecordedEvent, key: bytes | None, shown: bool = True) -> pb.ContactEvent:
    """The event with its personal data unsealed by ``key`` (marked erased once it is gone);
    not ``shown``: never unsealed, marked redacted."""
    redacted = not shown and SEALED in e.data
    if redacted:
        data, erased = {k: v for k, v in e.data.items() if k != SEALED}, key is None
    else:
        data, erased = unseal(key, e.data["contact_id"], e.data)
    if erased:
        data[SEALED] = ERASED
    elif redacted:
        data[SEALED] = REDACTED
    msg = pb.ContactEvent(
        event_id=str(e.event_id),
        stream=e.stream,
        version=e.version,
        type=e.type,
        position=e.position,
        data_json=orjson.dumps(data).decode(),
        personal_data_erased=erased,
        personal_data_redacted=redacted and not erased,
    )
    msg.recorded_at.CopyFrom(calls.timestamp(e.recorded_at))
    return msg


def import_response(report: ImportReport) -> pb.ImportContactsResponse:
    return pb.ImportContactsResponse(
        created=report.created,
        updated=report.updated,
        unchanged=report.unchanged,
        failed=report.failed,
        errors=[
            pb.ImportRowError(row_number=e.row, field=e.field, reason=e.reason, message=e.message)
            for e in sorted(report.errors, key=lambda e: e.row)
        ],
    )
