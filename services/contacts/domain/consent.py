"""The consent ledger of one contact: consent per channel, double opt-in, suppression.

Pure: commands are validated here, ``evolve`` folds one event, ``decide_*`` turns a command
into events. Events are dicts shaped as the JSON of the consent messages of events.proto, except
that the evidence travels as an "evidence" field, which the application seals (into "personal")
before appending.

Consent (the state a contact stated) and suppression (the channel must not be used: bounces,
complaints) are kept apart: neither changes the other.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.domain.errors import Invalid, NotFound, Precondition

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

MAX_SOURCE = 200
MAX_POLICY_VERSION = 64
MAX_USER_AGENT = 512
MAX_NOTE = 500
FUTURE_SKEW = timedelta(minutes=5)  # how far a client's occur_time may be ahead of ours
DEFAULT_TTL = timedelta(hours=48)  # how long a double opt-in token is valid
TOKEN_SECRET_BYTES = 32

Event = tuple[str, dict[str, Any]]  # (type, data)


def stream_of(contact_id: str) -> str:
    return f"consent-{contact_id}"


def ts(at: datetime) -> str:
    """RFC 3339 in UTC, as protobuf's JSON form of a Timestamp."""
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def check_writable(
    contact_id: str, contact_events: Iterable[tuple[str, Mapping[str, Any]]]
) -> None:
    """Raise unless the contact (given its stream's events) may get new ledger entries: it must
    exist, not be erased, and not be merged into another contact (whose ledger is the one that
    counts: the caller is told which). An archived contact may: withdrawing consent and
    recording bounces must always be possible."""
    exists, erased, survivor = False, False, ""
    for type_, data in contact_events:
        exists = True
        erased = erased or type_ == CONTACT_ERASED
        if type_ == CONTACT_MERGED:
            survivor = data.get("survivor_id", "")
        elif type_ == CONTACT_UNMERGED:
            survivor = ""
    if not exists:
        raise NotFound("CONTACT_NOT_FOUND", f"no contact {contact_id}", contact_id=contact_id)
    if erased:
        raise Precondition(
            "CONTACT_ERASED", f"contact {contact_id} was erased", contact_id=contact_id
        )
    if survivor:
        raise Precondition(
            "CONTACT_MERGED",
            f"contact {contact_id} was merged into {survivor}; record consent there",
            survivor_id=survivor,
        )


# --- state --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Terms:
    """What a statement was made under."""

    legal_basis: str = ""
    source: str = ""
    policy_version: str = ""

    def fields(self) -> dict[str, str]:
        return {
            k: v for k in ("legal_basis", "source", "policy_version") if (v := getattr(self, k))
        }

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Terms:
        return cls(
            data.get("legal_basis", ""), data.get("source", ""), data.get("policy_version", "")
        )


@dataclass(frozen=True, slots=True)
class Pending:
    """An open double opt-in request."""

    terms: Terms
    requested_at: datetime
    expires_at: datetime
    token_sha256: str = ""


@dataclass(frozen=True, slots=True)
class Suppression:
    reason: str
    note: str
    at: datetime


@dataclass(frozen=True, slots=True)
class ChannelConsent:
    channel: str
    state: str = NEVER  # the stated consent: never_subscribed, subscribed or unsubscribed
    terms: Terms = Terms()  # of the statement that set `state`
    changed_at: datetime | None = None
    pending: Pending | None = None  # the last request; it may have expired
    suppression: Suppression | None = None
    version: int = -1  # stream version of the last event on this channel

    def open_request(self, at: datetime) -> Pending | None:
        return self.pending if self.pending is not None and at < self.pending.expires_at else None

    def effective_state(self, at: datetime) -> str:
        """The state at instant ``at``: an open request shows as pending, except on a channel
        already subscribed (a re-consent to new terms keeps the old ones until confirmed)."""
        if self.state != SUBSCRIBED and self.open_request(at) is not None:
            return PENDING
        return self.state


@dataclass(frozen=True, slots=True)
class Token:
    """A confirmation token of the ledger, known by its SHA-256 only."""

    channel: str
    expires_at: datetime
    status: str  # open, used, superseded


@dataclass(frozen=True, slots=True)
class Ledger:
    contact_id: str
    channels: Mapping[str, ChannelConsent] = field(default_factory=dict)
    tokens: Mapping[str, Token] = field(default_factory=dict)
    version: int = -1

    def channel(self, name: str) -> ChannelConsent:
        return self.channels.get(name) or ChannelConsent(name)


