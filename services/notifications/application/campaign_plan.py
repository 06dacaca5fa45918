"""Who a campaign reaches and when, as the engine starts it and as a dry run shows it: the
audience frozen from segmentation as of an instant (included minus excluded segments), and each
recipient's variant (or the holdout) and send instant (the send instant, or the local time in
the recipient's zone), in send order, paced by the throttle."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.notifications.application.campaigns import Segments
from services.notifications.domain.campaigns import audience as a
from services.notifications.domain.campaigns import definition as defs
from shared.domain.errors import DomainError


@dataclass(frozen=True)
class Recipient:
    contact_id: str
    variant: str  # a variant's name, or audience.HOLDOUT
    due_at: datetime


class Zones(Protocol):
    async def zones(self, contact_ids: Sequence[str]) -> dict[str, str]:
        """The time zone of each contact that has one."""
        ...


def zone(name: str, fallback: str) -> ZoneInfo:
    """The contact's zone; the fallback for none or an unknown one; UTC for an unknown
    fallback."""
    for candidate in (name, fallback, "UTC"):
        try:
            if candidate:
                return ZoneInfo(candidate)
        except (ZoneInfoNotFoundError, ValueError):
            continue
    return ZoneInfo("UTC")


async def frozen(segments: Segments, definition: Mapping[str, Any], as_of: datetime) -> a.Audience:
    """The members of any included segment and of no excluded one, as of ``as_of``."""
    include = [str(k) for k in definition.get("include_segments", [])]
    exclude = [str(k) for k in definition.get("exclude_segments", [])]
    ids = await segments.ids_of(include + exclude)
    missing = [k for k in include + exclude if k not in ids]
    if missing:
        raise DomainError("SEGMENT_NOT_FOUND", f"no segment {missing[0]}")
    members = {k: await segments.members(ids[k], as_of) for k in include + exclude}
    return a.freeze([members[k] for k in include], [members[k] for k in exclude])


async def planned(
    campaign_id: str,
    definition: Mapping[str, Any],
    schedule: Mapping[str, Any],
    send_at: datetime,
    audience: a.Audience,
    zones: Zones,
) -> list[Recipient]:
    """Each recipient's variant and send instant, in send order, paced by the throttle.
    ``schedule`` is CampaignScheduled's data (a local send names its day and time)."""
    variants = defs.variants_of(definition)
    holdout = int(definition.get("holdout_basis_points", 0))
    dues: dict[str, datetime] = dict.fromkeys(audience.contact_ids, send_at)
    local = schedule.get("local_day")
    if local:
        day, at = date.fromisoformat(local), time.fromisoformat(schedule["local_time"])
        fallback = str(schedule.get("fallback_time_zone", "UTC"))
        known = await zones.zones(audience.contact_ids)
        for cid in audience.contact_ids:
            dues[cid] = a.local_send_time(day, at, zone(known.get(cid, ""), fallback))
    order = sorted(audience.contact_ids, key=lambda cid: (dues[cid], cid))
    per_minute = int(definition.get("throttle_per_minute", 0))
    paced = a.paced([dues[cid] for cid in order], per_minute)
    return [
        Recipient(cid, a.variant_of(campaign_id, cid, variants, holdout), at)
        for cid, at in zip(order, paced, strict=True)
    ]
