"""The personal facts segmentation keeps (email domain, custom attributes), read from the
contacts service as of the contact event being processed: contacts' events carry personal
fields sealed with the contact's key, so only contacts can open them, and only the version the
event produced gives the facts that event stands for (a later read could be wrong forever)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC

import grpc

from crm.contacts.v1 import contacts_pb2 as cpb
from crm.contacts.v1 import contacts_pb2_grpc as cpb_grpc
from services.segmentation.application.ports import PersonalFacts
from shared.grpckit.client import ClientTls, bearer, open_channel
from shared.grpckit.upstream import Upstream

CONTACTS = Upstream("contacts", "segmentation.crm")
BATCH = 500  # the most BatchGetContactVersions takes
TIMEOUT = 10.0


def personal_facts(contact: cpb.Contact) -> PersonalFacts:
    """Only what rules use: the email's domain and the typed attributes."""
    attributes: dict[str, object] = {}
    for name, value in contact.attributes.items():
        kind = value.WhichOneof("value")
        if kind == "string_value":
            attributes[name] = value.string_value
        elif kind == "number_value":
            attributes[name] = value.number_value
        elif kind == "bool_value":
            attributes[name] = value.bool_value
        elif kind == "timestamp_value":
            attributes[name] = value.timestamp_value.ToDatetime(tzinfo=UTC)
    domain = contact.email.rpartition("@")[2].lower() if "@" in contact.email else ""
    return PersonalFacts(email_domain=domain, attributes=attributes)  # type: ignore[arg-type]


class GrpcContactVersions:
    def __init__(self, target: str, token: str, tls: ClientTls | None = None) -> None:
        self.channel = open_channel(target, tls)
        self.stub = cpb_grpc.ContactsServiceStub(self.channel)
        self.auth = bearer(token)  # segmentation's service token (BatchGetContactVersions)

    async def personal(
        self, refs: Sequence[tuple[str, int]]
    ) -> dict[tuple[str, int], PersonalFacts]:
        """Each (contact, version)'s personal facts; absent when contacts has no such version."""
        out: dict[tuple[str, int], PersonalFacts] = {}
        for i in range(0, len(refs), BATCH):
            chunk = [cpb.ContactVersionRef(contact_id=c, version=v) for c, v in refs[i : i + BATCH]]
            try:
                got = await self.stub.BatchGetContactVersions(
                    cpb.BatchGetContactVersionsRequest(refs=chunk),
                    timeout=TIMEOUT,
                    metadata=self.auth,
                )
            except grpc.aio.AioRpcError as err:
                raise CONTACTS.error(err, "contact_id", "read a contact as of an event") from None
            for contact in got.contacts:
                out[(contact.contact_id, int(contact.etag))] = personal_facts(contact)
        return out

    async def close(self) -> None:
        await self.channel.close()
