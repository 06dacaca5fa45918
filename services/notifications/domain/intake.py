"""What the intake records about a message after it was sent (pure): bounces, complaints and
the SMS gateway's status callbacks, as events of the message's stream, and whether a report
suppresses the channel at contacts.

Each report is written once per message: its event id derives from the message id and the
report's kind (a message has one recipient, so a second hard bounce or complaint for it, a copy
of a DSN from another hop or a provider's redelivery under a new id, is the same fact), and
from the status for SMS callbacks. No personal data: bounce details have their addresses
replaced (domain/bounces.py), SMS callbacks keep the gateway's id, status and error code."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.notifications.domain import decision as d
from services.notifications.domain.bounces import Report, SoftBounces, suppresses

BOUNCED, COMPLAINED, DELIVERED = d.BOUNCED, d.COMPLAINED, d.DELIVERED

HARD, SOFT = "BOUNCE_TYPE_HARD", "BOUNCE_TYPE_SOFT"
# contacts' SuppressionReason for each report kind; the third soft bounce counts as a hard one.
SUPPRESSION_REASONS = {
    "hard_bounce": "SUPPRESSION_REASON_HARD_BOUNCE",
    "soft_bounce": "SUPPRESSION_REASON_HARD_BOUNCE",
    "complaint": "SUPPRESSION_REASON_COMPLAINT",
}
# The gateway's MessageStatus values that end a message; the others (queued, sending, sent,
# accepted, …) are progress and are acknowledged without a record.
SMS_FINAL = {"delivered": "delivered", "undelivered": "failed", "failed": "failed"}
SMS_DETAIL_LIMIT = 200


@dataclass(frozen=True, slots=True)
class Target:
    """The message a report names, as its stream tells it."""

    message_id: str
    contact_id: str  # "" for a test message: nothing to suppress
    channel: str  # CHANNEL_EMAIL, CHANNEL_SMS, CHANNEL_WEBHOOK
    steps: tuple[tuple[str, dict[str, Any]], ...] = ()  # (type, data) after the decisions

    def recorded(self, type_: str, **match: Any) -> dict[str, Any] | None:
        """The data of an event of ``type_`` already in the stream whose fields equal ``match``."""
        for t, data in self.steps:
            if t == type_ and all(data.get(k) == v for k, v in match.items()):
                return data
        return None


def report_key(report: Report) -> str:
    """What a report's event id derives from: one per message and kind."""
    return f"intake:{report.kind}:{report.message_id}"


def bounce_type(report: Report) -> str:
    return HARD if report.kind == "hard_bounce" else SOFT


def recorded(target: Target, report: Report) -> dict[str, Any] | None:
    """The event already recorded for this report (a redelivery), or None."""
    if report.kind == "complaint":
        return target.recorded(COMPLAINED)
    return target.recorded(BOUNCED, bounce_type=bounce_type(report))


def report_event(
    report: Report,
    source: str,
    earlier_soft: Iterable[datetime],
    now: datetime,
    rule: SoftBounces = SoftBounces(),  # noqa: B008 - frozen, shared safely
) -> d.Event:
    """The event of a report; ``earlier_soft``: the contact's earlier soft bounces on the
    channel (for the rule: by default the third within seven days suppresses)."""
    if report.kind == "complaint":
        data: dict[str, Any] = {"message_id": report.message_id, "source": source}
        if report.detail:
            data["detail"] = report.detail
        return COMPLAINED, data
    earlier = list(earlier_soft)
    data = {
        "message_id": report.message_id,
        "bounce_type": bounce_type(report),
        "source": source,
        "suppress": suppresses(report.kind, earlier, now, rule),
    }
    if report.kind == "soft_bounce":
        data["soft_bounce_count"] = 1 + rule.within(earlier, now)
    data |= {k: v for k, v in (("status", report.status), ("detail", report.detail)) if v}
    return BOUNCED, {k: v for k, v in data.items() if v is not False}


def suppression_of(event: d.Event) -> bool:
    """Whether a report's event suppresses the channel."""
    type_, data = event
    return type_ == COMPLAINED or bool(data.get("suppress"))


def sms_key(message_id: str, outcome: str) -> str:
    return f"intake:sms:{outcome}:{message_id}"


def sms_detail(status: str, error_code: str) -> str:
    detail = f"gateway: {status}" + (f", error {error_code}" if error_code else "")
    return detail[:SMS_DETAIL_LIMIT]


def sms_event(
    message_id: str, provider_id: str, status: str, error_code: str, attempt: int
) -> d.Event:
    """The event of a final SMS status: MessageDelivered, or a final MessageFailed (the carrier
    did not deliver what the gateway had accepted; never retried: the gateway gave up)."""
    detail = sms_detail(status, error_code)
    if SMS_FINAL[status] == "delivered":
        return DELIVERED, {"message_id": message_id, "provider_id": provider_id, "detail": detail}
    return d.failed(message_id, attempt, detail, None)
