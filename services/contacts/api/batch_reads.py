"""The bulk reads of ContactsService, for other services: many contacts in one call, each read
of personal data disclosed once for the whole call through the audit (servicer.py)."""

from __future__ import annotations

import grpc

from crm.contacts.v1 import contacts_pb2 as pb
from services.contacts.api.common import DOMAIN, batch_ids
from services.contacts.api.common import contact_id as _contact_id
from services.contacts.api.contact_responses import contact_pb, personal_ids
from services.contacts.application.commands import ContactCommands
from services.contacts.application.current_contacts import current_many
from services.contacts.application.queries import ContactQueries
from shared.grpckit import errors as ge


class ContactBatchReads:
    """BatchGetContacts and BatchGetContactVersions, for the ContactsService servicer."""

    @property
    def commands(self) -> ContactCommands:
        raise NotImplementedError

    @property
    def queries(self) -> ContactQueries:
        raise NotImplementedError

    async def disclose(self, contact_ids: list[str]) -> bool:
        raise NotImplementedError

    async def BatchGetContacts(
        self, request: pb.BatchGetContactsRequest, context: grpc.aio.ServicerContext
    ) -> pb.BatchGetContactsResponse:
        ids = batch_ids(request.contact_ids)
        found = await current_many(self.queries, self.commands, ids)
        shown = await self.disclose(personal_ids([found[cid] for cid in ids if cid in found]))
        out = pb.BatchGetContactsResponse(missing=[cid for cid in ids if cid not in found])
        for cid in ids:
            if cid in found:
                out.contacts.add(requested_contact_id=cid, contact=contact_pb(found[cid], shown))
        return out

    async def BatchGetContactVersions(
        self, request: pb.BatchGetContactVersionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.BatchGetContactVersionsResponse:
        refs = []
        for i, ref in enumerate(request.refs):
            cid = _contact_id(ref.contact_id, f"refs[{i}].contact_id")
            if ref.version < 0:
                raise ge.InvalidArgument(
                    "INVALID_VERSION",
                    "a version is 0 or more",
                    domain=DOMAIN,
                    violations=[(f"refs[{i}].version", "must be >= 0")],
                )
            refs.append((cid, ref.version))
        out = pb.BatchGetContactVersionsResponse()
        found = []
        for cid, version, contact in await self.commands.load_versions(refs):
            if contact is None:
                out.missing.add(contact_id=cid, version=version)
            else:
                found.append(contact)
        shown = await self.disclose(personal_ids(found))
        out.contacts.extend(contact_pb(c, shown) for c in found)
        return out
