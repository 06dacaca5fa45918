"""Domain values -> ContactsService messages: a contact, one event of its history, the report of
an import."""

from __future__ import annotations

import orjson
from google.protobuf import json_format

from crm.contacts.v1 import contacts_pb2 as pb
from services.contacts.adapters.keys import ERASED, SEALED, unseal
from services.contacts.application.importer import ImportReport
from services.contacts.domain.contact import Contact
from shared.eventstore import RecordedEvent
from shared.grpckit import calls


def contact_pb(c: Contact) -> pb.Contact:
    msg = pb.Contact(
        contact_id=c.contact_id,
        email=c.email,
        phone=c.phone,
        external_id=c.external_id,
        first_name=c.first_name,
        last_name=c.last_name,
        tags=list(c.tags),
        etag=str(c.version),
        locale=c.locale,
        time_zone=c.time_zone,
        archived=c.archived,
        erased=c.erased,
        merged_into=c.merged_into,
    )
    for name, value in c.attributes.items():
        json_format.ParseDict(dict(value), msg.attributes[name])
    if c.create_time:
        msg.create_time.CopyFrom(calls.timestamp(c.create_time))
    if c.update_time:
        msg.update_time.CopyFrom(calls.timestamp(c.update_time))
    return msg


def event_pb(e: RecordedEvent, key: bytes | None) -> pb.ContactEvent:
    """The event with its personal data unsealed by ``key`` (marked erased once it is gone)."""
    data, erased = unseal(key, e.data["contact_id"], e.data)
    if erased:
        data[SEALED] = ERASED
    msg = pb.ContactEvent(
        event_id=str(e.event_id),
        stream=e.stream,
        version=e.version,
        type=e.type,
        position=e.position,
        data_json=orjson.dumps(data).decode(),
        personal_data_erased=erased,
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
