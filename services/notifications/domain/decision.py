"""A message's events (pure): the decision with the inputs it was decided on, and its delivery
(dispatched, sent, failed). Only ids, policy inputs and the next hop's answers: never an
address nor rendered text (those live in notifications' own tables, keyed by contact)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from services.notifications.domain import policy
from services.notifications.domain.render import RenderFailure
from shared.domain.timestamps import timestamp_text

PREFIX = "crm.notifications.v1."
DECIDED = PREFIX + "MessageDecided"
DISPATCHED = PREFIX + "MessageDispatched"
SENT = PREFIX + "MessageSent"
FAILED = PREFIX + "MessageFailed"
# After the next hop accepted it (the intake: SMS status callbacks, bounce and complaint reports).
DELIVERED = PREFIX + "MessageDelivered"
BOUNCED = PREFIX + "MessageBounced"
COMPLAINED = PREFIX + "MessageComplained"
DELIVERY = (DISPATCHED, SENT, FAILED, DELIVERED, BOUNCED, COMPLAINED)

API = "api"  # a trigger's source: SendMessage
TEST = "test"  # SendTestMessage
FLOW = "flow"  # a flow run's send step
CAMPAIGN = "campaign"  # a campaign's recipient

Event = tuple[str, dict[str, Any]]

# Render errors whose text names a template's own doing (a variable's path, a limit), never a
# value: they are kept in the decision; any other error's text may quote data and is withheld.
SAFE_RENDER_ERRORS = (
    "undefined variable",
    "renders with a line break",
    "renders to more than",
    "does not render to JSON",
)


def stream_of(message_id: str) -> str:
    return f"message-{message_id}"


@dataclass(frozen=True, slots=True)
class Origin:
    """What asked for the message: SendMessage ("api"), a test, a flow run's step or a campaign
    (and its variant). Kept in every decision, so that opens, clicks and orders can be credited
    to the flow step or the campaign variant that sent it."""

    source: str = API
    flow_id: str = ""
    flow_version: int = 0
    step_id: str = ""
    run_id: str = ""
    campaign_id: str = ""
    variant: str = ""

    def to_data(self, request_id: str) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source, "request_id": request_id}
        for name in ("flow_id", "flow_version", "step_id", "run_id", "campaign_id", "variant"):
            value = getattr(self, name)
            if value:
                out[name] = value
        return out

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Origin:
        return cls(
            source=str(data.get("source", API)),
            flow_id=str(data.get("flow_id", "")),
            flow_version=int(data.get("flow_version", 0)),
            step_id=str(data.get("step_id", "")),
            run_id=str(data.get("run_id", "")),
            campaign_id=str(data.get("campaign_id", "")),
            variant=str(data.get("variant", "")),
        )


@dataclass(frozen=True, slots=True)
class Subject:
    """What a message is, fixed for its life: every decision about it repeats these."""

    message_id: str
    contact_id: str  # the survivor when merged; "" for a test message
    requested_contact_id: str
    channel: str
    kind: str
    template_id: str
    template_version: int
    locale: str = ""  # the variant rendered
    origin: Origin = Origin()
    request_id: str = ""
    test: bool = False


@dataclass(frozen=True, slots=True)
class ConsentUsed:
    state: str = ""
    legal_basis: str = ""
    policy_version: str = ""
    update_time: datetime | None = None
    suppressed: bool = False
    suppression_reason: str = ""

    def to_data(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            k: v
            for k, v in (
                ("state", self.state),
                ("legal_basis", self.legal_basis),
                ("policy_version", self.policy_version),
                ("suppressed", self.suppressed),
                ("suppression_reason", self.suppression_reason),
            )
            if v
        }
        if self.update_time is not None:
            out["update_time"] = timestamp_text(self.update_time)
        return out


def render_failed(decision: policy.Decision) -> policy.Decision:
    """A SEND the message could not be rendered for: skipped, RENDER_FAILED."""
    return replace(decision, outcome=policy.SKIP, reason=policy.RENDER_FAILED)


def failure_detail(failure: RenderFailure) -> str:
    """The render error as a decision keeps it: field, line and, when it can hold no personal
    data, the error's text."""
    where = failure.part + (f", line {failure.line}" if failure.line else "")
    if failure.message.startswith(SAFE_RENDER_ERRORS):
        return f"{where}: {failure.message}"[:500]
    return f"{where}: the template failed (the error's text may quote data and is not kept)"


