"""Locales of template variants: BCP 47 tags in their canonical case, and the fallback chain a
render follows (fr-CA → fr → the default variant)."""

from __future__ import annotations

import re

DEFAULT = ""  # the default variant's locale: every template has one
MAX_LOCALE = 35  # RFC 5646's practical maximum for a tag
_TAG = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*$")


class LocaleError(ValueError):
    pass


def canonical(tag: str) -> str:
    """``tag`` in canonical case ("fr-CA", "zh-Hant-TW", "es-419"); "_" is read as "-"; ""
    stays the default. LocaleError when it is not a language tag."""
    tag = tag.strip().replace("_", "-")
    if tag == DEFAULT:
        return DEFAULT
    if len(tag) > MAX_LOCALE or not _TAG.match(tag):
        raise LocaleError("a BCP 47 language tag such as 'fr' or 'fr-CA'")
    first, *rest = tag.split("-")
    parts = [first.lower()]
    for sub in rest:
        if len(sub) == 2 and sub.isalpha():
            parts.append(sub.upper())  # region
        elif len(sub) == 4 and sub.isalpha():
            parts.append(sub.title())  # script
        else:
            parts.append(sub.lower())
    return "-".join(parts)


def chain(tag: str) -> list[str]:
    """The locales to try for ``tag``, most specific first, ending with the default:
    "zh-Hant-TW" → ["zh-Hant-TW", "zh-Hant", "zh", ""]."""
    parts = canonical(tag).split("-") if tag else []
    out = ["-".join(parts[:n]) for n in range(len(parts), 0, -1)]
    return [*out, DEFAULT]


def pick(available: list[str] | set[str] | frozenset[str], tag: str) -> str | None:
    """The first locale of ``tag``'s chain that ``available`` has (None: not even a default)."""
    for candidate in chain(tag):
        if candidate in available:
            return candidate
    return None
