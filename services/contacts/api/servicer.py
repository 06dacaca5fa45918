"""The gRPC adapter: protobuf in, domain calls, protobuf out. No business rules here."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import orjson
from google.protobuf import json_format

from crm.contacts.v1 import contacts_pb2 as pb
from crm.contacts.v1 import contacts_pb2_grpc as pb_grpc
from services.contacts.adapters.keys import ERASED, SEALED, unseal
from services.contacts.api.common import DOMAIN, LIMITS, MAX_IMPORT_BATCH, page_size
from services.contacts.api.common import contact_id as _contact_id
from services.contacts.api.common import meta as _meta
from services.contacts.api.common import request_id as _request_id
from services.contacts.application.commands import ContactCommands
from services.contacts.application.importer import ContactImporter, ImportReport, ImportRow
from services.contacts.application.queries import (
    ContactQueries,
    ListFilter,
    decode_token,
    encode_token,
)
from services.contacts.domain.contact import (
    Contact,
    ProfileInput,
    decide_archive,
    decide_restore,
)
from services.contacts.domain.identity import NORMALISERS, BadIdentity
from shared.domain import paging
from shared.eventstore import RecordedEvent
from shared.grpckit import calls
from shared.grpckit import errors as ge
from shared.grpckit.limits import enforced

_IMPORTABLE = (
    "email",
    "phone",
    "external_id",
    "first_name",
    "last_name",
    "tags",
    "locale",
    "time_zone",
)


def to_pb(c: Contact) -> pb.Contact:
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


def _profile(m: Any) -> ProfileInput:
    return ProfileInput(
        email=m.email,
        phone=m.phone,
        external_id=m.external_id,
        first_name=m.first_name,
        last_name=m.last_name,
        tags=tuple(m.tags),
        locale=m.locale,
        time_zone=m.time_zone,
        attributes={
            k: json_format.MessageToDict(v, preserving_proto_field_name=True)
            for k, v in m.attributes.items()
        },
    )


MAX_DUPLICATE_PAGE = 100


@enforced(DOMAIN, LIMITS, pb.DESCRIPTOR.services_by_name["ContactsService"])
class ContactsServicer(pb_grpc.ContactsServiceServicer):
    """Registered before the server starts (gRPC requires it); ``bind`` gives it its
    dependencies once the database is ready. Until then every call is UNAVAILABLE."""

    def __init__(self) -> None:
        self._commands: ContactCommands | None = None
        self._queries: ContactQueries | None = None
        self._importer: ContactImporter | None = None

    def bind(
        self,
        commands: ContactCommands,
        queries: ContactQueries,
        importer: ContactImporter | None = None,
    ) -> None:
        self._commands, self._queries, self._importer = commands, queries, importer

    @property
    def commands(self) -> ContactCommands:
        if self._commands is None:
            raise ge.Unavailable("NOT_READY", "starting up; retry", domain=DOMAIN)
        return self._commands

    @property
    def queries(self) -> ContactQueries:
        if self._queries is None:
            raise ge.Unavailable("NOT_READY", "starting up; retry", domain=DOMAIN)
        return self._queries

    async def RegisterContact(
        self, request: pb.RegisterContactRequest, context: grpc.aio.ServicerContext
    ) -> pb.RegisterContactResponse:
        rid = _request_id(request.request_id)
        contact = await self.commands.register(
            _profile(request), request_id=rid, meta=_meta(rid, context)
        )
        return pb.RegisterContactResponse(contact=to_pb(contact))

    async def GetContact(
        self, request: pb.GetContactRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetContactResponse:
        cid = _contact_id(request.contact_id)
        if (as_of := calls.timestamp_arg(DOMAIN, request, "as_of")) is not None:
            contact = await self.commands.load(cid, as_of=as_of)
        else:
            # The read model may lag a just-registered contact by milliseconds: fall back to the
            # stream so a client can read what it just wrote.
            contact = await self.queries.get(cid) or await self.commands.load(cid)
        if contact is None:
            raise ge.NotFound(
                "CONTACT_NOT_FOUND",
                f"no contact {cid}",
                domain=DOMAIN,
                metadata={"contact_id": cid},
            )
        return pb.GetContactResponse(contact=to_pb(await self._survivor(contact)))

    async def UpdateContact(
        self, request: pb.UpdateContactRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateContactResponse:
        cid = _contact_id(request.contact.contact_id, "contact.contact_id")
        rid = _request_id(request.request_id)
        contact = await self.commands.update(
            cid,
            list(request.update_mask.paths),
            _profile(request.contact),
            etag=request.etag,
            request_id=rid,
            meta=_meta(rid, context),
        )
        return pb.UpdateContactResponse(contact=to_pb(contact))

    async def ListContacts(
        self, request: pb.ListContactsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListContactsResponse:
        size = page_size(request.page_size)
        f = ListFilter(
            include_archived=request.include_archived,
            tag=request.tag.strip().lower(),
            email=_normalised("email", request.email),
            phone=_normalised("phone", request.phone),
            external_id=_normalised("external_id", request.external_id),
        )
        after = decode_token(request.page_token, f) if request.page_token else None
        rows = await self.queries.list(f, size + 1, after)
        token = encode_token(rows[size - 1].contact_id, f) if len(rows) > size else ""
        return pb.ListContactsResponse(
            contacts=[to_pb(c) for c in rows[:size]], next_page_token=token
        )

    async def FindContact(
        self, request: pb.FindContactRequest, context: grpc.aio.ServicerContext
    ) -> pb.FindContactResponse:
        kind = request.WhichOneof("identity")
        if kind is None or not getattr(request, kind):
            raise ge.InvalidArgument(
                "IDENTITY_REQUIRED",
                "set one of email, phone, external_id",
                domain=DOMAIN,
                violations=[("identity", "required")],
            )
        value = _normalised(kind, getattr(request, kind))
        contact = await self.queries.find(kind, value)
        if contact is None:
            raise ge.NotFound("CONTACT_NOT_FOUND", f"no contact with that {kind}", domain=DOMAIN)
        return pb.FindContactResponse(contact=to_pb(await self._survivor(contact)))

    async def _survivor(self, contact: Contact) -> Contact:
        """A merged contact's lookups lead to the contact it was merged into."""
        for _ in range(8):  # merges can chain; 8 hops is far beyond any real chain
            if not contact.merged_into:
                return contact
            nxt = await self.queries.get(contact.merged_into) or await self.commands.load(
                contact.merged_into
            )
            if nxt is None:
                return contact
            contact = nxt
        return contact

    async def ListDuplicateCandidates(
        self, request: pb.ListDuplicateCandidatesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListDuplicateCandidatesResponse:
        # A self-join over the whole read model: a small page keeps one call cheap.
        rows = await self.queries.duplicate_candidates(
            page_size(request.page_size, MAX_DUPLICATE_PAGE)
        )
        return pb.ListDuplicateCandidatesResponse(
            candidates=[
                pb.DuplicateCandidate(contact_id=a, other_contact_id=b, reason=why)
                for a, b, why in rows
            ]
        )

    async def MergeContacts(
        self, request: pb.MergeContactsRequest, context: grpc.aio.ServicerContext
    ) -> pb.MergeContactsResponse:
        survivor = _contact_id(request.survivor_id, "survivor_id")
        merged = _contact_id(request.merged_id, "merged_id")
        rid = _request_id(request.request_id)
        contact = await self.commands.merge(
            survivor, merged, request_id=rid, meta=_meta(rid, context)
        )
        return pb.MergeContactsResponse(survivor=to_pb(contact))

    async def UnmergeContacts(
        self, request: pb.UnmergeContactsRequest, context: grpc.aio.ServicerContext
    ) -> pb.UnmergeContactsResponse:
        merged = _contact_id(request.merged_id, "merged_id")
        rid = _request_id(request.request_id)
        survivor, restored = await self.commands.unmerge(
            merged, request_id=rid, meta=_meta(rid, context)
        )
        return pb.UnmergeContactsResponse(survivor=to_pb(survivor), restored=to_pb(restored))

    async def ImportContacts(
        self,
        request_iterator: AsyncIterator[pb.ImportContactsRequest],
        context: grpc.aio.ServicerContext,
    ) -> pb.ImportContactsResponse:
        if self._importer is None:
            raise ge.FailedPrecondition(
                "IMPORT_UNSUPPORTED", "bulk import needs the PostgreSQL event store", domain=DOMAIN
            )
        report = ImportReport()
        meta = {**_meta("", context), "import_id": str(uuid.uuid4())}
        async for message in request_iterator:
            if len(message.rows) > MAX_IMPORT_BATCH:
                raise ge.InvalidArgument(
                    "TOO_MANY_ROWS",
                    f"at most {MAX_IMPORT_BATCH} rows per message",
                    domain=DOMAIN,
                    violations=[("rows", f"at most {MAX_IMPORT_BATCH}")],
                )
            rows = [ImportRow(r.row_number, _profile(r), _import_fields(r)) for r in message.rows]
            await self._importer.import_batch(rows, report, meta)
        return pb.ImportContactsResponse(
            created=report.created,
            updated=report.updated,
            unchanged=report.unchanged,
            failed=report.failed,
            errors=[
                pb.ImportRowError(
                    row_number=e.row, field=e.field, reason=e.reason, message=e.message
                )
                for e in sorted(report.errors, key=lambda e: e.row)
            ],
        )

    async def ArchiveContact(
        self, request: pb.ArchiveContactRequest, context: grpc.aio.ServicerContext
    ) -> pb.ArchiveContactResponse:
        cid, rid = _contact_id(request.contact_id), _request_id(request.request_id)
        contact = await self.commands.change(
            cid,
            lambda s: decide_archive(s, request.reason),
            etag=request.etag,
            request_id=rid,
            meta=_meta(rid, context),
        )
        return pb.ArchiveContactResponse(contact=to_pb(contact))

    async def RestoreContact(
        self, request: pb.RestoreContactRequest, context: grpc.aio.ServicerContext
    ) -> pb.RestoreContactResponse:
        cid, rid = _contact_id(request.contact_id), _request_id(request.request_id)
        contact = await self.commands.change(
            cid, decide_restore, etag=request.etag, request_id=rid, meta=_meta(rid, context)
        )
        return pb.RestoreContactResponse(contact=to_pb(contact))

    async def EraseContact(
        self, request: pb.EraseContactRequest, context: grpc.aio.ServicerContext
    ) -> pb.EraseContactResponse:
        cid, rid = _contact_id(request.contact_id), _request_id(request.request_id)
        contact = await self.commands.erase(
            cid, request.reason, request_id=rid, meta=_meta(rid, context)
        )
        return pb.EraseContactResponse(contact=to_pb(contact))

    async def ExportContactData(
        self, request: pb.ExportContactDataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExportContactDataResponse:
        cid = _contact_id(request.contact_id)
        events, key = await self.commands.history(cid)
        contact = self.commands.fold(events, key)
        if contact is None:
            raise ge.NotFound("CONTACT_NOT_FOUND", f"no contact {cid}", domain=DOMAIN)
        consent = await self.commands.store.read_stream(f"consent-{cid}")
        response = pb.ExportContactDataResponse(
            contact=to_pb(contact), events=[_event_pb(e, key) for e in [*events, *consent]]
        )
        response.export_time.GetCurrentTime()
        return response

    async def ListContactEvents(
        self, request: pb.ListContactEventsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListContactEventsResponse:
        cid = _contact_id(request.contact_id)
        size = page_size(request.page_size)
        start = _version_token(request.page_token, cid) if request.page_token else 0
        events, key = await self.commands.history(cid)
        if not events:
            raise ge.NotFound("CONTACT_NOT_FOUND", f"no contact {cid}", domain=DOMAIN)
        page = [e for e in events if e.version >= start][: size + 1]
        token = ""
        if len(page) > size:
            token = _encode_version_token(page[size].version, cid)
        return pb.ListContactEventsResponse(
            events=[_event_pb(e, key) for e in page[:size]], next_page_token=token
        )


def _import_fields(r: pb.ImportRow) -> tuple[str, ...]:
    """The fields an import row sets: the non-empty ones (attributes one by one, merged)."""
    plain = [f for f in _IMPORTABLE if getattr(r, f)]
    return (*plain, *(f"attributes.{k}" for k in r.attributes))


def _event_pb(e: RecordedEvent, key: bytes | None) -> pb.ContactEvent:
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


def _encode_version_token(version: int, contact_id: str) -> str:
    return paging.encode_token(version, f"events|{contact_id}")


def _version_token(token: str, contact_id: str) -> int:
    version = paging.decode_token(token, f"events|{contact_id}")
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise calls.invalid(DOMAIN, "page_token", "INVALID_PAGE_TOKEN", "not a page token")
    return version


def _normalised(kind: str, value: str) -> str:
    if not value:
        return ""
    try:
        return NORMALISERS[kind](value)
    except BadIdentity as exc:
        raise ge.InvalidArgument(
            f"INVALID_{kind.upper()}",
            f"{kind}: {exc}",
            domain=DOMAIN,
            violations=[(kind, str(exc))],
        ) from None
