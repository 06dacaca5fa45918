"""The consent ledger's vocabulary: its event types, the contact-stream events it reads, and the
values its fields take (channels, states, legal bases, suppression reasons)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

PREFIX = "crm.contacts.v1."
GRANTED = PREFIX + "ConsentGranted"
WITHDRAWN = PREFIX + "ConsentWithdrawn"
REQUESTED = PREFIX + "ConsentConfirmationRequested"
CONFIRMED = PREFIX + "ConsentConfirmed"
SUPPRESSED = PREFIX + "ChannelSuppressed"
UNSUPPRESSED = PREFIX + "ChannelUnsuppressed"
TYPES = (GRANTED, WITHDRAWN, REQUESTED, CONFIRMED, SUPPRESSED, UNSUPPRESSED)
# Events of the contact's own stream that decide whether its ledger may change.
CONTACT_REGISTERED = PREFIX + "ContactRegistered"
CONTACT_ERASED = PREFIX + "ContactErased"
CONTACT_MERGED = PREFIX + "ContactMerged"
CONTACT_UNMERGED = PREFIX + "ContactUnmerged"
# ... and those that say which contacts (and so which ledgers) were merged into it.
CONTACT_ABSORBED = PREFIX + "ContactAbsorbed"
CONTACT_ABSORPTION_REVERTED = PREFIX + "ContactAbsorptionReverted"

CHANNELS = ("email", "sms", "push")
LEGAL_BASES = (
    "consent",
    "contract",
    "legal_obligation",
    "vital_interests",
    "public_task",
    "legitimate_interest",
)
REASONS = ("hard_bounce", "complaint", "manual")
NEVER, SUBSCRIBED, UNSUBSCRIBED, PENDING = (
    "never_subscribed",
    "subscribed",
    "unsubscribed",
    "pending_confirmation",
)

Event = tuple[str, dict[str, Any]]  # (type, data)


def stream_of(contact_id: str) -> str:
    return f"consent-{contact_id}"


def ts(at: datetime) -> str:
    """RFC 3339 in UTC, as protobuf's JSON form of a Timestamp."""
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")
