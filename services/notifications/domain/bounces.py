"""Bounce and complaint reports, whatever the provider (pure).

Three forms come in over HTTP and become the same `Report`s:
- an RFC 3464 delivery status notification (``multipart/report;
  report-type=delivery-status``): one report per recipient whose ``Action`` is ``failed`` — a
  ``5.x.x`` status is a hard bounce, a ``4.x.x`` one a soft bounce; ``delayed``, ``delivered``,
  ``relayed`` and ``expanded`` are not bounces;
- an RFC 5965 abuse report (``multipart/report; report-type=feedback-report``): a complaint;
- a provider-neutral JSON document: ``{"events": [{"type": "bounce", "bounce_type":
  "hard"|"soft", "message_id": "…", "status": "5.1.1", "detail": "…"}, {"type": "complaint",
  "message_id": "…"}]}`` (or one such event alone).

A report names our message by its id: the returned message's ``Message-ID``
(``<message-id@domain>``, as the delivery workers write it), or the DSN's
``Original-Envelope-Id``. Diagnostic text is kept short and without addresses, since it ends up
in events.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from email.message import Message
from typing import Any, Literal

Kind = Literal["hard_bounce", "soft_bounce", "complaint"]

DETAIL_LIMIT = 300
MAX_EVENTS = 1000
SOFT_BOUNCES_TO_SUPPRESS = 3
SOFT_BOUNCE_WINDOW = timedelta(days=7)


@dataclass(frozen=True)
class SoftBounces:
    """When soft bounces suppress: the ``limit``-th within ``window`` (SOFT_BOUNCE_LIMIT,
    SOFT_BOUNCE_WINDOW_DAYS; 3 within 7 days by default, as listmonk's and most providers')."""

    limit: int = SOFT_BOUNCES_TO_SUPPRESS
    window: timedelta = SOFT_BOUNCE_WINDOW

    def within(self, earlier: Iterable[datetime], now: datetime) -> int:
        """How many of ``earlier`` count at ``now``."""
        since = now - self.window
        return sum(1 for t in earlier if since < t <= now)


_ADDRESS = re.compile(r"[^\s<>\"';,()]+@[^\s<>\"';,()]+")
_STATUS = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")
_MESSAGE_ID = re.compile(r"<([^@<>\s]+)@[^<>\s]*>")


@dataclass(frozen=True, slots=True)
class Report:
    message_id: str
    kind: Kind
    status: str = ""  # the enhanced status code ("5.1.1"), when given
    detail: str = ""  # the diagnostic, without addresses, at most DETAIL_LIMIT characters


class ReportError(ValueError):
    """The document is not a report this intake understands; ``reason`` is the answer's code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def clean_detail(text: str) -> str:
    """One line of printable characters, addresses replaced, at most DETAIL_LIMIT characters."""
    one_line = "".join(c for c in " ".join(text.split()) if c.isprintable())
    return _ADDRESS.sub("<address>", one_line)[:DETAIL_LIMIT]


def message_id_of(text: str) -> str | None:
    """Our message id in a Message-ID header value or an envelope id, or None."""
    text = text.strip()
    found = _MESSAGE_ID.search(text)
    candidate = found.group(1) if found else text
    try:
        return str(uuid.UUID(candidate))
    except ValueError:
        return None


def parse_report_email(raw: bytes) -> list[Report]:
    """The reports in an RFC 3464 DSN or an RFC 5965 abuse report."""
    mail = message_from_bytes(raw, policy=policy.compat32)
    if mail.get_content_type() != "multipart/report":
        raise ReportError("NOT_A_REPORT", "expected a multipart/report message")
    report_type = str(mail.get_param("report-type") or "").lower()
    parts = _messages(mail.get_payload())
    if report_type == "delivery-status":
        return _delivery_status(parts)
    if report_type == "feedback-report":
        return _feedback(parts)
    raise ReportError("UNSUPPORTED_REPORT", f"report-type {report_type or '(none)'!r}")


