"""A contact's time zone as contacts' published events set it, pure: the one rule the flow
engine, the dry runs and the campaigns' zones read model fold by."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ERASED = "crm.contacts.v1.ContactErased"
ZONED = ("crm.contacts.v1.ContactRegistered", "crm.contacts.v1.ContactUpdated", ERASED)


def zone_set(type_: str, data: Mapping[str, Any]) -> str | None:
    """The zone the event gives its contact ("" for none: an erased contact's is forgotten),
    or None when it leaves it as it was (another event, or an update whose changed fields do
    not name the time zone)."""
    if type_ not in ZONED:
        return None
    if type_ == ERASED:
        return ""
    changed = data.get("changed_fields")
    if changed is not None and "time_zone" not in changed:
        return None
    return str(data.get("time_zone", ""))
