"""Money: integer minor units of an ISO 4217 currency, and line items priced in them.

The list of currencies is pycountry's (ISO 4217, current codes); the number of minor-unit digits
is CLDR's, through babel (JPY 0, USD 2, KWD 3). Amounts are never floats.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any

import pycountry
from babel.numbers import get_currency_precision

from shared.domain.errors import Invalid, quote

# The most any one order or cart may be worth, in minor units: every amount, line total,
# subtotal, total, payment and refund of one order stays at or below it. A quadrillion is far
# beyond any real order, and 9 000 of them still fit int64 / bigint.
MAX_AMOUNT = 10**15
MAX_QUANTITY = 1_000_000
MAX_LINES = 500
MAX_SKU = 128
MAX_NAME = 300
_SKU = re.compile(r"^[^\s\x00-\x1f][^\x00-\x1f]*$")
# Funds and precious metals are ISO 4217 codes but not money a shop takes.
_NOT_MONEY = {
    "XAU",
    "XAG",
    "XPD",
    "XPT",
    "XDR",
    "XSU",
    "XUA",
    "XBA",
    "XBB",
    "XBC",
    "XBD",
    "XTS",
    "XXX",
}


@cache
def currencies() -> frozenset[str]:
    return frozenset(c.alpha_3 for c in pycountry.currencies) - _NOT_MONEY


def currency(value: str, field: str = "currency") -> str:
    code = value.strip().upper()
    if code not in currencies():
        raise Invalid(
            [(field, "UNKNOWN_CURRENCY", f"{quote(value)} is not an ISO 4217 currency code")]
        )
    return code


def exponent(code: str) -> int:
    return int(get_currency_precision(code))


def amount(value: int, field: str) -> int:
    """A non-negative whole number of minor units."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid([(field, "INVALID_AMOUNT", "must be a whole number of minor units")])
    if value < 0:
        raise Invalid([(field, "NEGATIVE_AMOUNT", "must not be negative")])
    if value > MAX_AMOUNT:
        raise Invalid([(field, "AMOUNT_TOO_LARGE", f"must be at most {MAX_AMOUNT}")])
    return value


def bounded(value: int, field: str, what: str) -> int:
    """A derived amount (line total, subtotal, total) that must stay within MAX_AMOUNT."""
    if value > MAX_AMOUNT:
        raise Invalid([(field, "AMOUNT_TOO_LARGE", f"the {what} must be at most {MAX_AMOUNT}")])
    return value


def parse_decimal(text: Any, code: str, field: str) -> int:
    """A platform's decimal string ("19.99") as minor units; more digits than the currency
    has, negative values and non-numbers are refused rather than rounded."""
    try:
        d = Decimal(str(text).strip())
    except (InvalidOperation, ValueError):
        raise Invalid(
            [(field, "INVALID_AMOUNT", f"{quote(text)} is not a decimal amount")]
        ) from None
    if not d.is_finite():
        raise Invalid([(field, "INVALID_AMOUNT", f"{quote(text)} is not a decimal amount")])
    minor = d.scaleb(exponent(code))
    if minor != minor.to_integral_value():
        raise Invalid(
            [
                (
                    field,
                    "INVALID_AMOUNT",
                    f"{quote(text)} has more decimals than {code} has minor units",
                )
            ]
        )
    return amount(int(minor), field)


def line_total(item: Mapping[str, Any]) -> int:
    return int(item["quantity"]) * int(item["unit_price"]) - int(item.get("discount", 0))


def subtotal(items: Iterable[Mapping[str, Any]]) -> int:
    return sum(line_total(i) for i in items)


def line_item(raw: Mapping[str, Any], field: str, code: str) -> dict[str, Any]:
    """A validated line item: sku, name, quantity > 0, unit_price >= 0, 0 <= discount <= gross,
    priced in currency ``code`` (a line naming another currency is refused)."""
    problems: list[tuple[str, str, str]] = []
    given = str(raw.get("currency") or "").strip().upper()
    if given and given != code:
        problems.append(
            (
                f"{field}.currency",
                "MIXED_CURRENCIES",
                f"{quote(given)} differs from the order's {code}",
            )
        )
    sku = str(raw.get("sku", "")).strip()
    if not sku or len(sku) > MAX_SKU or not _SKU.match(sku):
        problems.append(
            (f"{field}.sku", "INVALID_SKU", f"required, 1..{MAX_SKU} printable characters")
        )
    name = str(raw.get("name", "")).strip()
    if len(name) > MAX_NAME:
        problems.append((f"{field}.name", "INVALID_NAME", f"at most {MAX_NAME} characters"))
    quantity = raw.get("quantity", 0)
    if (
        isinstance(quantity, bool)
        or not isinstance(quantity, int)
        or not 0 < quantity <= MAX_QUANTITY
    ):
        problems.append((f"{field}.quantity", "INVALID_QUANTITY", f"must be 1..{MAX_QUANTITY}"))
    for part in ("unit_price", "discount"):
        try:
            amount(raw.get(part, 0), f"{field}.{part}")
        except Invalid as e:
            problems.extend(e.violations)
    if problems:
        raise Invalid(problems)
    item = {
        "sku": sku,
        "name": name,
        "quantity": quantity,
        "unit_price": raw.get("unit_price", 0),
        "discount": raw.get("discount", 0),
    }
    if item["discount"] > item["quantity"] * item["unit_price"]:
        raise Invalid([(f"{field}.discount", "INVALID_DISCOUNT", "exceeds the line's price")])
    bounded(line_total(item), field, "line total")
    return item


def line_items(
    raw: Sequence[Mapping[str, Any]], code: str, field: str = "items"
) -> list[dict[str, Any]]:
    if not raw:
        raise Invalid([(field, "EMPTY_ORDER", "at least one line item is required")])
    if len(raw) > MAX_LINES:
        raise Invalid([(field, "TOO_MANY_LINES", f"at most {MAX_LINES} lines")])
    problems: list[tuple[str, str, str]] = []
    items: list[dict[str, Any]] = []
    for i, r in enumerate(raw):
        try:
            items.append(line_item(r, f"{field}[{i}]", code))
        except Invalid as e:
            problems.extend(e.violations)
    if problems:
        raise Invalid(problems)
    bounded(subtotal(items), field, "subtotal")
    return items
