"""The contact's decisions: a command on one contact becomes events, or is refused."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.contacts.domain.contact.profile import UPDATABLE, ProfileInput, clean_profile
from services.contacts.domain.contact.state import (
    ARCHIVED,
    ERASED,
    REGISTERED,
    RESTORED,
    UPDATED,
    Contact,
    Event,
)
from services.contacts.domain.identity import KINDS
from shared.domain.errors import Invalid, Precondition

MAX_REASON = 500


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


def decide_register(contact_id: str, profile: ProfileInput) -> list[Event]:
    fields = clean_profile(profile.fields(), UPDATABLE)
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
    fields = clean_profile(given, dict.fromkeys(fields_))
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


def decide_erase(state: Contact, reason: str) -> list[Event]:
    """Erasure; the application destroys the data key in the same transaction."""
    if len(reason) > MAX_REASON:
        raise Invalid([("reason", "FIELD_TOO_LONG", f"at most {MAX_REASON} characters")])
    if state.erased:
        return []
    return [(ERASED, {"contact_id": state.contact_id, **({"reason": reason} if reason else {})})]
