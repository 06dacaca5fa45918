"""Statements of consent: recording one (directly, or as a double opt-in request) and
confirming a double opt-in request with its token."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from services.contacts.domain.consent.events import (
    CONFIRMED,
    GRANTED,
    LEGAL_BASES,
    REQUESTED,
    SUBSCRIBED,
    UNSUBSCRIBED,
    WITHDRAWN,
    Event,
    ts,
)
from services.contacts.domain.consent.ledger import Ledger, Terms
from services.contacts.domain.consent.validation import (
    Problems,
    check_channel,
    clipped_text,
    raise_if_any,
)
from shared.domain.errors import NotFound, Precondition

MAX_SOURCE = 200
MAX_POLICY_VERSION = 64
MAX_USER_AGENT = 512
FUTURE_SKEW = timedelta(minutes=5)  # how far a client's occur_time may be ahead of ours
DEFAULT_TTL = timedelta(hours=48)  # how long a double opt-in token is valid


@dataclass(frozen=True, slots=True)
class Evidence:
    ip: str = ""
    user_agent: str = ""

    def fields(self) -> dict[str, Any]:
        ev = {k: v for k in ("ip", "user_agent") if (v := getattr(self, k))}
        return {"evidence": ev} if ev else {}


@dataclass(frozen=True, slots=True)
class RecordConsent:
    channel: str
    state: str  # subscribed or unsubscribed
    terms: Terms = Terms()  # noqa: RUF009 (a frozen dataclass, as in ledger.py)
    evidence: Evidence = Evidence()
    double_opt_in: bool = False
    occurred_at: datetime | None = None


def validate_evidence(ev: Evidence, problems: Problems, prefix: str = "evidence.") -> Evidence:
    ip = ev.ip.strip()
    if ip:
        try:
            ip = str(ipaddress.ip_address(ip))  # normalised (IPv6 compressed)
        except ValueError:
            problems.append((prefix + "ip", "INVALID_IP", "not an IPv4 or IPv6 address"))
    ua = clipped_text(ev.user_agent, prefix + "user_agent", MAX_USER_AGENT, problems)
    return Evidence(ip, ua)


def validate_record(cmd: RecordConsent, now: datetime) -> RecordConsent:
    """The command normalised; Invalid listing every problem."""
    p: Problems = []
    check_channel(cmd.channel, p)
    if not cmd.state:
        p.append(("state", "STATE_REQUIRED", "state must be SUBSCRIBED or UNSUBSCRIBED"))
    elif cmd.state not in (SUBSCRIBED, UNSUBSCRIBED):
        p.append(("state", "INVALID_STATE", "state must be SUBSCRIBED or UNSUBSCRIBED"))
    basis = cmd.terms.legal_basis
    if basis and basis not in LEGAL_BASES:
        p.append(("legal_basis", "INVALID_LEGAL_BASIS", f"one of {LEGAL_BASES}"))
    elif not basis and cmd.state == SUBSCRIBED:
        p.append(("legal_basis", "LEGAL_BASIS_REQUIRED", "subscribing needs a legal basis"))
    terms = Terms(
        basis,
        clipped_text(cmd.terms.source, "source", MAX_SOURCE, p),
        clipped_text(cmd.terms.policy_version, "policy_version", MAX_POLICY_VERSION, p),
    )
    evidence = validate_evidence(cmd.evidence, p)
    if cmd.double_opt_in and cmd.state == UNSUBSCRIBED:
        p.append(("double_opt_in", "INVALID_DOUBLE_OPT_IN", "only a subscription is confirmed"))
    if cmd.occurred_at is not None and cmd.occurred_at > now + FUTURE_SKEW:
        p.append(("occur_time", "INVALID_OCCUR_TIME", "occur_time is in the future"))
    raise_if_any(p)
    return replace(cmd, terms=terms, evidence=evidence)


def decide_record(
    ledger: Ledger, cmd: RecordConsent, *, now: datetime, ttl: timedelta, token_hash: str
) -> list[Event]:
    """``cmd`` is validated. ``token_hash`` is the hash of the token a double opt-in request
    would issue (only used when one is decided)."""
    ch = ledger.channel(cmd.channel)
    data: dict[str, Any] = {"contact_id": ledger.contact_id, "channel": cmd.channel}
    data |= cmd.terms.fields() | cmd.evidence.fields()
    if cmd.occurred_at is not None:
        data["occur_time"] = ts(cmd.occurred_at)
    if cmd.state == UNSUBSCRIBED:
        if ch.state == UNSUBSCRIBED and ch.open_request(now) is None:
            return []  # already unsubscribed: a repeat is no new fact
        return [(WITHDRAWN, data)]
    same_terms = (ch.terms.legal_basis, ch.terms.policy_version) == (
        cmd.terms.legal_basis,
        cmd.terms.policy_version,
    )
    if ch.state == SUBSCRIBED and same_terms:
        return []
    if cmd.double_opt_in:
        return [(REQUESTED, data | {"token_sha256": token_hash, "expire_time": ts(now + ttl)})]
    return [(GRANTED, data)]


def decide_confirm(
    ledger: Ledger, token_hash: str, evidence: Evidence, now: datetime
) -> list[Event]:
    token = ledger.tokens.get(token_hash)
    if token is None:
        raise NotFound("TOKEN_NOT_FOUND", "no confirmation request has this token")
    if token.status == "used":
        raise Precondition("TOKEN_ALREADY_USED", "this token was already used")
    if now >= token.expires_at:
        raise Precondition(
            "TOKEN_EXPIRED",
            f"the token expired at {ts(token.expires_at)}; request a new confirmation",
            expire_time=ts(token.expires_at),
        )
    if token.status == "superseded":
        raise Precondition("TOKEN_SUPERSEDED", "a later request or statement replaced this token")
    pending = ledger.channel(token.channel).pending
    assert pending is not None and pending.token_sha256 == token_hash
    data = {"contact_id": ledger.contact_id, "channel": token.channel}
    data |= pending.terms.fields() | {"token_sha256": token_hash} | evidence.fields()
    return [(CONFIRMED, data)]
