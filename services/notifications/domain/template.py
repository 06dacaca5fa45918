"""A template: its key, channel, name and per-locale variants, versioned by events (pure
decide/evolve). Every save is checked: the variants' shape for the channel, their locales and
their Jinja2 syntax (field and line)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from services.notifications.domain import locale as loc
from services.notifications.domain.render import syntax_errors
from services.notifications.domain.variant import CHANNELS, OPTIONAL, PARTS, TEXT_FIELDS, Variant
from shared.domain.errors import Invalid, NotFound, Precondition

PREFIX = "crm.notifications.v1."
CREATED = PREFIX + "TemplateCreated"
REVISED = PREFIX + "TemplateRevised"
ARCHIVED = PREFIX + "TemplateArchived"

KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MAX_NAME = 200
MAX_VARIANTS = 50

Event = tuple[str, dict[str, Any]]
Violation = tuple[str, str, str]


def stream_of(template_id: str) -> str:
    return f"template-{template_id}"


def key_stream(key: str) -> str:
    """The stream whose first event claims a key: two templates never share one."""
    return f"templatekey-{key}"


@dataclass(frozen=True, slots=True)
class Version:
    version: int
    name: str
    variants: tuple[Variant, ...]
    create_time: datetime | None = None

    def variant(self, locale: str) -> Variant | None:
        """The variant for ``locale`` after fallback (fr-CA → fr → default)."""
        chosen = loc.pick({v.locale for v in self.variants}, locale)
        return next((v for v in self.variants if v.locale == chosen), None)


@dataclass(frozen=True, slots=True)
class Template:
    template_id: str
    key: str
    channel: str
    versions: tuple[Version, ...]
    archived: bool = False
    version: int = -1  # the stream version: the etag
    create_time: datetime | None = None
    update_time: datetime | None = None

    @property
    def latest(self) -> Version:
        return self.versions[-1]

    def at(self, version: int) -> Version:
        """Template version ``version`` (0: the latest); NotFound when there is none."""
        if version == 0:
            return self.latest
        if 1 <= version <= len(self.versions):
            return self.versions[version - 1]
        raise NotFound(
            "VERSION_NOT_FOUND",
            f"template {self.key} has versions 1..{len(self.versions)}",
            template_id=self.template_id,
        )


def _variants(data: Mapping[str, Any]) -> tuple[Variant, ...]:
    return tuple(Variant.from_data(v) for v in data.get("variants", []))


def evolve(
    state: Template | None, type_: str, data: Mapping[str, Any], at: datetime, version: int
) -> Template:
    if type_ == CREATED:
        first = Version(1, data.get("name", ""), _variants(data), at)
        return Template(
            template_id=data["template_id"],
            key=data["key"],
            channel=data["channel"],
            versions=(first,),
            version=version,
            create_time=at,
            update_time=at,
        )
    assert state is not None, f"{type_} before TemplateCreated"
    if type_ == REVISED:
        added = Version(int(data["version"]), data.get("name", ""), _variants(data), at)
        return replace(state, versions=(*state.versions, added), version=version, update_time=at)
    if type_ == ARCHIVED:
        return replace(state, archived=True, version=version, update_time=at)
    return replace(state, version=version)


def fold(events: Iterable[tuple[str, Mapping[str, Any], datetime, int]]) -> Template | None:
    state = None
    for type_, data, at, version in events:
        state = evolve(state, type_, data, at, version)
    return state


def _check_variants(channel: str, variants: Sequence[Variant]) -> list[Violation]:
    problems: list[Violation] = []
    if not variants:
        return [("variants", "MISSING_DEFAULT_VARIANT", "at least the default variant (locale '')")]
    if len(variants) > MAX_VARIANTS:
        return [("variants", "TOO_MANY_VARIANTS", f"at most {MAX_VARIANTS}")]
    seen: set[str] = set()
    for i, v in enumerate(variants):
        at = f"variants[{i}]"
        try:
            tag = loc.canonical(v.locale)
        except loc.LocaleError as err:
            problems.append((f"{at}.locale", "INVALID_LOCALE", str(err)))
            continue
        if tag in seen:
            problems.append((f"{at}.locale", "DUPLICATE_LOCALE", f"{tag or 'default'} twice"))
        seen.add(tag)
        parts = PARTS.get(channel, ())
        for name in TEXT_FIELDS:
            text = v.part(name)
            if name not in parts and text:
                problems.append((f"{at}.{name}", "INVALID_VARIANT", f"not used by {channel}"))
            elif name in parts and not text.strip() and (channel, name) not in OPTIONAL:
                problems.append((f"{at}.{name}", "INVALID_VARIANT", f"required for {channel}"))
        sources = {name: v.part(name) for name in parts if v.part(name)}
        for p in syntax_errors(channel, sources):
            line = f"line {p.line}: " if p.line else ""
            problems.append((f"{at}.{p.part}", "TEMPLATE_SYNTAX", f"{line}{p.message}"[:300]))
    if not problems and loc.DEFAULT not in seen:
        problems.append(
            ("variants", "MISSING_DEFAULT_VARIANT", "a variant with locale '' is needed")
        )
    return problems


def _normalized(variants: Sequence[Variant]) -> tuple[Variant, ...]:
    """Locales in canonical case, the default variant first, then by locale."""
    out = [replace(v, locale=loc.canonical(v.locale)) for v in variants]
    return tuple(sorted(out, key=lambda v: v.locale))


def _check(key: str | None, channel: str, name: str, variants: Sequence[Variant]) -> None:
    problems: list[Violation] = []
    if key is not None and not KEY.match(key):
        problems.append(("key", "INVALID_KEY", "1..64 of a-z 0-9 _ -, starting with a-z or 0-9"))
    if not name.strip() or len(name) > MAX_NAME:
        problems.append(("name", "INVALID_NAME", f"1..{MAX_NAME} characters"))
    if channel not in CHANNELS:
        problems.append(("channel", "INVALID_CHANNEL", "EMAIL, SMS or WEBHOOK"))
    else:
        problems.extend(_check_variants(channel, variants))
    if problems:
        raise Invalid(problems)


def _data(template_id: str, key: str, name: str, variants: Sequence[Variant]) -> dict[str, Any]:
    return {
        "template_id": template_id,
        "key": key,
        "name": name.strip(),
        "variants": [v.to_data() for v in variants],
    }


def decide_create(
    template_id: str, key: str, channel: str, name: str, variants: Sequence[Variant]
) -> list[Event]:
    _check(key, channel, name, variants)
    data = _data(template_id, key, name, _normalized(variants))
    return [(CREATED, {**data, "channel": channel, "version": 1})]


def decide_update(state: Template, name: str, variants: Sequence[Variant]) -> list[Event]:
    """A new version when the name or a variant changed; nothing otherwise."""
    if state.archived:
        raise Precondition("TEMPLATE_ARCHIVED", f"template {state.key} is archived")
    _check(None, state.channel, name, variants)
    normalized = _normalized(variants)
    if (name.strip(), normalized) == (state.latest.name, state.latest.variants):
        return []
    data = _data(state.template_id, state.key, name, normalized)
    return [(REVISED, {**data, "version": len(state.versions) + 1})]


def decide_archive(state: Template) -> list[Event]:
    if state.archived:
        return []
    return [(ARCHIVED, {"template_id": state.template_id, "key": state.key})]
