"""The fields a rule can name, their types and the fact groups they read.

Names are case-insensitive and kept in lower case, except a currency, kept in upper case
(``revenue.eur`` is ``revenue.EUR``). Types:

- ``number``: ``orders_count`` (orders not cancelled), ``refunds_count`` (orders with a refund,
  cancelled or not), ``revenue.<CUR>`` (minor units, sum of total - refunded over the orders not
  cancelled in that currency; 0 without any), ``aov.<CUR>`` (revenue / those orders, rounded
  half up; unset without any);
- ``time``: ``created_at``, ``first_order_at`` and ``last_order_at`` (over the orders not
  cancelled; unset without any);
- ``text``: ``locale``, ``time_zone``, ``email_domain`` (the empty text is unset),
  ``consent.<channel>`` (``subscribed``, ``unsubscribed``, ``pending``; unset when never given);
- ``bool``: ``archived``, ``suppressed.<channel>`` (never unset), ``recovered`` (the most
  recently abandoned cart was recovered; unset when no cart was ever abandoned);
- ``tags``: a set of text, for ``CONTAINS`` (``IS SET``: at least one tag);
- RFM, per currency, as of the last re-score (see the service's canvas: scores move when other
  customers order, so they are re-scored for everyone at once, on a schedule):
  ``rfm_recency.<CUR>``, ``rfm_frequency.<CUR>``, ``rfm_monetary.<CUR>`` (numbers 1..5, 5 the
  best fifth) and ``rfm_group.<CUR>`` (text: ``champions``, ``loyal_customers``, … as
  shared/domain/rfm.py names them); unset for a contact with no order in that currency;
- ``any``: ``attributes.<name>``, whatever the contact stored (text, number, bool or time);
  a comparison with a value of another type is false.

Channels are ``email``, ``sms`` and ``push`` (the contacts service's); attribute names are 1..64
of a-z, 0-9 and _, starting with a letter; currencies three letters.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass


class Type(enum.Enum):
    NUMBER = "number"
    TEXT = "text"
    BOOL = "bool"
    TIME = "time"
    TAGS = "tags"
    ANY = "any"  # attributes: typed by their stored value
    DATE = "date"  # anniversary(...): a calendar date


class FactGroup(enum.Enum):
    """Groups of facts; a rule is re-evaluated when a group it reads changes."""

    PROFILE = "profile"
    CONSENT = "consent"
    ORDERS = "orders"
    PURCHASES = "purchases"
    CARTS = "carts"
    SEGMENTS = "segments"
    RFM = "rfm"  # moves at a re-score, not with the contact's own events
    TIME = "time"  # the rule's value can change with the clock alone (see next_change)


@dataclass(frozen=True, slots=True)
class FieldInfo:
    type: Type
    group: FactGroup


_PLAIN = {
    "orders_count": FieldInfo(Type.NUMBER, FactGroup.ORDERS),
    "refunds_count": FieldInfo(Type.NUMBER, FactGroup.ORDERS),
    "first_order_at": FieldInfo(Type.TIME, FactGroup.ORDERS),
    "last_order_at": FieldInfo(Type.TIME, FactGroup.ORDERS),
    "created_at": FieldInfo(Type.TIME, FactGroup.PROFILE),
    "tags": FieldInfo(Type.TAGS, FactGroup.PROFILE),
    "locale": FieldInfo(Type.TEXT, FactGroup.PROFILE),
    "time_zone": FieldInfo(Type.TEXT, FactGroup.PROFILE),
    "email_domain": FieldInfo(Type.TEXT, FactGroup.PROFILE),
    "archived": FieldInfo(Type.BOOL, FactGroup.PROFILE),
    "recovered": FieldInfo(Type.BOOL, FactGroup.CARTS),
}
CHANNELS = ("email", "sms", "push")
_ATTRIBUTE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_KEYED = {
    "attributes": (FieldInfo(Type.ANY, FactGroup.PROFILE), "an attribute name"),
    "consent": (FieldInfo(Type.TEXT, FactGroup.CONSENT), "a channel"),
    "suppressed": (FieldInfo(Type.BOOL, FactGroup.CONSENT), "a channel"),
    "revenue": (FieldInfo(Type.NUMBER, FactGroup.ORDERS), "a currency"),
    "aov": (FieldInfo(Type.NUMBER, FactGroup.ORDERS), "a currency"),
    "rfm_recency": (FieldInfo(Type.NUMBER, FactGroup.RFM), "a currency"),
    "rfm_frequency": (FieldInfo(Type.NUMBER, FactGroup.RFM), "a currency"),
    "rfm_monetary": (FieldInfo(Type.NUMBER, FactGroup.RFM), "a currency"),
    "rfm_group": (FieldInfo(Type.TEXT, FactGroup.RFM), "a currency"),
}
PER_CURRENCY = ("revenue", "aov", "rfm_recency", "rfm_frequency", "rfm_monetary", "rfm_group")
NAMES = (*_PLAIN, *(f"{k}.<{what.split()[-1]}>" for k, (_, what) in _KEYED.items()))


_DESCRIBED = {
    "number": "a number",
    "text": "a text",
    "bool": "true or false",
    "time": "a time",
    "tags": "a set of tags",
    "any": "an attribute",
    "date": "a date",
}


def described(kind: Type | str) -> str:
    """A type or value kind for a message: "a number", "a time"."""
    name = kind.value if isinstance(kind, Type) else kind
    return _DESCRIBED.get(name, name)


def normalize(path: str) -> str:
    """The canonical spelling of a path: lower case, the currency upper case."""
    head, dot, key = path.lower().partition(".")
    if head in PER_CURRENCY and dot:
        key = key.upper()
    return head + dot + key


def split(path: str) -> tuple[str, str]:
    """``attributes.birthday`` -> (``attributes``, ``birthday``); ``tags`` -> (``tags``, "")."""
    head, _, key = path.partition(".")
    return head, key


def lookup(path: str) -> FieldInfo | str:
    """The field's type and group, or why the (canonical) path names no field."""
    if path in _PLAIN:
        return _PLAIN[path]
    head, dot, key = path.partition(".")
    if head not in _KEYED:
        return f"unknown field {path!r}; fields are {', '.join(NAMES)}"
    info, what = _KEYED[head]
    if not dot or not key:
        return f"{head}.<{what.split()[-1]}>: name {what}, e.g. {head}.{_example(head)}"
    ok = (
        key in CHANNELS
        if head in ("consent", "suppressed")
        else _CURRENCY.fullmatch(key)
        if head in PER_CURRENCY
        else _ATTRIBUTE.fullmatch(key)
    )
    if not ok:
        return f"{path!r}: {key!r} is not {what} ({_rule_for(head)})"
    return info


def _example(head: str) -> str:
    return "birthday" if head == "attributes" else "EUR" if head in PER_CURRENCY else "email"


def _rule_for(head: str) -> str:
    if head in ("consent", "suppressed"):
        return "one of " + ", ".join(CHANNELS)
    if head in PER_CURRENCY:
        return "three letters, e.g. EUR"
    return "1..64 of a-z, 0-9 and _, starting with a letter"