def evolve_channel(
    ch: ChannelConsent, type_: str, data: Mapping[str, Any], at: datetime, version: int
) -> ChannelConsent:
    """Fold one event into its channel (the read model uses this alone)."""
    if type_ in (GRANTED, CONFIRMED, WITHDRAWN):
        state = UNSUBSCRIBED if type_ == WITHDRAWN else SUBSCRIBED
        # Any statement closes an open request (confirming it, or superseding it).
        return replace(
            ch, state=state, terms=Terms.of(data), changed_at=at, pending=None, version=version
        )
    if type_ == REQUESTED:
        pending = Pending(
            Terms.of(data),
            at,
            datetime.fromisoformat(data["expire_time"]),
            data.get("token_sha256", ""),
        )
        return replace(ch, pending=pending, version=version)
    if type_ == SUPPRESSED:
        s = Suppression(data.get("reason", ""), data.get("note", ""), at)
        return replace(ch, suppression=s, version=version)
    if type_ == UNSUPPRESSED:
        return replace(ch, suppression=None, version=version)
    return ch


def evolve(
    ledger: Ledger, type_: str, data: Mapping[str, Any], at: datetime, version: int
) -> Ledger:
    if type_ not in TYPES:
        return replace(ledger, version=version)
    before = ledger.channel(data["channel"])
    after = evolve_channel(before, type_, data, at, version)
    tokens = dict(ledger.tokens)
    if type_ in (GRANTED, WITHDRAWN, REQUESTED, CONFIRMED) and before.pending is not None:
        old = tokens.get(before.pending.token_sha256)
        if old is not None and old.status == "open":
            used = type_ == CONFIRMED and data.get("token_sha256") == before.pending.token_sha256
            tokens[before.pending.token_sha256] = replace(
                old, status="used" if used else "superseded"
            )
    if type_ == REQUESTED and after.pending is not None:
        tokens[after.pending.token_sha256] = Token(after.channel, after.pending.expires_at, "open")
    return Ledger(ledger.contact_id, {**ledger.channels, after.channel: after}, tokens, version)


def fold(contact_id: str, events: Iterable[tuple[str, Mapping[str, Any], datetime, int]]) -> Ledger:
    ledger = Ledger(contact_id)
    for type_, data, at, version in events:
        ledger = evolve(ledger, type_, data, at, version)
    return ledger


# --- commands and their validation ----------------------------------------------------------------


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
    terms: Terms = Terms()
    evidence: Evidence = Evidence()
    double_opt_in: bool = False
    occurred_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Suppress:
    channel: str
    reason: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class Unsuppress:
    channel: str
    note: str = ""


Problems = list[tuple[str, str, str]]  # (field, reason, description)


def check_channel(value: str, problems: Problems, *, required: bool = True) -> None:
    if not value:
        if required:
            problems.append(("channel", "CHANNEL_REQUIRED", "a channel is required"))
    elif value not in CHANNELS:
        problems.append(("channel", "INVALID_CHANNEL", f"channel must be one of {CHANNELS}"))


def _text(value: str, name: str, limit: int, problems: Problems) -> str:
    value = value.strip()
    if len(value) > limit:
        problems.append((name, "FIELD_TOO_LONG", f"at most {limit} characters"))
    return value


def _raise(problems: Problems) -> None:
    if problems:
        raise Invalid(problems)


def validate_evidence(ev: Evidence, problems: Problems, prefix: str = "evidence.") -> Evidence:
    ip = ev.ip.strip()
    if ip:
        try:
            ip = str(ipaddress.ip_address(ip))  # normalised (IPv6 compressed)
        except ValueError:
            problems.append((prefix + "ip", "INVALID_IP", "not an IPv4 or IPv6 address"))
    ua = _text(ev.user_agent, prefix + "user_agent", MAX_USER_AGENT, problems)
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
        _text(cmd.terms.source, "source", MAX_SOURCE, p),
        _text(cmd.terms.policy_version, "policy_version", MAX_POLICY_VERSION, p),
    )
    evidence = validate_evidence(cmd.evidence, p)
    if cmd.double_opt_in and cmd.state == UNSUBSCRIBED:
        p.append(("double_opt_in", "INVALID_DOUBLE_OPT_IN", "only a subscription is confirmed"))
    if cmd.occurred_at is not None and cmd.occurred_at > now + FUTURE_SKEW:
        p.append(("occur_time", "INVALID_OCCUR_TIME", "occur_time is in the future"))
    _raise(p)
    return replace(cmd, terms=terms, evidence=evidence)


