"""What a dry run knows of the past, pure: folded from the published events of the log in
order, the facts a decision reads as they stood at each instant — a contact's time zone,
erased or archived, its consent and suppression per channel, its segment memberships, and its
marketing sends per channel (those the log records and those the dry run would have made).

Addresses are personal data, sealed in contacts' events: a dry run cannot read them and
assumes every contact not erased has one (a send it shows may, live, be SKIP NO_ADDRESS)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from services.notifications.domain import policy
from services.notifications.domain.variant import EMAIL, SMS
from services.notifications.domain.zones import ZONED, zone_set

CX = "crm.contacts.v1."
SEGMENTS = "crm.segmentation.v1."
DECIDED = "crm.notifications.v1.MessageDecided"
CHANNELS = {"email": EMAIL, "sms": SMS}
CONSENT = {
    CX + "ConsentGranted": "CONSENT_STATE_SUBSCRIBED",
    CX + "ConsentConfirmed": "CONSENT_STATE_SUBSCRIBED",
    CX + "ConsentWithdrawn": "CONSENT_STATE_UNSUBSCRIBED",
    CX + "ConsentConfirmationRequested": "CONSENT_STATE_PENDING_CONFIRMATION",
}
SUPPRESSION = {CX + "ChannelSuppressed": True, CX + "ChannelUnsuppressed": False}
STANDING = {CX + "ContactArchived": True, CX + "ContactRestored": False}


@dataclass
class History:
    zones: dict[str, str] = field(default_factory=dict)
    erased: set[str] = field(default_factory=set)
    archived: set[str] = field(default_factory=set)
    consent: dict[tuple[str, str], str] = field(default_factory=dict)
    suppressed: set[tuple[str, str]] = field(default_factory=set)
    members: set[tuple[str, str]] = field(default_factory=set)  # (segment key, contact)
    sends: dict[tuple[str, str], list[datetime]] = field(default_factory=lambda: defaultdict(list))

    def see(self, type_: str, data: Mapping[str, Any], at: datetime) -> None:
        """One published event, in log order."""
        cid = str(data.get("contact_id", ""))
        if not cid:
            return
        if type_ in ZONED and (zone_name := zone_set(type_, data)) is not None:
            self.zones[cid] = zone_name
        if type_ == CX + "ContactErased":
            self.erased.add(cid)
        elif type_ in STANDING:
            (self.archived.add if STANDING[type_] else self.archived.discard)(cid)
        elif type_ in CONSENT or type_ in SUPPRESSION:
            channel = CHANNELS.get(str(data.get("channel", "")))
            if channel is None:
                return
            if type_ in CONSENT:
                self.consent[(cid, channel)] = CONSENT[type_]
            elif SUPPRESSION[type_]:
                self.suppressed.add((cid, channel))
            else:
                self.suppressed.discard((cid, channel))
        elif type_ == SEGMENTS + "ContactEnteredSegment":
            self.members.add((str(data.get("segment_key", "")), cid))
        elif type_ == SEGMENTS + "ContactExitedSegment":
            self.members.discard((str(data.get("segment_key", "")), cid))
        elif type_ == DECIDED and _marketing_send(data):
            decided = data.get("decide_time")
            self.sent(cid, str(data.get("channel", "")), _time(decided) if decided else at)

    def sent(self, contact_id: str, channel: str, at: datetime) -> None:
        self.sends[(contact_id, channel)].append(at)

    def facts(
        self, contact_id: str, channel: str, kind: str, now: datetime, window: timedelta
    ) -> policy.Facts:
        """The policy's facts for a message to the contact at ``now``."""
        earlier = [t for t in self.sends.get((contact_id, channel), ()) if t <= now]
        return policy.Facts(
            channel=channel,
            kind=kind,
            now=now,
            erased=contact_id in self.erased,
            archived=contact_id in self.archived,
            address="(sealed: assumed)",
            consent_state=self.consent.get((contact_id, channel), "CONSENT_STATE_NEVER_SUBSCRIBED"),
            suppressed=(contact_id, channel) in self.suppressed,
            sends_in_window=sum(1 for t in earlier if t > now - window),
            last_marketing_send=max(earlier, default=None),
            time_zone=self.zones.get(contact_id, ""),
        )


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _marketing_send(data: Mapping[str, Any]) -> bool:
    return (
        data.get("outcome") == policy.SEND
        and data.get("kind") == policy.MARKETING
        and not data.get("test")
    )
