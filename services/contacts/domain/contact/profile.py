"""A contact's profile fields as a command gives them, and their validation and normalising."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.contacts.domain.identity import NORMALISERS, BadIdentity
from shared.domain.errors import Invalid, quote

MAX_NAME = 200
MAX_TAGS = 100
MAX_TAG = 64
MAX_ATTRIBUTES = 100
MAX_ATTRIBUTE_TEXT = 1000
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


def clean_profile(fields: Mapping[str, Any], only: Iterable[str]) -> dict[str, Any]:
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
