"""The OrdersService gRPC adapter: request -> command -> response. No business rules here.

Requests are read with order_requests.py, responses written in order_responses.py."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from functools import partial
from typing import Any

import grpc

from crm.orders.v1 import orders_pb2 as pb
from crm.orders.v1 import orders_pb2_grpc as pb_grpc
from services.orders.api.order_requests import (
    DOMAIN,
    EARLIEST_PLACE_TIME,
    LIMITS,
    PLACE_TIME_AHEAD,
    item_in,
)
from services.orders.api.order_responses import cart_pb, customer_metrics_pb, order_pb
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
from services.orders.domain.order import STATES, Order
from shared.grpckit import calls
from shared.grpckit.limits import enforced

SERVICE = "crm.orders.v1.OrdersService"


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

    def _kw(
        self, request_id: str, context: grpc.aio.ServicerContext, etag: str = ""
    ) -> dict[str, Any]:
        meta = calls.event_meta(request_id, context)
        return {"request_id": request_id, "meta": meta, "etag": etag}

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
            return calls.required_uuid(
                DOMAIN, ref.contact_id, "customer.contact_id", "INVALID_CONTACT_ID"
            )
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
        cart_id = calls.required_uuid(DOMAIN, request.cart_id, "cart_id", "INVALID_CART_ID")
        return pb.GetCartResponse(cart=cart_pb(await self.carts.runner.get(CART, cart_id)))

    async def AddCartItem(
        self, request: pb.AddCartItemRequest, context: grpc.aio.ServicerContext
    ) -> pb.AddCartItemResponse:
        cart_id = calls.required_uuid(DOMAIN, request.cart_id, "cart_id", "INVALID_CART_ID")
        kw = self._kw(request.request_id, context, request.etag)
        cart = await self.carts.add(cart_id, item_in(request.item), **kw)
        return pb.AddCartItemResponse(cart=cart_pb(cart))

    async def ChangeCartItem(
        self, request: pb.ChangeCartItemRequest, context: grpc.aio.ServicerContext
    ) -> pb.ChangeCartItemResponse:
        cart_id = calls.required_uuid(DOMAIN, request.cart_id, "cart_id", "INVALID_CART_ID")
        kw = self._kw(request.request_id, context, request.etag)
        cart = await self.carts.change(cart_id, item_in(request.item), **kw)
        return pb.ChangeCartItemResponse(cart=cart_pb(cart))

    async def RemoveCartItem(
        self, request: pb.RemoveCartItemRequest, context: grpc.aio.ServicerContext
    ) -> pb.RemoveCartItemResponse:
        cart_id = calls.required_uuid(DOMAIN, request.cart_id, "cart_id", "INVALID_CART_ID")
        kw = self._kw(request.request_id, context, request.etag)
        cart = await self.carts.remove(cart_id, request.sku, **kw)
        return pb.RemoveCartItemResponse(cart=cart_pb(cart))

    async def StartCheckout(
        self, request: pb.StartCheckoutRequest, context: grpc.aio.ServicerContext
    ) -> pb.StartCheckoutResponse:
        cart_id = calls.required_uuid(DOMAIN, request.cart_id, "cart_id", "INVALID_CART_ID")
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
                calls.required_uuid(DOMAIN, request.order_id, "order_id", "INVALID_ORDER_ID")
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
            cmd = replace(
                cmd,
                cart_id=calls.required_uuid(DOMAIN, request.cart_id, "cart_id", "INVALID_CART_ID"),
            )
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
        order_id = calls.required_uuid(DOMAIN, request.order_id, "order_id", "INVALID_ORDER_ID")
        return pb.GetOrderResponse(order=order_pb(await self.orders.runner.get(ORDER, order_id)))

    async def _order(self, order_id: str, run: Callable[[str], Awaitable[Order]]) -> pb.Order:
        oid = calls.required_uuid(DOMAIN, order_id, "order_id", "INVALID_ORDER_ID")
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
            calls.required_uuid(DOMAIN, request.contact_id, "contact_id", "INVALID_CONTACT_ID")
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
        contact_id = calls.required_uuid(
            DOMAIN, request.contact_id, "contact_id", "INVALID_CONTACT_ID"
        )
        rows = await self.queries.metrics(contact_id)
        return customer_metrics_pb(contact_id, rows)
