"""ContactDirectory over the contacts service's gRPC API (the only way orders learns who a
customer is: services never read each other's tables), called with orders' service token."""

from __future__ import annotations

import hashlib

import grpc

from crm.contacts.v1 import contacts_pb2 as cpb
from crm.contacts.v1 import contacts_pb2_grpc as cpb_grpc
from shared.grpckit.client import ClientTls, bearer, open_channel
from shared.grpckit.upstream import Upstream, reason_of

KINDS = ("email", "phone", "external_id")
TIMEOUT = 5.0


CONTACTS = Upstream("contacts", "orders.crm")


class GrpcContactDirectory:
    def __init__(self, target: str, token: str, tls: ClientTls | None = None) -> None:
        self.channel = open_channel(target, tls)
        self.stub = cpb_grpc.ContactsServiceStub(self.channel)
        self.auth = bearer(token)  # the service role: no reason needed

    async def close(self) -> None:
        await self.channel.close()

    async def resolve(self, kind: str, value: str, *, request_id: str = "") -> str:
        assert kind in KINDS
        field = f"customer.{kind}"
        try:
            found = await self.stub.FindContact(
                cpb.FindContactRequest(**{kind: value}), timeout=TIMEOUT, metadata=self.auth
            )
            return str(found.contact.contact_id)
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.NOT_FOUND:
                raise CONTACTS.error(err, field, "resolve the customer") from None
        # A guest contact. The request id is derived from the identity as given (a request id
        # names one request), so concurrent orders of one new customer register one contact;
        # one that appeared meanwhile (or another spelling of the same identity) is reported
        # as ALREADY_EXISTS with the holder's id.
        digest = hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()[:40]
        try:
            made = await self.stub.RegisterContact(
                self._guest(kind, value, f"orders.guest:{digest}"),
                timeout=TIMEOUT,
                metadata=self.auth,
            )
            return str(made.contact.contact_id)
        except grpc.aio.AioRpcError as err:
            _, metadata = reason_of(err)
            if err.code() == grpc.StatusCode.ALREADY_EXISTS and metadata.get("contact_id"):
                return metadata["contact_id"]
            raise CONTACTS.error(err, field, "resolve the customer") from None

    @staticmethod
    def _guest(kind: str, value: str, request_id: str) -> cpb.RegisterContactRequest:
        request = cpb.RegisterContactRequest(tags=["guest"], request_id=request_id)
        setattr(request, kind, value)
        return request
