"""The gRPC adapter: protobuf in, domain calls, protobuf out. No business rules here.

Requests are read in contact_requests.py, responses written in contact_responses.py; the bulk
reads are in batch_reads.py, the history reads in history.py. Every read
that answers with personal data asks the audit first (``disclose``: recorded, or redacted for
an auditor); writes are recorded by their own events."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc

from crm.contacts.v1 import contacts_pb2 as pb
from crm.contacts.v1 import contacts_pb2_grpc as pb_grpc
from services.contacts.api.batch_reads import ContactBatchReads
from services.contacts.api.common import DOMAIN, LIMITS, MAX_IMPORT_BATCH, page_size
from services.contacts.api.common import contact_id as _contact_id
from services.contacts.api.common import meta as _meta
from services.contacts.api.contact_requests import (
    import_fields,
    normalised,
    profile_in,
)
from services.contacts.api.contact_responses import (
    contact_pb,
    import_response,
    personal_ids,
)
from services.contacts.api.history import ContactHistory
from services.contacts.application.commands import ContactCommands
from services.contacts.application.current_contacts import survivor
from services.contacts.application.importer import ContactImporter, ImportReport, ImportRow
from services.contacts.application.queries import (
    ContactQueries,
    ListFilter,
    decode_token,
    encode_token,
)
from services.contacts.domain.contact import Contact, decide_archive, decide_restore
from shared.grpckit import calls
from shared.grpckit import errors as ge
from shared.grpckit.audit import PersonalDataAudit
from shared.grpckit.limits import enforced

MAX_DUPLICATE_PAGE = 100


@enforced(DOMAIN, LIMITS, pb.DESCRIPTOR.services_by_name["ContactsService"])
class ContactsServicer(ContactHistory, ContactBatchReads, pb_grpc.ContactsServiceServicer):
    """Registered before the server starts (gRPC requires it); ``bind`` gives it its
    dependencies once the database is ready. Until then every call is UNAVAILABLE."""

    def __init__(self) -> None:
        self._commands: ContactCommands | None = None
        self._queries: ContactQueries | None = None
        self._importer: ContactImporter | None = None
        self._audit: PersonalDataAudit | None = None

    def bind(
        self,
        commands: ContactCommands,
        queries: ContactQueries,
        importer: ContactImporter | None = None,
        audit: PersonalDataAudit | None = None,
    ) -> None:
        self._commands, self._queries, self._importer = commands, queries, importer
        self._audit = audit or PersonalDataAudit(commands.store)

    async def disclose(self, contact_ids: list[str]) -> bool:
        """Record the read of these contacts' personal data, or (False) redact it."""
        if self._audit is None:
            raise ge.Unavailable("NOT_READY", "starting up; retry", domain=DOMAIN)
        return await self._audit.disclose(contact_ids)

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
        rid = request.request_id
        contact = await self.commands.register(
            profile_in(request), request_id=rid, meta=_meta(rid, context)
        )
        return pb.RegisterContactResponse(contact=contact_pb(contact))

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
        contact = await self._survivor(contact)
        shown = await self.disclose(personal_ids([contact]))
        return pb.GetContactResponse(contact=contact_pb(contact, shown))

    async def UpdateContact(
        self, request: pb.UpdateContactRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateContactResponse:
        cid = _contact_id(request.contact.contact_id, "contact.contact_id")
        rid = request.request_id
        contact = await self.commands.update(
            cid,
            list(request.update_mask.paths),
            profile_in(request.contact),
            etag=request.etag,
            request_id=rid,
            meta=_meta(rid, context),
        )
        return pb.UpdateContactResponse(contact=contact_pb(contact))

    async def ListContacts(
        self, request: pb.ListContactsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListContactsResponse:
        size = page_size(request.page_size)
        f = ListFilter(
            include_archived=request.include_archived,
            tag=request.tag.strip().lower(),
            email=normalised("email", request.email),
            phone=normalised("phone", request.phone),
            external_id=normalised("external_id", request.external_id),
        )
        after = decode_token(request.page_token, f) if request.page_token else None
        rows = await self.queries.list(f, size + 1, after)
        token = encode_token(rows[size - 1].contact_id, f) if len(rows) > size else ""
        shown = await self.disclose(personal_ids(rows[:size]))
        return pb.ListContactsResponse(
            contacts=[contact_pb(c, shown) for c in rows[:size]], next_page_token=token
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
        value = normalised(kind, getattr(request, kind))
        contact = await self.queries.find(kind, value)
        if contact is None:
            raise ge.NotFound("CONTACT_NOT_FOUND", f"no contact with that {kind}", domain=DOMAIN)
        contact = await self._survivor(contact)
        shown = await self.disclose(personal_ids([contact]))
        return pb.FindContactResponse(contact=contact_pb(contact, shown))

    async def _survivor(self, contact: Contact) -> Contact:
        """A merged contact's lookups lead to the contact it was merged into."""
        return await survivor(self.queries, self.commands, contact)

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
        rid = request.request_id
        contact = await self.commands.merge(
            survivor, merged, request_id=rid, meta=_meta(rid, context)
        )
        return pb.MergeContactsResponse(survivor=contact_pb(contact))

    async def UnmergeContacts(
        self, request: pb.UnmergeContactsRequest, context: grpc.aio.ServicerContext
    ) -> pb.UnmergeContactsResponse:
        merged = _contact_id(request.merged_id, "merged_id")
        rid = request.request_id
        survivor, restored = await self.commands.unmerge(
            merged, request_id=rid, meta=_meta(rid, context)
        )
        return pb.UnmergeContactsResponse(
            survivor=contact_pb(survivor), restored=contact_pb(restored)
        )

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
            rows = [ImportRow(r.row_number, profile_in(r), import_fields(r)) for r in message.rows]
            await self._importer.import_batch(rows, report, meta)
        return import_response(report)

    async def ArchiveContact(
        self, request: pb.ArchiveContactRequest, context: grpc.aio.ServicerContext
    ) -> pb.ArchiveContactResponse:
        cid, rid = _contact_id(request.contact_id), request.request_id
        contact = await self.commands.change(
            cid,
            lambda s: decide_archive(s, request.reason),
            etag=request.etag,
            request_id=rid,
            meta=_meta(rid, context),
        )
        return pb.ArchiveContactResponse(contact=contact_pb(contact))

    async def RestoreContact(
        self, request: pb.RestoreContactRequest, context: grpc.aio.ServicerContext
    ) -> pb.RestoreContactResponse:
        cid, rid = _contact_id(request.contact_id), request.request_id
        contact = await self.commands.change(
            cid, decide_restore, etag=request.etag, request_id=rid, meta=_meta(rid, context)
        )
        return pb.RestoreContactResponse(contact=contact_pb(contact))

    async def EraseContact(
        self, request: pb.EraseContactRequest, context: grpc.aio.ServicerContext
    ) -> pb.EraseContactResponse:
        cid, rid = _contact_id(request.contact_id), request.request_id
        contact = await self.commands.erase(
            cid, request.reason, request_id=rid, meta=_meta(rid, context)
        )
        return pb.EraseContactResponse(contact=contact_pb(contact))
