"""A contact's time zone as contacts' published events set it, pure: the one rule the flow
engine, the dry runs and the campaigns' zones read model fold by."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ZONED = ("crm.contacts.v1.ContactRegistered", "crm.contacts.v1.ContactUpdated")


def zone_set(type_: str, data: Mapping[str, Any]) -> str | None:
    """The zone the event gives its contact ("" for none), or None when it leaves it as it was
    (another event, or an update whose changed fields do not name the time zone)."""
    if type_ not in ZONED:
        return None
    changed = data.get("changed_fields")
    if changed is not None and "time_zone" not in changed:
        return None
    return str(data.get("time_zone", ""))
