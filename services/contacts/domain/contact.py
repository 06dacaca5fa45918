"""The contact aggregate: state, evolve (fold one event) and decide (command -> events).

Events are dicts shaped as the JSON of the messages in protos/crm/contacts/v1/events.proto.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from services.contacts.domain.identity import KINDS, NORMALISERS, BadIdentity
from shared.domain.errors import Invalid, Precondition, quote

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

MAX_NAME = 200
MAX_TAGS = 100
MAX_TAG = 64
MAX_ATTRIBUTES = 100
MAX_ATTRIBUTE_TEXT = 1000
MAX_REASON = 500
_TAG = re.compile(r"^[a-z0-9][a-z0-9_:.\-]*$")
_ATTRIBUTE_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_LOCALE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
_ATTRIBUTE_KINDS = ("string_value", "number_value", "bool_value", "timestamp_value")
UPDATABLE = (
    "email",
    "phone",
    "external_id",
    "first_name",
    "last_name",
    "tags",
    "locale",
    "time_zone",
    "attributes",
)

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


@dataclass(frozen=True, slots=True)
class ProfileInput:
    """Raw profile fields from a command, before validation."""

    email: str = ""
    phone: str = ""
    external_id: str = ""
    first_name: str = ""
    last_name: str = ""
    tags: Sequence[str] = field(default_factory=tuple)
    locale: str = ""
    time_zone: str = ""
    attributes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in UPDATABLE}


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
        elif name == "locale":
            value = value.strip()
            if value and not _LOCALE.match(value):
                problems.append((name, "INVALID_LOCALE", "a BCP 47 language tag such as en-GB"))
            out[name] = value
        elif name == "time_zone":
            value = value.strip()
            if value and value not in _time_zones():
                problems.append(
                    (name, "INVALID_TIME_ZONE", "an IANA time zone such as Europe/Paris")
                )
            out[name] = value
        elif name == "attributes":
            attrs, why = _clean_attributes(value)
            if why:
                problems.append(("attributes", "INVALID_ATTRIBUTE", why))
            out[name] = attrs
        elif name == "tags":
            tags = list(dict.fromkeys(t.strip().lower() for t in value))
            if len(tags) > MAX_TAGS:
                problems.append(("tags", "TOO_MANY_TAGS", f"at most {MAX_TAGS} tags"))
            bad = [t for t in tags if len(t) > MAX_TAG or not _TAG.match(t)]
            if bad:
                problems.append(
                    ("tags", "INVALID_TAG", f"{quote(bad[0])}: 1..{MAX_TAG} of a-z 0-9 _ : . - ")
                )
            out["tags"] = tags
    if problems:
        raise Invalid(problems)
    return out


def _time_zones() -> frozenset[str]:
    global _TZ
    if _TZ is None:
        import zoneinfo

        _TZ = frozenset(zoneinfo.available_timezones())
    return _TZ


_TZ: frozenset[str] | None = None


def _clean_attributes(value: Mapping[str, Any]) -> tuple[dict[str, dict[str, Any]], str]:
    """Attributes in their JSON form: {name: {"string_value": "x"}} and so on."""
    out: dict[str, dict[str, Any]] = {}
    if len(value) > MAX_ATTRIBUTES:
        return out, f"at most {MAX_ATTRIBUTES} attributes"
    for name, typed in value.items():
        if not _ATTRIBUTE_KEY.match(name):
            return out, f"{quote(name)}: names are 1..64 of a-z 0-9 _, starting with a letter"
        if len(typed) != 1 or next(iter(typed)) not in _ATTRIBUTE_KINDS:
            return out, f"{quote(name)}: set exactly one of {', '.join(_ATTRIBUTE_KINDS)}"
        kind, v = next(iter(typed.items()))
        if why := _attribute_problem(kind, v):
            return out, f"{quote(name)}: {why}"
        out[name] = {kind: v}
    return out, ""


def _attribute_problem(kind: str, v: Any) -> str:
    """Why a value in its JSON form is not valid for its kind ("" when it is)."""
    if kind == "string_value":
        ok = isinstance(v, str) and len(v) <= MAX_ATTRIBUTE_TEXT
        return "" if ok else f"text of at most {MAX_ATTRIBUTE_TEXT} characters"
    if kind == "number_value":  # non-finite doubles arrive as "Infinity"/"NaN" strings
        ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        return "" if ok else "numbers must be finite"
    if kind == "bool_value":
        return "" if isinstance(v, bool) else "must be true or false"
    try:
        at = datetime.fromisoformat(str(v).replace("Z", "+00:00"))
    except ValueError:
        return "timestamps are RFC 3339"
    return "" if at.tzinfo is not None else "timestamps need a time zone offset"


def _writable(state: Contact) -> None:
    if state.erased:
        raise Precondition("CONTACT_ERASED", f"contact {state.contact_id} was erased")
    if state.merged_into:
        raise Precondition(
            "CONTACT_MERGED",
            f"contact {state.contact_id} was merged into {state.merged_into}",
            survivor_id=state.merged_into,
        )
    if state.archived:
        raise Precondition(
            "CONTACT_ARCHIVED", f"contact {state.contact_id} is archived; restore it first"
        )


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
    """``paths`` name fields of UPDATABLE; "attributes.<name>" sets (or, when absent from the
    input, removes) one attribute and keeps the others."""
    _writable(state)
    fields_ = [p.split(".", 1)[0] for p in paths]
    bad = [
        p
        for p, f in zip(paths, fields_, strict=True)
        if f not in UPDATABLE or ("." in p and f != "attributes")
    ]
    if not paths or bad:
        raise Invalid(
            [("update_mask", "INVALID_FIELD_MASK", f"paths must be some of {', '.join(UPDATABLE)}")]
        )
    given = profile.fields()
    keyed = [p.split(".", 1)[1] for p in paths if p.startswith("attributes.")]
    if keyed and "attributes" not in paths:
        merged = dict(state.attributes)
        for k in keyed:
            if k in given["attributes"]:
                merged[k] = given["attributes"][k]
            else:
                merged.pop(k, None)
        given["attributes"] = merged
    fields = _clean(given, dict.fromkeys(fields_))
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


def decide_archive(state: Contact, reason: str) -> list[Event]:
    if state.erased:
        raise Precondition("CONTACT_ERASED", f"contact {state.contact_id} was erased")
    if len(reason) > MAX_REASON:
        raise Invalid([("reason", "FIELD_TOO_LONG", f"at most {MAX_REASON} characters")])
    if state.archived:
        return []
    return [(ARCHIVED, {"contact_id": state.contact_id, **({"reason": reason} if reason else {})})]


def decide_restore(state: Contact) -> list[Event]:
    if state.erased:
        raise Precondition("CONTACT_ERASED", f"contact {state.contact_id} was erased")
    return [(RESTORED, {"contact_id": state.contact_id})] if state.archived else []


def decide_merge(survivor: Contact, merged: Contact) -> tuple[list[Event], list[Event]]:
    """Events for (survivor stream, merged stream). Identities the survivor lacks move to it;
    the others stay claimed by the merged contact, whose id now points at the survivor."""
    if survivor.contact_id == merged.contact_id:
        raise Invalid([("merged_id", "SAME_CONTACT", "a contact cannot be merged with itself")])
    for c in (survivor, merged):
        if c.erased:
            raise Precondition("CONTACT_ERASED", f"contact {c.contact_id} was erased")
        if c.merged_into:
            raise Precondition(
                "CONTACT_MERGED",
                f"contact {c.contact_id} is already merged into {c.merged_into}",
                survivor_id=c.merged_into,
            )
    moved = [k for k in KINDS if getattr(merged, k) and not getattr(survivor, k)]
    values = {k: getattr(merged, k) for k in moved}
    return (
        [
            (
                ABSORBED,
                {
                    "contact_id": survivor.contact_id,
                    "merged_id": merged.contact_id,
                    "moved_fields": moved,
                    **values,
                },
            )
        ],
        [
            (
                MERGED,
                {
                    "contact_id": merged.contact_id,
                    "survivor_id": survivor.contact_id,
                    "moved_fields": moved,
                },
            )
        ],
    )


def decide_unmerge(
    survivor: Contact, merged: Contact, before: Contact
) -> tuple[list[Event], list[Event]]:
    """Undo a merge. ``before`` is the merged contact as it was just before the merge: its moved
    identities come back to it, and the survivor lets go of those it still holds."""
    if merged.erased:
        raise Precondition("CONTACT_ERASED", f"contact {merged.contact_id} was erased")
    if merged.merged_into != survivor.contact_id:
        raise Precondition("NOT_MERGED", f"contact {merged.contact_id} is not merged")
    moved = [k for k in KINDS if getattr(before, k) and not getattr(merged, k)]
    cleared = [k for k in moved if getattr(survivor, k) == getattr(before, k)]
    return (
        [
            (
                ABSORPTION_REVERTED,
                {
                    "contact_id": survivor.contact_id,
                    "merged_id": merged.contact_id,
                    "cleared_fields": cleared,
                },
            )
        ],
        [
            (
                UNMERGED,
                {
                    "contact_id": merged.contact_id,
                    "survivor_id": survivor.contact_id,
                    "restored_fields": moved,
                    **{k: getattr(before, k) for k in moved},
                },
            )
        ],
    )


def decide_erase(state: Contact, reason: str) -> list[Event]:
    """Erasure; the application destroys the data key in the same transaction."""
    if len(reason) > MAX_REASON:
        raise Invalid([("reason", "FIELD_TOO_LONG", f"at most {MAX_REASON} characters")])
    if state.erased:
        return []
    return [(ERASED, {"contact_id": state.contact_id, **({"reason": reason} if reason else {})})]


def identity_changes(
    before: Contact | None, after: Contact
) -> tuple[dict[str, str], dict[str, str]]:
    """Identities to claim and to release when going from ``before`` to ``after``."""
    old = before.identities() if before else {}
    new = after.identities()
    claim = {k: v for k, v in new.items() if old.get(k) != v}
    release = {k: v for k, v in old.items() if new.get(k) != v}
    return claim, release
