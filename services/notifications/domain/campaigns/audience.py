"""Who a campaign reaches and when, pure: the audience frozen from segment memberships as of
the send instant (include minus exclude, each contact once) with a digest that proves it later;
each recipient's variant (A/B with a holdout, deterministic per contact); each recipient's send
instant (now, an instant, or a local time of day in the recipient's own zone); and the throttle
that spreads sends over minutes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

HOLDOUT = "holdout"
BUCKETS = 10_000  # variant weights and the holdout are in hundredths of a percent


@dataclass(frozen=True)
class Variant:
    name: str
    template_key: str
    weight: int = 1  # relative to the other variants'


@dataclass(frozen=True)
class Audience:
    """The recipients frozen at the send instant, in id order, and their digest."""

    contact_ids: tuple[str, ...]
    digest: str  # sha256 over the sorted ids, one per line: recomputable from the log later

    @property
    def size(self) -> int:
        return len(self.contact_ids)


def freeze(include: Iterable[Iterable[str]], exclude: Iterable[Iterable[str]]) -> Audience:
    """Members of any included segment and of no excluded one, each once."""
    members: set[str] = set()
    for segment in include:
        members.update(segment)
    for segment in exclude:
        members.difference_update(segment)
    ordered = tuple(sorted(members))
    return Audience(ordered, digest(ordered))


def digest(contact_ids: Sequence[str]) -> str:
    h = hashlib.sha256()
    for cid in sorted(contact_ids):
        h.update(cid.encode() + b"\n")
    return h.hexdigest()


def bucket(campaign_id: str, contact_id: str) -> int:
    """A contact's place in 0..BUCKETS-1 for this campaign: the same every time it is asked,
    independent between campaigns."""
    h = hashlib.sha256(f"{campaign_id}\n{contact_id}".encode()).digest()
    return int.from_bytes(h[:8], "big") % BUCKETS


def variant_of(
    campaign_id: str, contact_id: str, variants: Sequence[Variant], holdout_bp: int
) -> str:
    """The variant a contact gets (its name), or HOLDOUT: the first ``holdout_bp`` buckets
    (hundredths of a percent) are held out; the rest are shared by weight, in order."""
    b = bucket(campaign_id, contact_id)
    if b < holdout_bp:
        return HOLDOUT
    total = sum(v.weight for v in variants)
    point = (b - holdout_bp) * total // (BUCKETS - holdout_bp)
    for v in variants:
        if point < v.weight:
            return v.name
        point -= v.weight
    return variants[-1].name


def local_send_time(day: date, at: time, tz: tzinfo) -> datetime:
    """The instant ``day`` ``at`` in ``tz`` (a wall time a DST jump skips is read with the
    offset before the jump; a repeated one is its first occurrence)."""
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC)


def throttled(start: datetime, count: int, per_minute: int) -> list[datetime]:
    """When each of ``count`` sends may go, from ``start``, at most ``per_minute`` a minute,
    evenly spaced (all at ``start`` when unthrottled)."""
    if per_minute <= 0:
        return [start] * count
    gap = timedelta(minutes=1) / per_minute
    return [start + gap * i for i in range(count)]


def paced(dues: Sequence[datetime], per_minute: int) -> list[datetime]:
    """Each recipient's send instant, in order of ``dues`` (sorted): never before its own due
    instant, and never closer than a minute / ``per_minute`` to the one before (unthrottled:
    the due instants themselves)."""
    if per_minute <= 0:
        return list(dues)
    gap = timedelta(minutes=1) / per_minute
    out: list[datetime] = []
    for due in dues:
        out.append(max(due, out[-1] + gap) if out else due)
    return out