def validate_suppress(cmd: Suppress) -> Suppress:
    p: Problems = []
    check_channel(cmd.channel, p)
    if not cmd.reason:
        p.append(("reason", "REASON_REQUIRED", "reason must be HARD_BOUNCE, COMPLAINT or MANUAL"))
    elif cmd.reason not in REASONS:
        p.append(("reason", "INVALID_REASON", "reason must be HARD_BOUNCE, COMPLAINT or MANUAL"))
    note = _text(cmd.note, "note", MAX_NOTE, p)
    _raise(p)
    return replace(cmd, note=note)


def validate_unsuppress(cmd: Unsuppress) -> Unsuppress:
    p: Problems = []
    check_channel(cmd.channel, p)
    note = _text(cmd.note, "note", MAX_NOTE, p)
    _raise(p)
    return replace(cmd, note=note)


# --- confirmation tokens: <contact id, 16 bytes><secret, 32 bytes>, base64url --------------------
# The contact id inside lets a confirmation find its ledger without any index (and so without
# read-model lag). The secret comes from the application (derived from the contact's key).


def make_token(contact_id: str, secret: bytes) -> str:
    raw = uuid.UUID(contact_id).bytes + secret
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def token_contact(token: str) -> str:
    """The contact id inside a token; Invalid when it is not one of ours."""
    if not token:
        raise Invalid([("token", "TOKEN_REQUIRED", "a confirmation token is required")])
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii") + b"=" * (-len(token) % 4))
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raw = b""
    if (
        len(raw) != 16 + TOKEN_SECRET_BYTES
        or make_token(str(uuid.UUID(bytes=raw[:16])), raw[16:]) != token
    ):
        raise Invalid([("token", "INVALID_TOKEN", "not a confirmation token of this service")])
    return str(uuid.UUID(bytes=raw[:16]))


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# --- decide -------------------------------------------------------------------------------------


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


def decide_suppress(ledger: Ledger, cmd: Suppress) -> list[Event]:
    current = ledger.channel(cmd.channel).suppression
    if current is not None and current.reason == cmd.reason:
        return []
    data = {"contact_id": ledger.contact_id, "channel": cmd.channel, "reason": cmd.reason}
    return [(SUPPRESSED, data | ({"note": cmd.note} if cmd.note else {}))]


def decide_unsuppress(ledger: Ledger, cmd: Unsuppress) -> list[Event]:
    if ledger.channel(cmd.channel).suppression is None:
        return []
    data = {"contact_id": ledger.contact_id, "channel": cmd.channel}
    return [(UNSUPPRESSED, data | ({"note": cmd.note} if cmd.note else {}))]


# --- merges ---------------------------------------------------------------------------------

CONTACT_ABSORBED = PREFIX + "ContactAbsorbed"
CONTACT_ABSORPTION_REVERTED = PREFIX + "ContactAbsorptionReverted"
_RESTRICTIVENESS = {SUBSCRIBED: 0, NEVER: 1, UNSUBSCRIBED: 2}


def absorbed(contact_events: Iterable[tuple[str, Mapping[str, Any]]]) -> list[str]:
    """The contacts merged into this one (and not unmerged), from its own contact stream."""
    ids: dict[str, None] = {}
    for type_, data in contact_events:
        if type_ == CONTACT_ABSORBED:
            ids[data["merged_id"]] = None
        elif type_ == CONTACT_ABSORPTION_REVERTED:
            ids.pop(data["merged_id"], None)
    return list(ids)


def with_merged(
    own: Mapping[str, ChannelConsent], merged: Iterable[Mapping[str, ChannelConsent]]
) -> dict[str, ChannelConsent]:
    """A survivor's consent, given the ledgers of the contacts merged into it. Per channel the
    more restrictive statement wins, unless the survivor's own statement is the more recent one
    (its own evidence says otherwise); a suppression of any of them applies. Ledgers are never
    rewritten by a merge, so consent cannot leak between people and an unmerge undoes this."""
    out = dict(own)
    for ledger in merged:
        for name, theirs in ledger.items():
            mine = out.get(name) or ChannelConsent(name)
            stricter = _RESTRICTIVENESS[theirs.state] > _RESTRICTIVENESS[mine.state]
            mine_newer = (
                mine.state != NEVER
                and mine.changed_at is not None
                and (theirs.changed_at is None or mine.changed_at > theirs.changed_at)
            )
            if stricter and not mine_newer:
                mine = replace(
                    mine, state=theirs.state, terms=theirs.terms, changed_at=theirs.changed_at
                )
            if theirs.suppression is not None and mine.suppression is None:
                mine = replace(mine, suppression=theirs.suppression)
            out[name] = mine
    return out
