"""What segmentation knows about one contact: the facts its rules read.

Built from the events contacts and orders publish (never from their tables). Only what rules
use is kept; personal fields (the email's domain, custom attributes) are dropped when the
contact is erased. The same facts live in the facts tables (adapters/facts_tables.py), which
the bulk evaluator reads with SQL; both evaluators must agree on every rule.

Field names as rules write them (``orders_count >= 3 AND last_order_at > -30d``):

- profile: ``created_at``, ``tags`` (set of text), ``locale``, ``time_zone``, ``email_domain``,
  ``archived`` (bool), ``attributes.<name>`` (text, number, bool or time);
- consent: ``consent.<channel>`` (``subscribed``, ``unsubscribed``, ``pending`` or unset),
  ``suppressed.<channel>`` (bool);
- orders: ``orders_count``, ``first_order_at``, ``last_order_at``, ``revenue.<CUR>`` (minor
  units, net of refunds), ``aov.<CUR>`` (revenue / orders in that currency, rounded half up),
  ``refunds_count``; behaviour over windows through ``placed_order(...)``,
  ``purchased(...)``, ``abandoned_cart(...)`` and ``recovered`` (the latest abandoned cart
  was recovered);
- RFM (as of the last re-score): ``rfm_recency.<CUR>``, ``rfm_frequency.<CUR>``,
  ``rfm_monetary.<CUR>`` (1..5), ``rfm_group.<CUR>``;
- ``in_segment('<key>')``, ``random_bucket(a, b)`` (``a <= bucket < b``, ``bucket`` in 0..99 is
  fixed per contact), ``anniversary(attributes.<name>)``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

# An attribute's value as rules see it.
AttributeValue = str | float | bool | datetime


@dataclass(frozen=True, slots=True)
class OrderFact:
    order_id: str
    currency: str
    total: int  # minor units, as placed
    refunded: int  # minor units refunded so far
    place_time: datetime
    cancelled: bool = False


@dataclass(frozen=True, slots=True)
class PurchaseFact:
    order_id: str
    sku: str
    quantity: int
    time: datetime  # the order's place time


@dataclass(frozen=True, slots=True)
class CartFact:
    cart_id: str
    abandoned_time: datetime | None  # None: not abandoned
    recovered: bool = False


@dataclass(frozen=True, slots=True)
class RfmScore:
    """A customer's RFM scores in one currency at the last re-score (shared/domain/rfm.py)."""

    recency: int
    frequency: int
    monetary: int
    group: str


@dataclass(frozen=True, slots=True)
class Facts:
    contact_id: str
    created_at: datetime | None = None
    tags: frozenset[str] = frozenset()
    locale: str = ""
    time_zone: str = ""
    email_domain: str = ""
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)
    consent: Mapping[str, str] = field(default_factory=dict)  # channel -> state
    suppressed: frozenset[str] = frozenset()  # channels
    archived: bool = False
    erased: bool = False
    merged_into: str = ""  # a merged contact is in no segment
    orders: tuple[OrderFact, ...] = ()
    purchases: tuple[PurchaseFact, ...] = ()
    carts: tuple[CartFact, ...] = ()
    segments: frozenset[str] = frozenset()  # keys of the segments the contact is in
    rfm: Mapping[str, RfmScore] = field(default_factory=dict)  # currency -> scores
    # What rules computed from these facts (a field's value, the live orders), kept for the
    # next rule: a page evaluates dozens of rules on one contact. Never part of equality.
    memo: dict[object, Any] = field(
        default_factory=dict, init=False, compare=False, repr=False, hash=False
    )

    @property
    def bucket(self) -> int:
        return bucket_of(self.contact_id)

    def in_segments(self, keys: frozenset[str]) -> Facts:
        """The same facts as a member of ``keys`` (what rules computed stays valid: nothing
        but ``in_segment`` reads memberships)."""
        out = replace(self, segments=keys)
        out.memo.update(self.memo)
        return out


def bucket_of(contact_id: str) -> int:
    """The contact's fixed bucket in 0..99 (``random_bucket``): the first two bytes of the
    SHA-256 of its id, modulo 100. The facts tables store the same number."""
    digest = hashlib.sha256(contact_id.encode()).digest()
    return int.from_bytes(digest[:2], "big") % 100
