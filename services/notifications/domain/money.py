"""The ``money`` filter of templates: an amount in minor units (as orders keeps money) written
for the locale of the message being rendered (render.py sets LOCALE for each field)."""

from __future__ import annotations

import contextvars
from decimal import Decimal
from typing import Any

from babel.core import UnknownLocaleError
from babel.numbers import format_currency, get_currency_precision, is_currency
from jinja2 import pass_context

LOCALE: contextvars.ContextVar[str] = contextvars.ContextVar("locale", default="")


@pass_context  # never folded at compile time: the locale is the render's
def money(_context: Any, amount: Any, currency: Any) -> str:
    """``amount`` minor units of ``currency`` (ISO 4217), written for the message's locale."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError(f"money: the amount must be an integer of minor units, not {amount!r}")
    code = str(currency).upper()
    if not is_currency(code):
        raise ValueError(f"money: unknown currency {currency!r}")
    value = Decimal(amount).scaleb(-get_currency_precision(code))
    try:
        return str(format_currency(value, code, locale=LOCALE.get().replace("-", "_") or "en"))
    except (UnknownLocaleError, ValueError):  # a locale babel does not know: English
        return str(format_currency(value, code, locale="en"))