def _messages(payload: object) -> list[Message]:
    """The parts (or header blocks) of a payload; none for a payload of text."""
    return [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []


def _part(parts: Sequence[Message], *types: str) -> Message | None:
    return next((p for p in parts if p.get_content_type() in types), None)


def _returned_message_id(parts: Sequence[Message]) -> str | None:
    returned = _part(parts, "message/rfc822", "text/rfc822-headers")
    if returned is None:
        return None
    if returned.get_content_type() == "message/rfc822":
        inner = _messages(returned.get_payload())
        headers = inner[0] if inner else None
    else:
        text = returned.get_payload(decode=True) or b""
        headers = message_from_bytes(bytes(text), policy=policy.compat32)
    value = headers.get("Message-ID") if isinstance(headers, Message) else None
    return message_id_of(str(value)) if value else None


def _delivery_status(parts: Sequence[Message]) -> list[Report]:
    status_part = _part(parts, "message/delivery-status")
    blocks = _messages(status_part.get_payload()) if status_part is not None else []
    if not blocks:
        raise ReportError("NOT_A_REPORT", "no message/delivery-status part")
    per_message, recipients = blocks[0], blocks[1:]
    envelope = per_message.get("Original-Envelope-Id")
    message_id = _returned_message_id(parts) or (message_id_of(envelope) if envelope else None)
    if message_id is None:
        raise ReportError("UNKNOWN_MESSAGE", "the report names no message of ours")
    reports = []
    for fields in recipients:
        action = str(fields.get("Action", "")).strip().lower()
        status = str(fields.get("Status", "")).strip().split(" ")[0]
        if action != "failed":
            continue
        if not _STATUS.match(status):
            raise ReportError("INVALID_STATUS", f"status {status[:20]!r} is not x.y.z")
        kind: Kind = "hard_bounce" if status.startswith("5") else "soft_bounce"
        detail = clean_detail(str(fields.get("Diagnostic-Code", "")))
        reports.append(Report(message_id, kind, status, detail))
    return reports


def _feedback(parts: Sequence[Message]) -> list[Report]:
    feedback = _part(parts, "message/feedback-report")
    message_id = _returned_message_id(parts)
    if feedback is None or message_id is None:
        raise ReportError("UNKNOWN_MESSAGE", "the abuse report names no message of ours")
    blocks = _messages(feedback.get_payload())
    fields = blocks[0] if blocks else feedback
    feedback_type = str(fields.get("Feedback-Type", "abuse")).strip().lower()
    return [Report(message_id, "complaint", "", clean_detail(f"feedback-type {feedback_type}"))]


def parse_json_report(document: Any) -> list[Report]:
    """The reports in a provider-neutral JSON document (see the module's docstring)."""
    if isinstance(document, Mapping) and "events" in document:
        events = document["events"]
    else:
        events = [document]
    if not isinstance(events, list) or not events:
        raise ReportError("INVALID_REPORT", "`events` must be a non-empty list")
    if len(events) > MAX_EVENTS:
        raise ReportError("TOO_MANY_EVENTS", f"at most {MAX_EVENTS} events per document")
    return [_json_event(i, e) for i, e in enumerate(events)]


def _json_event(index: int, event: Any) -> Report:
    where = f"events[{index}]"
    if not isinstance(event, Mapping):
        raise ReportError("INVALID_REPORT", f"{where} must be an object")
    message_id = event.get("message_id")
    if not isinstance(message_id, str) or message_id_of(message_id) is None:
        raise ReportError("UNKNOWN_MESSAGE", f"{where}.message_id must be a message id")
    detail = event.get("detail", "")
    status = event.get("status", "")
    if not isinstance(detail, str) or not isinstance(status, str):
        raise ReportError("INVALID_REPORT", f"{where}: detail and status must be text")
    if status and not _STATUS.match(status):
        raise ReportError("INVALID_STATUS", f"{where}.status must look like 5.1.1")
    kind = _json_kind(event, where)
    return Report(str(message_id_of(message_id)), kind, status, clean_detail(detail))


def _json_kind(event: Mapping[str, Any], where: str) -> Kind:
    match event.get("type"), event.get("bounce_type"):
        case "complaint", _:
            return "complaint"
        case "bounce", "hard":
            return "hard_bounce"
        case "bounce", "soft":
            return "soft_bounce"
        case "bounce", _:
            raise ReportError("INVALID_REPORT", f"{where}.bounce_type must be hard or soft")
    raise ReportError("INVALID_REPORT", f"{where}.type must be bounce or complaint")


def suppresses(
    kind: Kind,
    earlier_soft_bounces: Iterable[datetime],
    now: datetime,
    rule: SoftBounces = SoftBounces(),
) -> bool:
    """Whether this report suppresses the address: a hard bounce or a complaint at once, a soft
    bounce when it is the rule's limit-th within its window."""
    if kind != "soft_bounce":
        return True
    return rule.within(earlier_soft_bounces, now) + 1 >= rule.limit
