"""The OrdersService gRPC adapter: request -> command -> response. No business rules here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import grpc

from crm.orders.v1 import events_pb2 as epb
from crm.orders.v1 import orders_pb2 as pb
from crm.orders.v1 import orders_pb2_grpc as pb_grpc
from services.orders.application.commands import (
    CART,
    ORDER,
    CartCommands,
    OrderCommands,
    PlaceOrder,
)
from services.orders.application.directory import ContactDirectory
from services.orders.application.queries import OrderQueries
from services.orders.domain import money
from services.orders.domain.cart import Cart
from services.orders.domain.order import MAX_TEXT, STATES, Order
from shared.grpckit import calls
from shared.grpckit.limits import Limits, enforced

DOMAIN = "orders.crm"
SERVICE = "crm.orders.v1.OrdersService"
# Checked before anything else in every RPC (see the canvas's Limits section). Other strings:
# identifiers (*_id) 128, etag 32, page_token 1024, anything else 4096; lists 1000 items.
LIMITS = Limits(
    fields={
        "currency": 16,
        "sku": money.MAX_SKU,
        "name": money.MAX_NAME,
        "items[]": money.MAX_LINES,
        "lines[]": money.MAX_LINES,
        "email": 320,
        "phone": 64,
        "external_id": 255,
        **dict.fromkeys(
            ("external_ref", "payment_ref", "carrier", "tracking_number", "tracking_url", "reason"),
            MAX_TEXT,
        ),
    }
)
EARLIEST_PLACE_TIME = datetime(1970, 1, 1, tzinfo=UTC)
PLACE_TIME_AHEAD = timedelta(days=1)  # clocks differ; an order placed tomorrow does not


def _items_pb(items: Any) -> list[epb.LineItem]:
    return [
        epb.LineItem(
            sku=i["sku"],
            name=i["name"],
            quantity=i["quantity"],
            unit_price=i["unit_price"],
            discount=i["discount"],
        )
        for i in items
    ]


def item_in(i: epb.LineItem) -> dict[str, Any]:
    return {
        "sku": i.sku,
        "name": i.name,
        "quantity": i.quantity,
        "unit_price": i.unit_price,
        "discount": i.discount,
        "currency": i.currency,
    }


def cart_pb(c: Cart) -> pb.Cart:
    return pb.Cart(
        cart_id=c.cart_id,
        contact_id=c.contact_id,
        currency=c.currency,
        items=_items_pb(c.items),
        subtotal=c.subtotal,
        state=pb.CartState.Value(f"CART_STATE_{c.state}"),
        order_id=c.order_id,
        create_time=calls.timestamp(c.created_at),
        last_activity_time=calls.timestamp(c.last_activity_at),
        etag=str(c.version),
    )


def order_pb(o: Order) -> pb.Order:
    return pb.Order(
        order_id=o.order_id,
        contact_id=o.contact_id,
        currency=o.currency,
        items=_items_pb(o.items),
        subtotal=o.subtotal,
        shipping=o.shipping,
        tax=o.tax,
        total=o.total,
        paid=o.paid,
        refunded=o.refunded,
        state=pb.OrderState.Value(f"ORDER_STATE_{o.state}"),
        shipments=[
            pb.Shipment(
                shipment_id=s["shipment_id"],
                carrier=s["carrier"],
                tracking_number=s["tracking_number"],
                tracking_url=s["tracking_url"],
                ship_time=calls.timestamp(s["at"]),
            )
            for s in o.shipments
        ],
        external_ref=o.external_ref,
        cart_id=o.cart_id,
        place_time=calls.timestamp(o.placed_at),
        update_time=calls.timestamp(o.updated_at),
        etag=str(o.version),
    )


@enforced(DOMAIN, LIMITS, pb.DESCRIPTOR.services_by_name["OrdersService"])
class OrdersServicer(pb_grpc.OrdersServiceServicer):
    """Bound to its application objects once the database is reachable (see app.py)."""

    def bind(
        self,
        carts: CartCommands,
        orders: OrderCommands,
        queries: OrderQueries,
        directory: ContactDirectory,
    ) -> None:
        self.carts, self.orders, self.queries, self.directory = carts, orders, queries, directory

    @staticmethod
    def _id(value: str, field: str, reason: str) -> str:
        if not value:
            raise calls.invalid(DOMAIN, field, reason, "required")
        return calls.uuid_arg(DOMAIN, value, field, reason)

    def _kw(
        self, request_id: str, context: grpc.aio.ServicerContext, etag: str = ""
    ) -> dict[str, Any]:
        rid = calls.request_id(DOMAIN, request_id)
        return {"request_id": rid, "meta": calls.event_meta(rid, context), "etag": etag}

    async def customer(self, ref: pb.CustomerRef) -> str:
        kind = ref.WhichOneof("ref")
        if kind is None or not getattr(ref, kind):
            raise calls.invalid(
                DOMAIN,
                "customer",
                "CUSTOMER_REQUIRED",
                "set contact_id, email, phone or external_id",
            )
        if kind == "contact_id":
            return self._id(ref.contact_id, "customer.contact_id", "INVALID_CONTACT_ID")
        return await self.directory.resolve(kind, getattr(ref, kind))

    # Carts ---------------------------------------------------------------------------------

    async def CreateCart(
        self, request: pb.CreateCartRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateCartResponse:
        kw = self._kw(request.request_id, context)
        money.currency(request.currency)  # before a guest contact may be registered
        contact_id = await self.customer(request.customer)
        cart = await self.carts.create(
            contact_id, request.currency, request_id=kw["request_id"], meta=kw["meta"]
        )
        return pb.CreateCartResponse(cart=cart_pb(cart))

    async def GetCart(
        self, request: pb.GetCartRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetCartResponse:
        cart_id = self._id(request.cart_id, "cart_id", "INVALID_CART_ID")
        return pb.GetCartResponse(cart=cart_pb(await self.carts.runner.get(CART, cart_id)))

    async def AddCartItem(
        self, request: pb.AddCartItemRequest, context: grpc.aio.ServicerContext
    ) -> pb.AddCartItemResponse:
        cart_id = self._id(request.cart_id, "cart_id", "INVALID_CART_ID")
        kw = self._kw(request.request_id, context, request.etag)
        cart = await self.carts.add(cart_id, item_in(request.item), **kw)
        return pb.AddCartItemResponse(cart=cart_pb(cart))

    async def ChangeCartItem(
        self, request: pb.ChangeCartItemRequest, context: grpc.aio.ServicerContext
    ) -> pb.ChangeCartItemResponse:
        cart_id = self._id(request.cart_id, "cart_id", "INVALID_CART_ID")
        kw = self._kw(request.request_id, context, request.etag)
        cart = await self.carts.change(cart_id, item_in(request.item), **kw)
        return pb.ChangeCartItemResponse(cart=cart_pb(cart))

    async def RemoveCartItem(
        self, request: pb.RemoveCartItemRequest, context: grpc.aio.ServicerContext
    ) -> pb.RemoveCartItemResponse:
        cart_id = self._id(request.cart_id, "cart_id", "INVALID_CART_ID")
        kw = self._kw(request.request_id, context, request.etag)
        cart = await self.carts.remove(cart_id, request.sku, **kw)
        return pb.RemoveCartItemResponse(cart=cart_pb(cart))

    async def StartCheckout(
        self, request: pb.StartCheckoutRequest, context: grpc.aio.ServicerContext
    ) -> pb.StartCheckoutResponse:
        cart_id = self._id(request.cart_id, "cart_id", "INVALID_CART_ID")
        kw = self._kw(request.request_id, context)
        return pb.StartCheckoutResponse(cart=cart_pb(await self.carts.checkout(cart_id, **kw)))

    # Orders --------------------------------------------------------------------------------

    async def PlaceOrder(
        self, request: pb.PlaceOrderRequest, context: grpc.aio.ServicerContext
    ) -> pb.PlaceOrderResponse:
        kw = self._kw(request.request_id, context)
        cmd = PlaceOrder(
            contact_id="",
            currency=request.currency,
            items=[item_in(i) for i in request.items],
            shipping=request.shipping,
            tax=request.tax,
            order_id=(
                self._id(request.order_id, "order_id", "INVALID_ORDER_ID")
                if request.order_id
                else ""
            ),
            external_ref=request.external_ref,
            placed_at=calls.timestamp_arg(
                DOMAIN,
                request,
                "place_time",
                earliest=EARLIEST_PLACE_TIME,
                ahead=PLACE_TIME_AHEAD,
            ),
        )
        customer = None
        if request.cart_id:
            if request.items or request.HasField("customer"):
                raise calls.invalid(
                    DOMAIN, "cart_id", "CART_OR_ITEMS", "give either cart_id, or customer and items"
                )
            cmd = replace(cmd, cart_id=self._id(request.cart_id, "cart_id", "INVALID_CART_ID"))
        elif request.customer.WhichOneof("ref") == "contact_id":
            cmd = replace(cmd, contact_id=await self.customer(request.customer))
        else:  # resolved (maybe a guest registered) only once the order validated
            customer = partial(self.customer, request.customer)
        order = await self.orders.place(
            cmd, customer=customer, request_id=kw["request_id"], meta=kw["meta"]
        )
        return pb.PlaceOrderResponse(order=order_pb(order))

    async def GetOrder(
        self, request: pb.GetOrderRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetOrderResponse:
        order_id = self._id(request.order_id, "order_id", "INVALID_ORDER_ID")
        return pb.GetOrderResponse(order=order_pb(await self.orders.runner.get(ORDER, order_id)))

    async def _order(self, order_id: str, run: Callable[[str], Awaitable[Order]]) -> pb.Order:
        oid = self._id(order_id, "order_id", "INVALID_ORDER_ID")
        return order_pb(await run(oid))

    async def PayOrder(
        self, request: pb.PayOrderRequest, context: grpc.aio.ServicerContext
    ) -> pb.PayOrderResponse:
        kw = self._kw(request.request_id, context)
        return pb.PayOrderResponse(
            order=await self._order(
                request.order_id,
                lambda o: self.orders.pay(o, request.amount, request.payment_ref, **kw),
            )
        )

    async def ShipOrder(
        self, request: pb.ShipOrderRequest, context: grpc.aio.ServicerContext
    ) -> pb.ShipOrderResponse:
        kw = self._kw(request.request_id, context)
        r = request
        return pb.ShipOrderResponse(
            order=await self._order(
                r.order_id,
                lambda o: self.orders.ship(
                    o, r.shipment_id, r.carrier, r.tracking_number, r.tracking_url, **kw
                ),
            )
        )

    async def DeliverOrder(
        self, request: pb.DeliverOrderRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeliverOrderResponse:
        kw = self._kw(request.request_id, context)
        return pb.DeliverOrderResponse(
            order=await self._order(request.order_id, lambda o: self.orders.deliver(o, **kw))
        )

    async def CancelOrder(
        self, request: pb.CancelOrderRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelOrderResponse:
        kw = self._kw(request.request_id, context)
        return pb.CancelOrderResponse(
            order=await self._order(
                request.order_id, lambda o: self.orders.cancel(o, request.reason, **kw)
            )
        )

    async def RefundOrder(
        self, request: pb.RefundOrderRequest, context: grpc.aio.ServicerContext
    ) -> pb.RefundOrderResponse:
        kw = self._kw(request.request_id, context)
        r = request
        lines: list[Mapping[str, Any]] = [
            {"sku": ln.sku, "quantity": ln.quantity} for ln in r.lines
        ]
        return pb.RefundOrderResponse(
            order=await self._order(
                r.order_id,
                lambda o: self.orders.refund(o, r.amount, lines, r.reason, r.refund_id, **kw),
            )
        )

    # Read model ----------------------------------------------------------------------------

    async def ListOrders(
        self, request: pb.ListOrdersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListOrdersResponse:
        contact_id = (
            self._id(request.contact_id, "contact_id", "INVALID_CONTACT_ID")
            if request.contact_id
            else ""
        )
        state = ""
        if request.state:  # a known number: the limits check rejected any other
            state = pb.OrderState.Name(request.state).removeprefix("ORDER_STATE_")
            assert state in STATES, state
        size = calls.page_size(DOMAIN, request.page_size)
        page, token = await self.queries.list_orders(contact_id, state, size, request.page_token)
        return pb.ListOrdersResponse(orders=[order_pb(o) for o in page], next_page_token=token)

    async def GetCustomerMetrics(
        self, request: pb.GetCustomerMetricsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetCustomerMetricsResponse:
        contact_id = self._id(request.contact_id, "contact_id", "INVALID_CONTACT_ID")
        rows = await self.queries.metrics(contact_id)
        out = pb.GetCustomerMetricsResponse(contact_id=contact_id)
        if not rows:
            return out  # a contact without (counted) orders: zeros, not NOT_FOUND
        first = min(r.first_order_at for r in rows)
        last = max(r.last_order_at for r in rows)
        out.order_count = sum(r.order_count for r in rows)
        out.first_order_time.CopyFrom(calls.timestamp(first))
        out.last_order_time.CopyFrom(calls.timestamp(last))
        out.days_since_last_order = (datetime.now(UTC) - last).days
        for r in rows:
            out.currencies.append(
                pb.CurrencyMetrics(
                    currency=r.currency,
                    order_count=r.order_count,
                    revenue=r.revenue,
                    refunded=r.refunded,
                    average_order_value=r.average_order_value,
                    first_order_time=calls.timestamp(r.first_order_at),
                    last_order_time=calls.timestamp(r.last_order_at),
                    rfm=pb.Rfm(
                        recency=r.recency, frequency=r.frequency, monetary=r.monetary, group=r.group
                    ),
                )
            )
        return out
