"""The send policy (pure): whether one message goes out now, later or never, from the facts it
is decided on. The checks run in a fixed order and the first that refuses decides:

1. the contact is erased → SKIP CONTACT_ERASED; archived → SKIP CONTACT_ARCHIVED (a merged
   contact was already replaced by its survivor: the facts are the survivor's);
2. no address for the channel → SKIP NO_ADDRESS;
3. the channel is suppressed (hard bounce, complaint, manual) → SKIP SUPPRESSED, for every kind;
4. marketing without consent SUBSCRIBED on the channel → SKIP NO_CONSENT (transactional skips
   this check);
5. marketing over the channel's frequency cap (sends in the rolling window) → SKIP CAPPED;
6. marketing within the channel's smart-sending interval of the last marketing send → SKIP
   SMART_SENDING;
7. inside the channel's quiet hours in the contact's time zone → DEFER to the earliest instant
   outside them (DST-correct);
8. otherwise SEND.

Webhooks go to a system, not to the contact's inbox: consent and suppression (kept by contacts
for email and SMS only) do not apply to them; caps, smart sending and quiet hours apply when
configured for the channel (by default they are not).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.notifications.domain.variant import EMAIL, SMS, WEBHOOK

MARKETING = "MESSAGE_KIND_MARKETING"
TRANSACTIONAL = "MESSAGE_KIND_TRANSACTIONAL"
KINDS = (MARKETING, TRANSACTIONAL)

SEND = "OUTCOME_SEND"
SKIP = "OUTCOME_SKIP"
DEFER = "OUTCOME_DEFER"

SUBSCRIBED = "CONSENT_STATE_SUBSCRIBED"
CONSENTED_CHANNELS = (EMAIL, SMS)  # the channels contacts keeps consent and suppression for

# The reasons, in the order the checks run (RENDER_FAILED comes after the policy said SEND).
CONTACT_ERASED = "CONTACT_ERASED"
CONTACT_ARCHIVED = "CONTACT_ARCHIVED"
NO_ADDRESS = "NO_ADDRESS"
SUPPRESSED = "SUPPRESSED"
NO_CONSENT = "NO_CONSENT"
CAPPED = "CAPPED"
SMART_SENDING = "SMART_SENDING"
QUIET_HOURS = "QUIET_HOURS"
RENDER_FAILED = "RENDER_FAILED"

HORIZON = timedelta(days=3)  # a quiet window is shorter than a day: its end is always nearer


@dataclass(frozen=True, slots=True)
class QuietHours:
    """Local wall-clock times: quiet from ``start`` (included) to ``end`` (excluded), across
    midnight when ``start`` > ``end``; empty when they are equal."""

    start: time
    end: time

    def covers(self, wall: time) -> bool:
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= wall < self.end
        return wall >= self.start or wall < self.end


@dataclass(frozen=True, slots=True)
class ChannelRules:
    cap: int | None = None  # marketing sends per rolling window; None: no cap
    smart_sending: timedelta | None = None  # least time between two marketing sends
    quiet_hours: QuietHours | None = None


@dataclass(frozen=True, slots=True)
class Rules:
    channels: Mapping[str, ChannelRules] = field(
        default_factory=lambda: {
            EMAIL: ChannelRules(cap=3, smart_sending=timedelta(hours=16)),
            SMS: ChannelRules(
                cap=3, smart_sending=timedelta(hours=24), quiet_hours=QuietHours(time(21), time(8))
            ),
            WEBHOOK: ChannelRules(),
        }
    )
    cap_window: timedelta = timedelta(days=7)
    default_time_zone: str = "UTC"  # for a contact with no (or an unknown) time zone

    def of(self, channel: str) -> ChannelRules:
        return self.channels.get(channel, ChannelRules())


@dataclass(frozen=True, slots=True)
class Facts:
    """What a decision reads, all as of ``now``: the contact (the survivor when merged), its
    address and consent on the channel, its marketing sends on the channel."""

    channel: str
    kind: str
    now: datetime
    erased: bool = False
    archived: bool = False
    address: str = ""
    consent_state: str = ""  # crm.contacts.v1.ConsentState name; "" for a webhook
    suppressed: bool = False
    sends_in_window: int = 0  # marketing sends on the channel in the cap window before now
    last_marketing_send: datetime | None = None
    time_zone: str = ""  # the contact's IANA zone, as contacts holds it


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: str
    reason: str = ""
    defer_until: datetime | None = None
    time_zone: str = ""  # the zone quiet hours were judged in
    cap: int | None = None
    quiet_hours: QuietHours | None = None


def zone(name: str, default: str) -> tuple[str, tzinfo]:
    """The contact's zone, or ``default`` when it has none or one zoneinfo does not know."""
    for candidate in (name, default):
        if candidate:
            try:
                return candidate, ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return "UTC", UTC


