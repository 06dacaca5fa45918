"""Which published events start a run of a flow, and which end one, pure.

- A run starts for the contact an event names (``contact_id``) when the event is the flow's
  trigger type, its filter matches the event's top-level fields, and for segment events the
  segment is the flow's; backfill never starts a run unless the flow asks
  (``include_backfill``): events imported in bulk (``backfill`` in their metadata) and segment
  entries of a new segment or a changed rule.
- The trigger key is what the event is about, an order or a cart, else the contact: one run per
  (flow, contact, key), so each abandoned cart has its follow-up.
- The run keeps the event's type and id and its top-level plain fields (not ``personal``, the
  sealed part of contacts' events): conditions and templates read them as trigger data.
- A run ends early on the flow's exit events, and every run of a flow that sends marketing ends
  when the contact withdraws a consent or is erased.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.notifications.domain.flows import definition as fd
from services.notifications.domain.flows.check import SEGMENT_EVENTS

KEYS = ("order_id", "cart_id")  # what an event is about, before the contact
BACKFILL_CAUSES = frozenset({"MEMBERSHIP_CAUSE_BACKFILL", "MEMBERSHIP_CAUSE_RULE_CHANGED"})
ENDS_MARKETING = frozenset({"crm.contacts.v1.ConsentWithdrawn", "crm.contacts.v1.ContactErased"})


@dataclass(frozen=True)
class Start:
    contact_id: str
    trigger_key: str
    trigger: Mapping[str, Any]  # event_type, event_id and the event's plain top-level fields


def starts(
    flow: fd.Flow,
    event_type: str,
    event_id: str,
    data: Mapping[str, Any],
    metadata: Mapping[str, Any],
) -> Start | None:
    """The run this event starts (before re-entry is considered), or None."""
    t = flow.trigger
    if not isinstance(t, fd.EventTrigger) or t.event_type != event_type:
        return None
    contact_id = str(data.get("contact_id", ""))
    if not contact_id:
        return None
    backfill = bool(metadata.get("backfill"))
    if event_type in SEGMENT_EVENTS:
        if data.get("segment_key") != t.segment:
            return None
        backfill = backfill or data.get("cause") in BACKFILL_CAUSES
    if (backfill and not t.include_backfill) or not matches(t.filter, data):
        return None
    key = next((str(data[k]) for k in KEYS if data.get(k)), contact_id)
    plain = {k: v for k, v in data.items() if k != "personal" and isinstance(v, str | int | bool)}
    return Start(contact_id, key, {**plain, "event_type": event_type, "event_id": event_id})


def matches(filter_: Mapping[str, str], data: Mapping[str, Any]) -> bool:
    """Every filter field equals the event's (as text)."""
    return all(str(data.get(k, "")) == v for k, v in filter_.items())


def sends_marketing(flow: fd.Flow) -> bool:
    return any(isinstance(s.action, fd.Send) and s.action.kind == fd.MARKETING for s in flow.steps)


def ends_runs(flow: fd.Flow, event_type: str) -> bool:
    """Whether this event of a contact ends the contact's runs of the flow."""
    return event_type in flow.exit_events or (
        event_type in ENDS_MARKETING and sends_marketing(flow)
    )
