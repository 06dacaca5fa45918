"""The contact aggregate: state, evolve (fold one event) and decide (command -> events).

Events are dicts shaped as the JSON of the messages in protos/crm/contacts/v1/events.proto.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from services.contacts.domain.errors import Invalid
from services.contacts.domain.identity import KINDS, NORMALISERS, BadIdentity

PREFIX = "crm.contacts.v1."
REGISTERED = PREFIX + "ContactRegistered"
UPDATED = PREFIX + "ContactUpdated"
IDENTITY_CLAIMED = PREFIX + "IdentityClaimed"
IDENTITY_RELEASED = PREFIX + "IdentityReleased"

MAX_NAME = 200
MAX_TAGS = 100
MAX_TAG = 64
_TAG = re.compile(r"^[a-z0-9][a-z0-9_:.\-]*$")
UPDATABLE = ("email", "phone", "external_id", "first_name", "last_name", "tags")

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
    version: int = -1  # stream version; the etag
    create_time: datetime | None = None
    update_time: datetime | None = None

    def identities(self) -> dict[str, str]:
        return {k: v for k in KINDS if (v := getattr(self, k))}


@dataclass(frozen=True, slots=True)
class ProfileInput:
    """Raw profile fields from a command, before validation."""

    email: str = ""
    phone: str = ""
    external_id: str = ""
    first_name: str = ""
    last_name: str = ""
    tags: Sequence[str] = field(default_factory=tuple)

    def fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in UPDATABLE}


def evolve(
    state: Contact | None, type_: str, data: Mapping[str, Any], at: datetime, version: int
) -> Contact:
    if type_ == REGISTERED:
        return Contact(
            contact_id=data["contact_id"],
            email=data.get("email", ""),
            phone=data.get("phone", ""),
            external_id=data.get("external_id", ""),
            first_name=data.get("first_name", ""),
            last_name=data.get("last_name", ""),
            tags=tuple(data.get("tags", ())),
            version=version,
            create_time=at,
            update_time=at,
        )
    assert state is not None, f"{type_} before ContactRegistered"
    if type_ == UPDATED:
        changes = {
            f: data.get(f, "" if f != "tags" else []) for f in data.get("changed_fields", [])
        }
        if "tags" in changes:
            changes["tags"] = tuple(changes["tags"])
        return replace(state, **changes, version=version, update_time=at)
    return replace(state, version=version)


def fold(events: Iterable[tuple[str, Mapping[str, Any], datetime, int]]) -> Contact | None:
    state: Contact | None = None
    for type_, data, at, version in events:
        state = evolve(state, type_, data, at, version)
    return state


# --- validation ---------------------------------------------------------------------------------


def _clean(fields: Mapping[str, Any], only: Iterable[str]) -> dict[str, Any]:
    """Validate and normalise the named fields; raise Invalid listing every problem."""
    out: dict[str, Any] = {}
    problems: list[tuple[str, str, str]] = []
    for name in only:
        value = fields.get(name, "" if name != "tags" else ())
        if name in NORMALISERS:
            if value == "":
                out[name] = ""
                continue
            try:
                out[name] = NORMALISERS[name](value)
            except BadIdentity as exc:
                problems.append((name, f"INVALID_{name.upper()}", str(exc)))
        elif name in ("first_name", "last_name"):
            value = value.strip()
            if len(value) > MAX_NAME:
                problems.append((name, "FIELD_TOO_LONG", f"at most {MAX_NAME} characters"))
            out[name] = value
        elif name == "tags":
            tags = list(dict.fromkeys(t.strip().lower() for t in value))
            if len(tags) > MAX_TAGS:
                problems.append(("tags", "TOO_MANY_TAGS", f"at most {MAX_TAGS} tags"))
            bad = [t for t in tags if len(t) > MAX_TAG or not _TAG.match(t)]
            if bad:
                problems.append(
                    ("tags", "INVALID_TAG", f"{bad[0]!r}: 1..{MAX_TAG} of a-z 0-9 _ : . - ")
                )
            out["tags"] = tags
    if problems:
        raise Invalid(problems)
    return out


# --- decide -------------------------------------------------------------------------------------


def decide_register(contact_id: str, profile: ProfileInput) -> list[Event]:
    fields = _clean(profile.fields(), UPDATABLE)
    if not any(fields[k] for k in KINDS):
        raise Invalid(
            [("email", "IDENTITY_REQUIRED", "one of email, phone, external_id is required")]
        )
    data = {"contact_id": contact_id, **{k: v for k, v in fields.items() if v}}
    return [(REGISTERED, data)]


def decide_update(state: Contact, paths: Sequence[str], profile: ProfileInput) -> list[Event]:
    unknown = [p for p in paths if p not in UPDATABLE]
    if not paths or unknown:
        raise Invalid(
            [("update_mask", "INVALID_FIELD_MASK", f"paths must be some of {', '.join(UPDATABLE)}")]
        )
    fields = _clean(profile.fields(), dict.fromkeys(paths))
    after = {k: (tuple(v) if k == "tags" else v) for k, v in fields.items()}
    changed = [k for k, v in after.items() if getattr(state, k) != v]
    remaining = {k: after.get(k, getattr(state, k)) for k in KINDS}
    if not any(remaining.values()):
        raise Invalid(
            [("update_mask", "IDENTITY_REQUIRED", "a contact keeps at least one identity")]
        )
    if not changed:
        return []
    data: dict[str, Any] = {"contact_id": state.contact_id, "changed_fields": changed}
    data.update({k: (list(after[k]) if k == "tags" else after[k]) for k in changed if after[k]})
    return [(UPDATED, data)]


def identity_changes(
    before: Contact | None, after: Contact
) -> tuple[dict[str, str], dict[str, str]]:
    """Identities to claim and to release when going from ``before`` to ``after``."""
    old = before.identities() if before else {}
    new = after.identities()
    claim = {k: v for k, v in new.items() if old.get(k) != v}
    release = {k: v for k, v in old.items() if new.get(k) != v}
    return claim, release