def in_quiet_hours(instant: datetime, window: QuietHours, tz: tzinfo) -> bool:
    return window.covers(instant.astimezone(tz).time().replace(tzinfo=None))


def _offset(instant: datetime, tz: tzinfo) -> timedelta:
    offset = instant.astimezone(tz).utcoffset()
    return offset if offset is not None else timedelta(0)


def _segments(start: datetime, tz: tzinfo) -> list[tuple[datetime, datetime, timedelta]]:
    """[from, to) spans from ``start`` over HORIZON within which the zone's offset is constant
    (transitions found hourly, then to the second by bisection)."""
    out = []
    a, offset = start, _offset(start, tz)
    probe, end = start, start + HORIZON
    while probe < end:
        nxt = min(probe + timedelta(hours=1), end)
        if _offset(nxt, tz) != offset:
            lo, hi = 0, int((nxt - probe).total_seconds())  # offset unchanged at lo, changed at hi
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if _offset(probe + timedelta(seconds=mid), tz) == offset:
                    lo = mid
                else:
                    hi = mid
            change = probe + timedelta(seconds=hi)
            out.append((a, change, offset))
            a, offset = change, _offset(change, tz)
        probe = nxt
    out.append((a, end, offset))
    return out


def next_allowed(now: datetime, window: QuietHours, tz: tzinfo) -> datetime:
    """The earliest instant at or after ``now`` outside quiet hours. Within a span of constant
    UTC offset the wall clock moves with time, so it leaves the window either where the clock
    reads ``end`` or where the offset changes (a DST jump over ``end``, or back before
    ``start``)."""
    for a, b, offset in _segments(now, tz):
        if not in_quiet_hours(a, window, tz):
            return a
        wall = (a + offset).replace(tzinfo=None)
        leave = datetime.combine(wall.date(), window.end)
        if leave <= wall:
            leave = datetime.combine(wall.date() + timedelta(days=1), window.end)
        instant = (leave - offset).replace(tzinfo=UTC)
        if instant < b:
            return instant
    raise AssertionError("a quiet window always ends within the horizon")


def decide(facts: Facts, rules: Rules) -> Decision:
    """The first check that refuses decides; see the module's docstring for the order."""
    channel = rules.of(facts.channel)
    marketing = facts.kind == MARKETING
    cap = channel.cap if marketing else None
    zone_name, tz = zone(facts.time_zone, rules.default_time_zone)
    base = Decision(SEND, time_zone=zone_name, cap=cap, quiet_hours=channel.quiet_hours)

    def skip(reason: str) -> Decision:
        return replace(base, outcome=SKIP, reason=reason)

    if facts.erased:
        return skip(CONTACT_ERASED)
    if facts.archived:
        return skip(CONTACT_ARCHIVED)
    if not facts.address:
        return skip(NO_ADDRESS)
    consented = facts.channel in CONSENTED_CHANNELS
    if consented and facts.suppressed:
        return skip(SUPPRESSED)
    if marketing and consented and facts.consent_state != SUBSCRIBED:
        return skip(NO_CONSENT)
    if cap is not None and facts.sends_in_window >= cap:
        return skip(CAPPED)
    gap, last = channel.smart_sending, facts.last_marketing_send
    if marketing and gap is not None and last is not None and facts.now - last < gap:
        return skip(SMART_SENDING)
    if channel.quiet_hours is not None and in_quiet_hours(facts.now, channel.quiet_hours, tz):
        until = next_allowed(facts.now, channel.quiet_hours, tz)
        return replace(base, outcome=DEFER, reason=QUIET_HOURS, defer_until=until)
    return base


def parse_window(text: str) -> QuietHours | None:
    """A setting's quiet hours, "21:00-08:00"; "" for none. ValueError when malformed."""
    text = text.strip()
    if not text:
        return None
    start, sep, end = text.partition("-")
    if not sep:
        raise ValueError(f"quiet hours {text!r}: expected HH:MM-HH:MM")
    return QuietHours(time.fromisoformat(start.strip()), time.fromisoformat(end.strip()))
