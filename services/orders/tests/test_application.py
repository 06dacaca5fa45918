"""The orders application tier on the in-memory event store, with a fake contact directory: the
command handlers' rules at unit-test speed. The real tier (PostgreSQL, gRPC, the contacts
service) is tested by the API tests; these add speed, they do not replace them."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.orders.application.commands import CartCommands, OrderCommands, PlaceOrder
from services.orders.domain import cart as carts
from services.orders.domain import order as orders
from shared.application.commands import FINGERPRINT
from shared.domain.errors import Invalid, Precondition
from shared.eventstore import DuplicateEventId
from shared.eventstore.memory import InMemoryEventStore

TEA = {"sku": "TEA-1", "name": "tea", "quantity": 2, "unit_price": 1250, "discount": 0}


class FakeDirectory:
    """Resolves identities to fixed contact ids and remembers who asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    async def resolve(self, kind: str, value: str, *, request_id: str = "") -> str:
        self.asked.append((kind, value))
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{kind}:{value}"))


@pytest.fixture
def store() -> InMemoryEventStore:
    return InMemoryEventStore()


async def types_in(store: InMemoryEventStore, stream: str) -> list[str]:
    return [e.type.rsplit(".", 1)[-1] for e in await store.read_stream(stream)]


async def cart_with_tea(store: InMemoryEventStore) -> str:
    cart = await CartCommands(store).create(str(uuid.uuid4()), "EUR")
    await CartCommands(store).add(cart.cart_id, TEA)
    return cart.cart_id


async def test_an_order_from_a_cart_converts_it_in_the_same_append(
    store: InMemoryEventStore,
) -> None:
    cart_id = await cart_with_tea(store)
    order = await OrderCommands(store).place(
        PlaceOrder(contact_id="", currency="", items=[], cart_id=cart_id), request_id="r1"
    )
    assert order.total == 2500 and order.cart_id == cart_id
    assert await types_in(store, orders.stream_of(order.order_id)) == ["OrderPlaced"]
    assert (await types_in(store, carts.stream_of(cart_id)))[-1] == "CartConverted"


async def test_concurrent_retries_all_get_the_first_answer(store: InMemoryEventStore) -> None:
    cart_id = await cart_with_tea(store)
    cmd = PlaceOrder(contact_id="", currency="", items=[], cart_id=cart_id)
    answers = await asyncio.gather(
        *(OrderCommands(store).place(cmd, request_id="same") for _ in range(20))
    )
    assert len({a.order_id for a in answers}) == 1
    assert (await types_in(store, carts.stream_of(cart_id))).count("CartConverted") == 1


async def test_a_customer_is_resolved_only_after_the_order_validated(
    store: InMemoryEventStore,
) -> None:
    directory = FakeDirectory()

    async def customer() -> str:
        return await directory.resolve("email", "ada@example.com")

    bad = PlaceOrder(contact_id="", currency="EUR", items=[])
    with pytest.raises(Invalid):
        await OrderCommands(store).place(bad, customer=customer)
    assert directory.asked == [] and await store.head_position() == 0
    good = PlaceOrder(contact_id="", currency="EUR", items=[TEA])
    order = await OrderCommands(store).place(good, customer=customer)
    assert directory.asked == [("email", "ada@example.com")]
    assert order.contact_id == await directory.resolve("email", "ada@example.com")


async def test_a_cart_is_abandoned_once_however_many_timers_race(
    store: InMemoryEventStore,
) -> None:
    cart_id = await cart_with_tea(store)
    later = datetime.now(UTC) + timedelta(hours=2)
    fired = await asyncio.gather(
        *(CartCommands(store).abandon(cart_id, later, timedelta(hours=1)) for _ in range(5))
    )
    assert sum(fired) == 1
    assert (await types_in(store, carts.stream_of(cart_id))).count("CartAbandoned") == 1
    assert not await CartCommands(store).abandon(cart_id, later, timedelta(hours=1))


async def test_the_lifecycle_refuses_illegal_steps_and_writes_nothing(
    store: InMemoryEventStore,
) -> None:
    commands = OrderCommands(store)
    order = await commands.place(
        PlaceOrder(contact_id=str(uuid.uuid4()), currency="EUR", items=[TEA])
    )
    before = await store.head_position()
    with pytest.raises(Precondition) as info:
        await commands.deliver(order.order_id)
    assert info.value.reason == "ORDER_PLACED" and await store.head_position() == before
    paid = await commands.pay(order.order_id, order.total, "psp-1", request_id="pay-1")
    again = await commands.pay(order.order_id, order.total, "psp-1", request_id="pay-1")
    assert paid.state == again.state == "PAID" and paid.version == again.version


async def test_a_request_id_reused_for_another_cart_is_refused(store: InMemoryEventStore) -> None:
    """The request's fingerprint (set from the gRPC request) tells a reuse from a retry."""
    contact = str(uuid.uuid4())
    first = await CartCommands(store).create(
        contact, "EUR", request_id="c1", meta={FINGERPRINT: "eur"}
    )
    with pytest.raises(DuplicateEventId):
        await CartCommands(store).create(contact, "JPY", request_id="c1", meta={FINGERPRINT: "jpy"})
    # A retry of the first request gets the first cart, though it was decided at another time.
    again = await CartCommands(store).create(
        contact, "EUR", request_id="c1", meta={FINGERPRINT: "eur"}
    )
    assert again == first
    assert len(await store.read_stream(f"cart-{first.cart_id}")) == 1
