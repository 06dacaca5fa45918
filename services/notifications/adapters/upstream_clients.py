"""Contacts (profile, identity, consent: read, suppressed, withdrawn) and orders (metrics,
carts, orders) over their gRPC APIs, called with notifications' service token: services never
read each other's tables. Their refusals become ours (shared/grpckit/upstream.py); anything
else is UNAVAILABLE."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import UTC
from typing import Any

import grpc
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp

from crm.contacts.v1 import consent_pb2 as kpb
from crm.contacts.v1 import consent_pb2_grpc as kpb_grpc
from crm.contacts.v1 import contacts_pb2 as cpb
from crm.contacts.v1 import contacts_pb2_grpc as cpb_grpc
from crm.contacts.v1 import events_pb2 as cepb
from crm.orders.v1 import events_pb2 as oepb
from crm.orders.v1 import orders_pb2 as opb
from crm.orders.v1 import orders_pb2_grpc as opb_grpc
from services.notifications.application.ports import ContactFacts
from services.notifications.application.tracking import Evidence
from services.notifications.domain.decision import ConsentUsed
from shared.grpckit.client import ClientTls, bearer, open_channel
from shared.grpckit.upstream import Upstream

TIMEOUT = 5.0
MAX_USER_AGENT = 512  # what contacts keeps
CONTACTS = Upstream("contacts", "notifications.crm")
ORDERS = Upstream("orders", "notifications.crm")


def _time(ts: Timestamp) -> str:
    return ts.ToJsonString() if ts.seconds or ts.nanos else ""


def _attribute(v: cepb.AttributeValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "timestamp_value":
        return _time(v.timestamp_value)
    if kind == "number_value":
        n = v.number_value
        return int(n) if n.is_integer() and abs(n) < 2**53 else n
    return getattr(v, kind) if kind else None


def contact_facts(c: cpb.Contact) -> ContactFacts:
    profile = {
        "contact_id": c.contact_id,
        "email": c.email,
        "phone": c.phone,
        "external_id": c.external_id,
        "first_name": c.first_name,
        "last_name": c.last_name,
        "locale": c.locale,
        "time_zone": c.time_zone,
        "tags": list(c.tags),
        "attributes": {k: _attribute(v) for k, v in c.attributes.items()},
    }
    return ContactFacts(
        contact_id=c.contact_id,
        email=c.email,
        phone=c.phone,
        locale=c.locale,
        time_zone=c.time_zone,
        archived=c.archived,
        erased=c.erased,
        profile=profile,
    )


class GrpcContacts:
    def __init__(self, target: str, token: str, tls: ClientTls | None = None) -> None:
        self.channel = open_channel(target, tls)
        self.contacts = cpb_grpc.ContactsServiceStub(self.channel)
        self.consents = kpb_grpc.ConsentServiceStub(self.channel)
        self.auth = bearer(token)  # the service role: no reason needed

    async def close(self) -> None:
        await self.channel.close()

    async def get(self, contact_id: str) -> ContactFacts | None:
        try:
            found = await self.contacts.GetContact(
                cpb.GetContactRequest(contact_id=contact_id), timeout=TIMEOUT, metadata=self.auth
            )
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise CONTACTS.error(err, "contact_id", "read the contact") from None
        return contact_facts(found.contact)

    async def tag(
        self, contact_id: str, add: Sequence[str], remove: Sequence[str], request_id: str
    ) -> None:
        """A flow's tag step: the contact's tags with ``add`` and without ``remove``, written at
        the version read (a concurrent change: ABORTED, tried again later); a retry with the
        same request id answers the first write."""
        try:
            found = await self.contacts.GetContact(
                cpb.GetContactRequest(contact_id=contact_id), timeout=TIMEOUT, metadata=self.auth
            )
            now = found.contact
            tags = [x for x in now.tags if x not in remove] + [
                x for x in add if x not in now.tags and x not in remove
            ]
            if tags == list(now.tags):
                return
            await self.contacts.UpdateContact(
                cpb.UpdateContactRequest(
                    contact=cpb.Contact(contact_id=contact_id, tags=tags),
                    update_mask=FieldMask(paths=["tags"]),
                    etag=now.etag,
                    request_id=request_id,
                ),
                timeout=TIMEOUT,
                metadata=self.auth,
            )
        except grpc.aio.AioRpcError as err:
            raise CONTACTS.error(err, "contact_id", "tag the contact") from None

    async def find(self, kind: str, value: str) -> str | None:
        try:
            found = await self.contacts.FindContact(
                cpb.FindContactRequest(**{kind: value}), timeout=TIMEOUT, metadata=self.auth
            )
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise CONTACTS.error(err, kind, "find the contact") from None
        return str(found.contact.contact_id)

    async def consent(self, contact_id: str, channel: str) -> ConsentUsed:
        try:
            answer = await self.consents.GetConsent(
                kpb.GetConsentRequest(contact_id=contact_id), timeout=TIMEOUT, metadata=self.auth
            )
        except grpc.aio.AioRpcError as err:
            raise CONTACTS.error(err, "contact_id", "read the consent") from None
        wanted = kpb.Channel.Value(channel)
        for c in answer.channels:
            if c.channel == wanted:
                return ConsentUsed(
                    state=kpb.ConsentState.Name(c.state),
                    legal_basis=kpb.LegalBasis.Name(c.legal_basis) if c.legal_basis else "",
                    policy_version=c.policy_version,
                    update_time=c.update_time.ToDatetime(tzinfo=UTC)
                    if c.HasField("update_time")
                    else None,
                    suppressed=c.suppressed,
                    suppression_reason=kpb.SuppressionReason.Name(c.suppression_reason)
                    if c.suppressed
                    else "",
                )
        return ConsentUsed(state="CONSENT_STATE_NEVER_SUBSCRIBED")

    async def suppress(
        self, contact_id: str, channel: str, reason: str, note: str, request_id: str
    ) -> bool:
        """SuppressChannel (a retry with the same request id answers the first result); whether
        it changed anything."""
        try:
            answer = await self.consents.SuppressChannel(
                kpb.SuppressChannelRequest(
                    contact_id=contact_id,
                    channel=kpb.Channel.Value(channel),
                    reason=kpb.SuppressionReason.Value(reason),
                    note=note[:500],
                    request_id=request_id,
                ),
                timeout=TIMEOUT,
                metadata=self.auth,
            )
        except grpc.aio.AioRpcError as err:
            raise CONTACTS.error(err, "contact_id", "suppress the channel") from None
        return bool(answer.changed)

    async def withdraw(
        self, contact_id: str, channel: str, source: str, evidence: Evidence, request_id: str
    ) -> bool:
        """The unsubscribe endpoint's withdrawal of a channel's consent (RecordConsent,
        UNSUBSCRIBED) with its source and evidence; whether it changed anything."""
        request = kpb.RecordConsentRequest(
            contact_id=contact_id,
            channel=kpb.Channel.Value(channel),
            state=kpb.CONSENT_STATE_UNSUBSCRIBED,
            source=source,
            evidence=kpb.ConsentEvidence(
                ip=_ip(evidence.ip),
                user_agent="".join(c for c in evidence.user_agent if c.isprintable())[
                    :MAX_USER_AGENT
                ],
            ),
            request_id=request_id,
        )
        try:
            answer = await self.consents.RecordConsent(request, timeout=TIMEOUT, metadata=self.auth)
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.ALREADY_EXISTS:  # the key's withdrawal was recorded
                return False  # by an earlier request (its evidence differed): done already
            raise CONTACTS.error(err, "contact_id", "record the withdrawal") from None
        return bool(answer.changed)


def _ip(text: str) -> str:
    """An IP address contacts accepts, or "" (an aiohttp peer may be a socket path)."""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return ""


class GrpcOrders:
    def __init__(self, target: str, token: str, tls: ClientTls | None = None) -> None:
        self.channel = open_channel(target, tls)
        self.stub = opb_grpc.OrdersServiceStub(self.channel)
        self.auth = bearer(token)

    async def close(self) -> None:
        await self.channel.close()

    async def metrics(self, contact_id: str) -> dict[str, Any]:
        try:
            m = await self.stub.GetCustomerMetrics(
                opb.GetCustomerMetricsRequest(contact_id=contact_id),
                timeout=TIMEOUT,
                metadata=self.auth,
            )
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                return {"order_count": 0, "currencies": []}
            raise ORDERS.error(err, "contact_id", "read the customer's metrics") from None
        return {
            "order_count": m.order_count,
            "first_order_time": _time(m.first_order_time),
            "last_order_time": _time(m.last_order_time),
            "days_since_last_order": m.days_since_last_order,
            "currencies": [
                {
                    "currency": c.currency,
                    "order_count": c.order_count,
                    "revenue": c.revenue,
                    "refunded": c.refunded,
                    "average_order_value": c.average_order_value,
                    "rfm_group": c.rfm.group,
                }
                for c in m.currencies
            ],
        }

    async def cart(self, cart_id: str) -> dict[str, Any] | None:
        try:
            got = await self.stub.GetCart(
                opb.GetCartRequest(cart_id=cart_id), timeout=TIMEOUT, metadata=self.auth
            )
        except grpc.aio.AioRpcError as err:
            if err.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return None
            raise ORDERS.error(err, "cart_id", "read the cart") from None
        c = got.cart
        return {
            "cart_id": c.cart_id,
            "contact_id": c.contact_id,
            "currency": c.currency,
            "items": [_item(i) for i in c.items],
            "item_count": sum(i.quantity for i in c.items),
            "subtotal": c.subtotal,
            "state": opb.CartState.Name(c.state).removeprefix("CART_STATE_").lower(),
        }

    async def order(self, order_id: str) -> dict[str, Any] | None:
        try:
            got = await self.stub.GetOrder(
                opb.GetOrderRequest(order_id=order_id), timeout=TIMEOUT, metadata=self.auth
            )
        except grpc.aio.AioRpcError as err:
            if err.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return None
            raise ORDERS.error(err, "order_id", "read the order") from None
        o = got.order
        return {
            "order_id": o.order_id,
            "contact_id": o.contact_id,
            "number": o.external_ref,
            "currency": o.currency,
            "items": [_item(i) for i in o.items],
            "subtotal": o.subtotal,
            "shipping": o.shipping,
            "tax": o.tax,
            "total": o.total,
            "paid": o.paid,
            "refunded": o.refunded,
            "state": opb.OrderState.Name(o.state).removeprefix("ORDER_STATE_").lower(),
            "shipments": [
                {
                    "carrier": sh.carrier,
                    "tracking_number": sh.tracking_number,
                    "tracking_url": sh.tracking_url,
                    "ship_time": _time(sh.ship_time),
                }
                for sh in o.shipments
            ],
            "place_time": _time(o.place_time),
        }


def _item(i: oepb.LineItem) -> dict[str, Any]:
    """A line as templates read it: amounts in minor units (format with ``| money(currency)``)."""
    return {
        "sku": i.sku,
        "name": i.name,
        "quantity": i.quantity,
        "unit_price": i.unit_price,
        "discount": i.discount,
        "total": i.quantity * i.unit_price - i.discount,
    }
