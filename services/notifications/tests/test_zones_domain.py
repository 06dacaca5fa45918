"""A contact's time zone as contacts' events set it (domain/zones.py): registered and updated
(when the update names it) set it, an erased contact's is forgotten, other events leave it."""

from __future__ import annotations

from typing import Any

import pytest

from services.notifications.domain.zones import zone_set

C = "crm.contacts.v1."


@pytest.mark.parametrize(
    ("type_", "data", "zone"),
    [
        (C + "ContactRegistered", {"time_zone": "Europe/Paris"}, "Europe/Paris"),
        (C + "ContactRegistered", {}, ""),
        (
            C + "ContactUpdated",
            {"time_zone": "Asia/Tokyo", "changed_fields": ["time_zone"]},
            "Asia/Tokyo",
        ),
        (C + "ContactUpdated", {"first_name": "x", "changed_fields": ["first_name"]}, None),
        (C + "ContactUpdated", {"time_zone": "Asia/Tokyo"}, "Asia/Tokyo"),  # older form: no list
        (C + "ContactErased", {"contact_id": "c"}, ""),
        (C + "ConsentGranted", {"time_zone": "Asia/Tokyo"}, None),
    ],
)
def test_a_zone_as_the_event_sets_it(type_: str, data: dict[str, Any], zone: str | None) -> None:
    assert zone_set(type_, data) == zone
