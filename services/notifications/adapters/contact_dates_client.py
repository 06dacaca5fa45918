"""The dates date triggers read, from contacts as of given stream versions
(BatchGetContactVersions, with notifications' service token): contacts' events seal the
attributes, so only contacts can open them, and only the version an event produced gives the
value that event stands for. Only the attributes asked for are kept, and only as dates."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date

import grpc

from crm.contacts.v1 import contacts_pb2 as cpb
from crm.contacts.v1 import contacts_pb2_grpc as cpb_grpc
from crm.contacts.v1 import events_pb2 as cepb
from services.notifications.domain.flows.dates import date_of
from shared.grpckit.upstream import Upstream

CONTACTS = Upstream("contacts", "notifications.crm")
BATCH = 500  # the most BatchGetContactVersions takes
TIMEOUT = 10.0


def attribute_date(value: cepb.AttributeValue) -> date | None:
    """A timestamp's UTC date, or a text's ISO date; other kinds hold no date."""
    kind = value.WhichOneof("value")
    if kind == "timestamp_value":
        return value.timestamp_value.ToDatetime(tzinfo=UTC).date()
    if kind == "string_value":
        return date_of(value.string_value)
    return None


def dates_of(contact: cpb.Contact, attributes: frozenset[str]) -> dict[str, date]:
    out = {}
    for name in attributes:
        if name in contact.attributes and (d := attribute_date(contact.attributes[name])):
            out[name] = d
    return out


class GrpcContactDates:
    """On an open ContactsService stub (GrpcContacts'), with its call metadata."""

    def __init__(
        self, stub: cpb_grpc.ContactsServiceStub, metadata: Sequence[tuple[str, str]]
    ) -> None:
        self.stub, self.metadata = stub, tuple(metadata)

    async def dates(
        self, refs: Sequence[tuple[str, int]], attributes: frozenset[str]
    ) -> dict[tuple[str, int], dict[str, date]]:
        out: dict[tuple[str, int], dict[str, date]] = {}
        for i in range(0, len(refs), BATCH):
            chunk = [cpb.ContactVersionRef(contact_id=c, version=v) for c, v in refs[i : i + BATCH]]
            try:
                got = await self.stub.BatchGetContactVersions(
                    cpb.BatchGetContactVersionsRequest(refs=chunk),
                    timeout=TIMEOUT,
                    metadata=self.metadata,
                )
            except grpc.aio.AioRpcError as err:
                raise CONTACTS.error(err, "contact_id", "read a contact as of an event") from None
            for contact in got.contacts:
                out[(contact.contact_id, int(contact.etag))] = dates_of(contact, attributes)
        return out
