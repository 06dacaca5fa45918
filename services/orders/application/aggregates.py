"""The orders service's two aggregates, as the shared command runner sees them
(shared/application/commands.py): carts and orders, each its own stream."""

from __future__ import annotations

import uuid

from services.orders.domain import cart as carts
from services.orders.domain import order as orders
from services.orders.domain.cart import Cart
from services.orders.domain.order import Order
from shared.application.commands import Aggregate

# Event ids and new cart / order ids derive from request ids in this namespace. Never change
# it: a request retried across the change would be executed twice.
NS = uuid.UUID("0b6f3c1e-8f0a-4a55-b4a9-5d8e2a7c9e31")

CART: Aggregate[Cart] = Aggregate(
    namespace=NS,
    stream_of=carts.stream_of,
    fold=lambda _id, rows: carts.fold(rows),
    evolve=carts.evolve,
    missing="CART_NOT_FOUND",
)
ORDER: Aggregate[Order] = Aggregate(
    namespace=NS,
    stream_of=orders.stream_of,
    fold=lambda _id, rows: orders.fold(rows),
    evolve=orders.evolve,
    missing="ORDER_NOT_FOUND",
    exists="ORDER_EXISTS",
)
