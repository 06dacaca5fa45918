"""The contact's events and its state folded from them: ``evolve`` applies one event.

Events are dicts shaped as the JSON of the messages in protos/crm/contacts/v1/events.proto.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from services.contacts.domain.identity import KINDS

PREFIX = "crm.contacts.v1."
REGISTERED = PREFIX + "ContactRegistered"
UPDATED = PREFIX + "ContactUpdated"
IDENTITY_CLAIMED = PREFIX + "IdentityClaimed"
IDENTITY_RELEASED = PREFIX + "IdentityReleased"
ARCHIVED = PREFIX + "ContactArchived"
RESTORED = PREFIX + "ContactRestored"
ERASED = PREFIX + "ContactErased"
MERGED = PREFIX + "ContactMerged"
ABSORBED = PREFIX + "ContactAbsorbed"
UNMERGED = PREFIX + "ContactUnmerged"
ABSORPTION_REVERTED = PREFIX + "ContactAbsorptionReverted"
PERSONAL_FIELDS = ("email", "phone", "external_id", "first_name", "last_name", "attributes")

Event = tuple[str, dict[str, Any]]  # (type, data)


def stream_of(contact_id: str) -> str:
    return f"contact-{contact_id}"


@dataclass(frozen=True, slots=True)
class Contact:
    contact_id: str
    email: str = ""
    phone: str = ""
    external_id: str = ""
    first_name: str = ""
    last_name: str = ""
    tags: tuple[str, ...] = ()
    locale: str = ""
    time_zone: str = ""
    # name -> {"string_value" | "number_value" | "bool_value" | "timestamp_value": value}
    attributes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    archived: bool = False
    erased: bool = False
    merged_into: str = ""  # the survivor, once merged
    version: int = -1  # stream version; the etag
    create_time: datetime | None = None
    update_time: datetime | None = None

    def identities(self) -> dict[str, str]:
        return {k: v for k in KINDS if (v := getattr(self, k))}


def evolve(
    state: Contact | None, type_: str, data: Mapping[str, Any], at: datetime, version: int
) -> Contact:
    """Fold one (decrypted) event into the contact."""
    if type_ == REGISTERED:
        return Contact(
            contact_id=data["contact_id"],
            email=data.get("email", ""),
            phone=data.get("phone", ""),
            external_id=data.get("external_id", ""),
            first_name=data.get("first_name", ""),
            last_name=data.get("last_name", ""),
            tags=tuple(data.get("tags", ())),
            locale=data.get("locale", ""),
            time_zone=data.get("time_zone", ""),
            attributes=dict(data.get("attributes", {})),
            version=version,
            create_time=at,
            update_time=at,
        )
    assert state is not None, f"{type_} before ContactRegistered"
    if type_ == UPDATED:
        changes = {f: data.get(f, _EMPTY.get(f, "")) for f in data.get("changed_fields", [])}
        if "tags" in changes:
            changes["tags"] = tuple(changes["tags"])
        if "attributes" in changes:
            changes["attributes"] = dict(changes["attributes"])
        return replace(state, **changes, version=version, update_time=at)
    if type_ == ARCHIVED:
        return replace(state, archived=True, version=version, update_time=at)
    if type_ == RESTORED:
        return replace(state, archived=False, version=version, update_time=at)
    if type_ == MERGED:
        moved: dict[str, Any] = {f: "" for f in data.get("moved_fields", [])}
        return replace(
            state, **moved, merged_into=data["survivor_id"], version=version, update_time=at
        )
    if type_ in (ABSORBED, UNMERGED):
        fields = data.get("moved_fields") or data.get("restored_fields") or []
        restored: dict[str, Any] = {f: data.get(f, "") for f in fields}
        return replace(state, **restored, merged_into="", version=version, update_time=at)
    if type_ == ABSORPTION_REVERTED:
        cleared: dict[str, Any] = {f: "" for f in data.get("cleared_fields", [])}
        return replace(state, **cleared, version=version, update_time=at)
    if type_ == ERASED:
        blank = {f: _EMPTY.get(f, "") for f in PERSONAL_FIELDS}
        return replace(state, **blank, tags=(), erased=True, version=version, update_time=at)
    return replace(state, version=version)


_EMPTY: dict[str, Any] = {"tags": [], "attributes": {}}


def fold(events: Iterable[tuple[str, Mapping[str, Any], datetime, int]]) -> Contact | None:
    state: Contact | None = None
    for type_, data, at, version in events:
        state = evolve(state, type_, data, at, version)
    return state


def identity_changes(
    before: Contact | None, after: Contact
) -> tuple[dict[str, str], dict[str, str]]:
    """Identities to claim and to release when going from ``before`` to ``after``."""
    old = before.identities() if before else {}
    new = after.identities()
    claim = {k: v for k, v in new.items() if old.get(k) != v}
    release = {k: v for k, v in old.items() if new.get(k) != v}
    return claim, release
