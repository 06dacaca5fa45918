"""Checks shared by the ledger's commands. Each collects problems as (field, reason,
description) so that one Invalid lists every problem of a command."""

from __future__ import annotations

from services.contacts.domain.consent.events import CHANNELS
from shared.domain.errors import Invalid

Problems = list[tuple[str, str, str]]  # (field, reason, description)


def check_channel(value: str, problems: Problems, *, required: bool = True) -> None:
    if not value:
        if required:
            problems.append(("channel", "CHANNEL_REQUIRED", "a channel is required"))
    elif value not in CHANNELS:
        problems.append(("channel", "INVALID_CHANNEL", f"channel must be one of {CHANNELS}"))


def clipped_text(value: str, name: str, limit: int, problems: Problems) -> str:
    """``value`` stripped; a problem when it is longer than ``limit``."""
    value = value.strip()
    if len(value) > limit:
        problems.append((name, "FIELD_TOO_LONG", f"at most {limit} characters"))
    return value


def raise_if_any(problems: Problems) -> None:
    if problems:
        raise Invalid(problems)