def decided(
    subject: Subject,
    facts: policy.Facts,
    verdict: policy.Decision,
    *,
    consent: ConsentUsed | None,
    number: int,
    detail: str = "",
) -> Event:
    """The MessageDecided event of decision ``number`` (1, then 2... after deferrals)."""
    data: dict[str, Any] = {
        "message_id": subject.message_id,
        "contact_id": subject.contact_id,
        "requested_contact_id": subject.requested_contact_id,
        "channel": subject.channel,
        "kind": subject.kind,
        "template_id": subject.template_id,
        "template_version": subject.template_version,
        "locale": subject.locale,
        "trigger": subject.origin.to_data(subject.request_id),
        "outcome": verdict.outcome,
        "reason": verdict.reason,
        "decide_time": timestamp_text(facts.now),
        "decision": number,
        "time_zone": verdict.time_zone,
        "cap_count": facts.sends_in_window if verdict.cap is not None else 0,
        "cap_limit": verdict.cap or 0,
        "test": subject.test,
        "detail": detail,
    }
    if consent is not None:
        data["consent"] = consent.to_data()
    if verdict.defer_until is not None:
        data["defer_until_time"] = timestamp_text(verdict.defer_until)
    if facts.last_marketing_send is not None:
        data["last_marketing_send_time"] = timestamp_text(facts.last_marketing_send)
    if verdict.quiet_hours is not None:
        q = verdict.quiet_hours
        data["quiet_hours"] = {"start": q.start.strftime("%H:%M"), "end": q.end.strftime("%H:%M")}
    return DECIDED, {k: v for k, v in data.items() if v not in ("", None, False)}


def dispatched(message_id: str, attempt: int, in_doubt: bool) -> Event:
    data: dict[str, Any] = {"message_id": message_id, "attempt": attempt}
    if in_doubt:
        data["in_doubt"] = True
    return DISPATCHED, data


_ADDRESS_LIKE = re.compile(r"[^\s<>()\[\]\"',;:@]+@[^\s<>()\[\]\"',;:@]+")


def redacted(detail: str, address: str) -> str:
    """A provider's answer as the log keeps it: the recipient's address, and anything shaped
    like an email address, replaced (servers echo them: "550 5.1.1 <ada@…>: unknown user")."""
    if address:
        detail = re.sub(re.escape(address), "<recipient>", detail, flags=re.IGNORECASE)
    return _ADDRESS_LIKE.sub("<address>", detail)


def sent(message_id: str, attempt: int, detail: str, provider_id: str) -> Event:
    data = {"message_id": message_id, "attempt": attempt, "detail": detail[:500]}
    if provider_id:
        data["provider_id"] = provider_id[:200]
    return SENT, data


def failed(message_id: str, attempt: int, detail: str, retry_at: datetime | None) -> Event:
    data: dict[str, Any] = {"message_id": message_id, "attempt": attempt, "detail": detail[:500]}
    if retry_at is None:
        data["final"] = True
    else:
        data["retry_time"] = timestamp_text(retry_at)
    return FAILED, data


def status_after(type_: str, data: dict[str, Any]) -> str:
    """The MessageStatus name a message has after one of its events."""
    if type_ == DECIDED:
        return {
            policy.SEND: "MESSAGE_STATUS_QUEUED",
            policy.SKIP: "MESSAGE_STATUS_SKIPPED",
            policy.DEFER: "MESSAGE_STATUS_DEFERRED",
        }[data["outcome"]]
    if type_ == DISPATCHED:
        return "MESSAGE_STATUS_DISPATCHED"
    if type_ == SENT:
        return "MESSAGE_STATUS_SENT"
    if type_ in (DELIVERED, BOUNCED, COMPLAINED):
        return "MESSAGE_STATUS_" + type_.removeprefix(PREFIX + "Message").upper()
    assert type_ == FAILED, type_
    return "MESSAGE_STATUS_FAILED" if data.get("final") else "MESSAGE_STATUS_RETRYING"
