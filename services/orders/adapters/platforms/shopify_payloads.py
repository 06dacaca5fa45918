"""The shapes of the Shopify webhook payloads this service reads, checked before anything is
mapped (pydantic, strict: no coercion, unknown keys ignored), and the bounded parsing of their
decimal amounts and timestamps. Every problem becomes ``Invalid`` (422), never an exception that
would answer 500, and nothing here can take long: strings are length-bounded before parsing and
amounts are parsed digit by digit (no exponents, no Decimal of attacker-chosen size)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from services.orders.domain import money
from shared.domain.errors import Invalid

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)  # no shop order is older
MAX_AHEAD = timedelta(days=1)  # clock skew allowance: nothing later than a day from now
MAX_TIME_CHARS = 40
MAX_DECIMAL_CHARS = 24
MAX_TEXT = 2000  # any free text; the domain applies its own, tighter limits
MAX_REFUND_ITEMS = 1000
MAX_VIOLATIONS = 10
_DECIMAL = re.compile(r"^(-?)([0-9]{1,16})(?:\.([0-9]{1,8}))?$")

# Shopify ids are positive JSON integers (64-bit).
ShopifyId = Annotated[int, Field(gt=0, lt=2**63)]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT)]
DecimalText = Annotated[str, StringConstraints(max_length=MAX_DECIMAL_CHARS)]
TimeText = Annotated[str, StringConstraints(max_length=MAX_TIME_CHARS)]
Code = Annotated[str, StringConstraints(max_length=8)]


class Shape(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class ShopMoney(Shape):
    amount: DecimalText | None = None
    currency_code: Code | None = None


class MoneySet(Shape):
    shop_money: ShopMoney | None = None


class Customer(Shape):
    id: ShopifyId | None = None
    email: Text | None = None
    phone: Text | None = None


class LineItem(Shape):
    id: ShopifyId
    sku: Text | None = None
    title: Text | None = None
    name: Text | None = None
    quantity: int
    price: DecimalText
    total_discount: DecimalText | None = None
    price_set: MoneySet | None = None


class OrderPayload(Shape):
    """orders/create, orders/paid and orders/cancelled all carry the whole order."""

    id: ShopifyId
    created_at: TimeText
    currency: Code
    email: Text | None = None
    phone: Text | None = None
    customer: Customer | None = None
    line_items: Annotated[list[LineItem], Field(max_length=money.MAX_LINES)]
    financial_status: Text | None = None
    total_tax: DecimalText | None = None
    total_shipping_price_set: MoneySet | None = None
    cancelled_at: TimeText | None = None
    cancel_reason: Text | None = None


class FulfillmentPayload(Shape):
    id: ShopifyId
    order_id: ShopifyId
    status: Text | None = None
    tracking_company: Text | None = None
    tracking_number: Text | None = None
    tracking_url: Text | None = None
    shipment_status: Text | None = None


class RefundedLineItem(Shape):
    id: ShopifyId | None = None
    sku: Text | None = None


class RefundLine(Shape):
    line_item_id: ShopifyId
    quantity: int
    line_item: RefundedLineItem | None = None


class Transaction(Shape):
    kind: Text | None = None
    status: Text | None = None
    amount: DecimalText
    currency: Code


class RefundPayload(Shape):
    id: ShopifyId
    order_id: ShopifyId
    note: Text | None = None
    refund_line_items: Annotated[list[RefundLine], Field(max_length=MAX_REFUND_ITEMS)] = []
    transactions: Annotated[list[Transaction], Field(max_length=MAX_REFUND_ITEMS)] = []


M = TypeVar("M", bound=Shape)


def parse(model: type[M], payload: Any) -> M:
    """``payload`` as ``model``, or Invalid naming each misshapen field (at most ten)."""
    try:
        return model.model_validate(payload)
    except ValidationError as e:
        problems = [
            (
                ".".join(str(p) for p in err["loc"]) or "body",
                "MISSING_FIELD" if err["type"] == "missing" else "INVALID_FIELD",
                err["msg"],
            )
            for err in e.errors(include_url=False, include_input=False)[:MAX_VIOLATIONS]
        ]
        raise Invalid(problems) from None


def minor_units(text: str, code: str, field: str) -> int:
    """A decimal string ("19.99") as minor units of ``code``, exactly: plain digits only (no
    exponent, no sign but a leading minus), more decimals than the currency has are refused."""
    m = _DECIMAL.match(text.strip())
    if m is None:
        raise Invalid([(field, "INVALID_AMOUNT", "not a plain decimal amount such as 19.99")])
    sign, whole, fraction = m.group(1), m.group(2), m.group(3) or ""
    digits = money.exponent(code)
    if fraction[digits:].strip("0"):
        raise Invalid([(field, "INVALID_AMOUNT", f"has more decimals than {code} has minor units")])
    value = int(whole) * 10**digits + int((fraction[:digits]).ljust(digits, "0") or "0")
    if sign and value:
        raise Invalid([(field, "NEGATIVE_AMOUNT", "must not be negative")])
    return money.amount(value, field)


def timestamp(text: str, field: str, now: datetime) -> datetime:
    """An ISO 8601 time with a zone, between EARLIEST and a day from ``now``."""
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise Invalid([(field, "INVALID_TIME", "not an ISO 8601 time")]) from None
    if at.tzinfo is None or at.utcoffset() is None:
        raise Invalid([(field, "INVALID_TIME", "the time has no zone offset")])
    if not EARLIEST <= at <= now + MAX_AHEAD:
        raise Invalid(
            [(field, "TIME_OUT_OF_RANGE", f"must lie between {EARLIEST:%Y-%m-%d} and tomorrow")]
        )
    return at.astimezone(UTC)
