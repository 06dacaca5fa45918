"""The history reads of ContactsService: a contact's whole record (the access request) and its
events page by page. Personal data in them is disclosed through the audit (servicer.py)."""

from __future__ import annotations

import grpc

from crm.contacts.v1 import contacts_pb2 as pb
from services.contacts.api.common import DOMAIN, page_size
from services.contacts.api.common import contact_id as _contact_id
from services.contacts.api.contact_requests import encode_version_token, version_token
from services.contacts.api.contact_responses import contact_pb, event_pb, holds_personal_data
from services.contacts.application.commands import ContactCommands
from shared.grpckit import errors as ge


class ContactHistory:
    """ExportContactData and ListContactEvents, for the ContactsService servicer."""

    @property
    def commands(self) -> ContactCommands:
        raise NotImplementedError

    async def disclose(self, contact_ids: list[str]) -> bool:
        raise NotImplementedError

    async def ExportContactData(
        self, request: pb.ExportContactDataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExportContactDataResponse:
        cid = _contact_id(request.contact_id)
        events, key = await self.commands.history(cid)
        contact = self.commands.fold(events, key)
        if contact is None:
            raise ge.NotFound("CONTACT_NOT_FOUND", f"no contact {cid}", domain=DOMAIN)
        everything = [*events, *await self.commands.store.read_stream(f"consent-{cid}")]
        personal = not contact.erased or holds_personal_data(everything, key)
        shown = await self.disclose([cid] if personal else [])
        response = pb.ExportContactDataResponse(
            contact=contact_pb(contact, shown),
            events=[event_pb(e, key, shown) for e in everything],
        )
        response.export_time.GetCurrentTime()
        return response

    async def ListContactEvents(
        self, request: pb.ListContactEventsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListContactEventsResponse:
        cid = _contact_id(request.contact_id)
        size = page_size(request.page_size)
        start = version_token(request.page_token, cid) if request.page_token else 0
        events, key = await self.commands.history(cid)
        if not events:
            raise ge.NotFound("CONTACT_NOT_FOUND", f"no contact {cid}", domain=DOMAIN)
        page = [e for e in events if e.version >= start][: size + 1]
        token = ""
        if len(page) > size:
            token = encode_version_token(page[size].version, cid)
        page = page[:size]
        shown = await self.disclose([cid] if holds_personal_data(page, key) else [])
        return pb.ListContactEventsResponse(
            events=[event_pb(e, key, shown) for e in page], next_page_token=token
        )
