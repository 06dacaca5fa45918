"""A campaign's definition and schedule in their JSON form (the proto's field names), checked:
every problem is named with its field, so a bad request writes nothing and says all that is
wrong at once."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.notifications.domain import policy
from services.notifications.domain.campaigns.audience import BUCKETS, HOLDOUT, Variant
from shared.domain.errors import Invalid
from shared.domain.timestamps import timestamp_text

KEY = re.compile(r"^[a-z0-9_-]{1,64}$")
MAX_SEGMENTS = 20
MAX_VARIANTS = 10
EARLIEST_OFFSET = timedelta(hours=14)  # the zone furthest ahead of UTC (Pacific/Kiritimati)
LATEST_OFFSET = timedelta(hours=12)  # and furthest behind
Problem = tuple[str, str, str]  # (field, reason, description)


def variants_of(definition: Mapping[str, Any]) -> list[Variant]:
    return [
        Variant(str(v["name"]), str(v["template_key"]), int(v.get("weight", 0)) or 1)
        for v in definition.get("variants", [])
    ]


def kind_of(definition: Mapping[str, Any]) -> str:
    return str(definition.get("kind", "")) or policy.MARKETING


def problems(d: Mapping[str, Any]) -> list[Problem]:
    out: list[Problem] = []
    name = str(d.get("name", ""))
    if not 1 <= len(name) <= 200:
        out.append(("name", "INVALID_NAME", "1..200 characters"))
    include, exclude = list(d.get("include_segments", [])), list(d.get("exclude_segments", []))
    if not include:
        out.append(("include_segments", "SEGMENTS_REQUIRED", "name one segment or more"))
    for field, keys in (("include_segments", include), ("exclude_segments", exclude)):
        if len(keys) > MAX_SEGMENTS:
            out.append((field, "TOO_MANY_SEGMENTS", f"at most {MAX_SEGMENTS}"))
        for i, key in enumerate(keys):
            if not KEY.match(str(key)):
                out.append((f"{field}[{i}]", "INVALID_SEGMENT_KEY", "1..64 of a-z 0-9 _ -"))
    if set(include) & set(exclude):
        out.append(("exclude_segments", "SEGMENT_BOTH", "a segment both included and excluded"))
    if kind_of(d) not in (policy.MARKETING, policy.TRANSACTIONAL):
        out.append(("kind", "INVALID_KIND", "MESSAGE_KIND_MARKETING or _TRANSACTIONAL"))
    variants = list(d.get("variants", []))
    if not 1 <= len(variants) <= MAX_VARIANTS:
        out.append(("variants", "VARIANTS_REQUIRED", f"1..{MAX_VARIANTS} variants"))
    names: set[str] = set()
    for i, v in enumerate(variants):
        vname = str(v.get("name", ""))
        if not KEY.match(vname) or vname == HOLDOUT:
            out.append((f"variants[{i}].name", "INVALID_VARIANT_NAME", "1..64 of a-z 0-9 _ -"))
        elif vname in names:
            out.append((f"variants[{i}].name", "VARIANT_REPEATED", f"{vname} twice"))
        names.add(vname)
        if not v.get("template_key"):
            out.append((f"variants[{i}].template_key", "TEMPLATE_REQUIRED", "a template key"))
        if not 0 <= int(v.get("weight", 0)) <= 1000:
            out.append((f"variants[{i}].weight", "INVALID_WEIGHT", "0..1000"))
    if not 0 <= int(d.get("holdout_basis_points", 0)) < BUCKETS:
        out.append(("holdout_basis_points", "INVALID_HOLDOUT", f"0..{BUCKETS - 1}"))
    if not 0 <= int(d.get("throttle_per_minute", 0)) <= 1_000_000:
        out.append(("throttle_per_minute", "INVALID_THROTTLE", "0..1000000"))
    return out


@dataclass(frozen=True)
class Schedule:
    """When a campaign sends: ``send_at`` for now or an instant; for a local send, the day and
    time of day in each recipient's zone (``fallback`` for those with none)."""

    send_at: datetime | None = None
    local_day: date | None = None
    local_time: time | None = None
    fallback: str = "UTC"

    @property
    def start_at(self) -> datetime:
        """When the audience is frozen: the send instant, or the earliest instant the local
        time occurs in any zone."""
        if self.send_at is not None:
            return self.send_at
        assert self.local_day is not None and self.local_time is not None
        return datetime.combine(self.local_day, self.local_time, UTC) - EARLIEST_OFFSET

    def to_data(self) -> dict[str, Any]:
        out: dict[str, Any] = {"send_time": timestamp_text(self.start_at)}
        if self.local_day is not None and self.local_time is not None:
            out["local_day"] = self.local_day.isoformat()
            out["local_time"] = self.local_time.strftime("%H:%M")
            out["fallback_time_zone"] = self.fallback
        return out


def schedule_of(s: Mapping[str, Any], now: datetime) -> Schedule:
    """A schedule's JSON form read: now, a send_time not in the past (a minute's grace), or a
    local send whose last occurrence (the zone furthest behind) is not past."""
    if s.get("now"):
        return Schedule(send_at=now)
    if "send_time" in s:
        at = datetime.fromisoformat(str(s["send_time"]).replace("Z", "+00:00"))
        if at < now - timedelta(minutes=1):
            raise _invalid("schedule.send_time", "SEND_TIME_PAST", "the instant is past")
        return Schedule(send_at=max(at, now))
    local = s.get("local")
    if not isinstance(local, Mapping):
        raise _invalid("schedule", "SCHEDULE_REQUIRED", "now, send_time or local")
    problems: list[Problem] = []
    try:
        day = date.fromisoformat(str(local.get("day", "")))
    except ValueError:
        problems.append(("schedule.local.day", "INVALID_DAY", "YYYY-MM-DD"))
    try:
        at_time = time.fromisoformat(str(local.get("time_of_day", "")))
        if len(str(local["time_of_day"])) != 5:
            raise ValueError
    except ValueError:
        problems.append(("schedule.local.time_of_day", "INVALID_TIME", "HH:MM"))
    fallback = str(local.get("fallback_time_zone", "")) or "UTC"
    try:
        ZoneInfo(fallback)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(("schedule.local.fallback_time_zone", "INVALID_TIME_ZONE", "IANA name"))
    if problems:
        raise Invalid(problems)
    if datetime.combine(day, at_time, UTC) + LATEST_OFFSET < now:
        raise _invalid("schedule.local.day", "SEND_TIME_PAST", "that time is past everywhere")
    return Schedule(local_day=day, local_time=at_time, fallback=fallback)


def _invalid(field: str, reason: str, text: str) -> Invalid:
    return Invalid([(field, reason, text)])
