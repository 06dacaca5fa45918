"""The gRPC adapter of the consent ledger (crm.contacts.v1.ConsentService): protobuf in, handler
calls, protobuf out. Enums map to the domain's lower-case names; an unknown enum number maps to
a name the domain rejects, so every validation rule lives in the domain."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc

from crm.contacts.v1 import consent_pb2 as pb
from crm.contacts.v1 import consent_pb2_grpc as pb_grpc
from services.contacts.api.common import DOMAIN, LIMITS, batch_ids
from services.contacts.api.common import contact_id as _contact_id
from services.contacts.api.common import meta as _meta
from services.contacts.application.consent import ConsentLedgers, Entry
from services.contacts.domain import consent as domain
from services.contacts.domain.consent import ChannelConsent, Evidence, Terms
from shared.domain import paging
from shared.grpckit import calls
from shared.grpckit import errors as ge
from shared.grpckit.audit import PersonalDataAudit
from shared.grpckit.limits import enforced

SERVICE = "crm.contacts.v1.ConsentService"
T = TypeVar("T")
EARLIEST_OCCUR_TIME = datetime(1970, 1, 1, tzinfo=UTC)  # and never in the future (domain rule)

CHANNELS = {pb.CHANNEL_EMAIL: "email", pb.CHANNEL_SMS: "sms", pb.CHANNEL_PUSH: "push"}
STATES = {
    pb.CONSENT_STATE_NEVER_SUBSCRIBED: domain.NEVER,
    pb.CONSENT_STATE_SUBSCRIBED: domain.SUBSCRIBED,
    pb.CONSENT_STATE_UNSUBSCRIBED: domain.UNSUBSCRIBED,
    pb.CONSENT_STATE_PENDING_CONFIRMATION: domain.PENDING,
}
BASES = {getattr(pb, "LEGAL_BASIS_" + b.upper()): b for b in domain.LEGAL_BASES}
REASONS = {getattr(pb, "SUPPRESSION_REASON_" + r.upper()): r for r in domain.REASONS}
ENTRY_TYPES = {
    domain.GRANTED: (pb.LEDGER_ENTRY_TYPE_CONSENT_GRANTED, pb.CONSENT_STATE_SUBSCRIBED),
    domain.WITHDRAWN: (pb.LEDGER_ENTRY_TYPE_CONSENT_WITHDRAWN, pb.CONSENT_STATE_UNSUBSCRIBED),
    domain.REQUESTED: (
        pb.LEDGER_ENTRY_TYPE_CONFIRMATION_REQUESTED,
        pb.CONSENT_STATE_PENDING_CONFIRMATION,
    ),
    domain.CONFIRMED: (pb.LEDGER_ENTRY_TYPE_CONSENT_CONFIRMED, pb.CONSENT_STATE_SUBSCRIBED),
    domain.SUPPRESSED: (pb.LEDGER_ENTRY_TYPE_CHANNEL_SUPPRESSED, pb.CONSENT_STATE_UNSPECIFIED),
    domain.UNSUPPRESSED: (pb.LEDGER_ENTRY_TYPE_CHANNEL_UNSUPPRESSED, pb.CONSENT_STATE_UNSPECIFIED),
}


def _in(mapping: Mapping[Any, str], value: int) -> str:
    """Enum number -> domain name; "" for UNSPECIFIED, a rejected name for an unknown number."""
    return "" if value == 0 else mapping.get(value, f"#{value}")


def _out(mapping: Mapping[Any, str], name: str) -> Any:
    return next((k for k, v in mapping.items() if v == name), 0)


def _evidence(m: pb.ConsentEvidence) -> Evidence:
    return Evidence(ip=m.ip, user_agent=m.user_agent)


def _terms(msg: Any, terms: Terms) -> None:
    msg.legal_basis = _out(BASES, terms.legal_basis)
    msg.source, msg.policy_version = terms.source, terms.policy_version


def channel_to_pb(ch: ChannelConsent, at: datetime) -> pb.ChannelConsent:
    """The channel as it stands at instant ``at`` (an open request may have expired by then)."""
    msg = pb.ChannelConsent(channel=_out(CHANNELS, ch.channel))
    state = ch.effective_state(at)
    msg.state = _out(STATES, state)
    request = ch.open_request(at)
    if state == domain.PENDING and request is not None:
        _terms(msg, request.terms)
        msg.update_time.CopyFrom(calls.timestamp(request.requested_at))
    elif ch.changed_at is not None:
        _terms(msg, ch.terms)
        msg.update_time.CopyFrom(calls.timestamp(ch.changed_at))
    if request is not None:
        _terms(msg.pending, request.terms)
        msg.pending.request_time.CopyFrom(calls.timestamp(request.requested_at))
        msg.pending.expire_time.CopyFrom(calls.timestamp(request.expires_at))
    if ch.suppression is not None:
        msg.suppressed = True
        msg.suppression_reason = _out(REASONS, ch.suppression.reason)
        msg.suppression_note = ch.suppression.note
        msg.suppress_time.CopyFrom(calls.timestamp(ch.suppression.at))
    return msg


def entry_to_pb(entry: Entry, shown: bool = True) -> pb.ConsentLedgerEntry:
    """``shown``: with its evidence (personal data); else without it, marked redacted."""
    e, d = entry.event, entry.data
    type_, state = ENTRY_TYPES.get(e.type, (pb.LEDGER_ENTRY_TYPE_UNSPECIFIED, 0))
    msg = pb.ConsentLedgerEntry(
        sequence=e.version,
        event_id=str(e.event_id),
        type=type_,
        channel=_out(CHANNELS, d.get("channel", "")),
        state=state,  # type: ignore[arg-type]
        evidence_erased=entry.evidence_erased,
        suppression_reason=_out(REASONS, d.get("reason", "")),
        note=d.get("note", ""),
        actor=e.metadata.get("actor", ""),
        request_id=e.metadata.get("request_id", ""),
    )
    _terms(msg, Terms.of(d))
    msg.record_time.CopyFrom(calls.timestamp(e.recorded_at))
    if "occur_time" in d:
        msg.occur_time.CopyFrom(calls.timestamp(datetime.fromisoformat(d["occur_time"])))
    if "expire_time" in d:
        msg.confirmation_expire_time.CopyFrom(
            calls.timestamp(datetime.fromisoformat(d["expire_time"]))
        )
    ev = d.get("evidence") or {}
    if ev and not shown:
        msg.evidence_redacted = True
    elif ev:
        msg.evidence.ip, msg.evidence.user_agent = ev.get("ip", ""), ev.get("user_agent", "")
    return msg


def _all_channels(channels: Mapping[str, ChannelConsent], at: datetime) -> list[pb.ChannelConsent]:
    return [
        channel_to_pb(channels.get(name) or ChannelConsent(name), at) for name in domain.CHANNELS
    ]


def _seal(token: str) -> str:
    """The ledger's history token, signed: clients can neither forge nor edit it."""
    return paging.seal({"h": token}) if token else ""


def _unseal(token: str) -> str:
    if not token:
        return ""
    data = paging.unseal(token)
    if not isinstance(data, dict) or not isinstance(data.get("h"), str) or not data["h"]:
        raise paging.Invalid([("page_token", "INVALID_PAGE_TOKEN", "not a page token")])
    return data["h"]


@enforced(DOMAIN, LIMITS, pb.DESCRIPTOR.services_by_name["ConsentService"])
class ConsentServicer(pb_grpc.ConsentServiceServicer):
    """Registered before the server starts (gRPC requires it); ``bind`` gives it its handlers
    once the database is ready. Until then every call is UNAVAILABLE."""

    def __init__(self) -> None:
        self._ledgers: ConsentLedgers | None = None
        self._audit: PersonalDataAudit | None = None

    def bind(self, ledgers: ConsentLedgers, audit: PersonalDataAudit) -> None:
        self._ledgers, self._audit = ledgers, audit

    @property
    def ledgers(self) -> ConsentLedgers:
        if self._ledgers is None:
            raise ge.Unavailable("NOT_READY", "starting up; retry", domain=DOMAIN)
        return self._ledgers

    async def RecordConsent(
        self, request: pb.RecordConsentRequest, context: grpc.aio.ServicerContext
    ) -> pb.RecordConsentResponse:
        cid = _contact_id(request.contact_id)
        rid = request.request_id
        cmd = domain.RecordConsent(
            channel=_in(CHANNELS, request.channel),
            state=_in(STATES, request.state),
            terms=Terms(_in(BASES, request.legal_basis), request.source, request.policy_version),
            evidence=_evidence(request.evidence),
            double_opt_in=request.double_opt_in,
            occurred_at=calls.timestamp_arg(
                DOMAIN, request, "occur_time", earliest=EARLIEST_OCCUR_TIME
            ),
        )
        r = await self.ledgers.record(cid, cmd, request_id=rid, meta=_meta(rid, context))
        out = pb.RecordConsentResponse(
            contact_id=cid,
            consent=channel_to_pb(r.consent, r.now),
            changed=r.changed,
            confirmation_token=r.token,
        )
        if r.token_expires_at is not None:
            out.confirmation_expire_time.CopyFrom(calls.timestamp(r.token_expires_at))
        return out

    async def ConfirmConsent(
        self, request: pb.ConfirmConsentRequest, context: grpc.aio.ServicerContext
    ) -> pb.ConfirmConsentResponse:
        rid = request.request_id
        cid, ch, now = await self.ledgers.confirm(
            request.token,
            _evidence(request.evidence),
            request_id=rid,
            meta=_meta(rid, context),
        )
        return pb.ConfirmConsentResponse(contact_id=cid, consent=channel_to_pb(ch, now))

    async def GetConsent(
        self, request: pb.GetConsentRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetConsentResponse:
        cid = _contact_id(request.contact_id)
        at = calls.timestamp_arg(DOMAIN, request, "as_of_time")
        if at is None:
            channels, now = await self.ledgers.current(cid)
            return pb.GetConsentResponse(contact_id=cid, channels=_all_channels(channels, now))
        as_of = at
        channels = await self.ledgers.as_of(cid, as_of)
        return pb.GetConsentResponse(contact_id=cid, channels=_all_channels(channels, as_of))

    async def BatchGetConsents(
        self, request: pb.BatchGetConsentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.BatchGetConsentsResponse:
        ids = batch_ids(request.contact_ids)
        found, now = await self.ledgers.current_many(ids)
        return pb.BatchGetConsentsResponse(
            consents=[
                pb.GetConsentResponse(contact_id=cid, channels=_all_channels(found[cid], now))
                for cid in ids
                if cid in found
            ],
            missing=[cid for cid in ids if cid not in found],
        )

    async def GetConsentHistory(
        self, request: pb.GetConsentHistoryRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetConsentHistoryResponse:
        cid = _contact_id(request.contact_id)
        after = _unseal(request.page_token)
        entries, token = await self.ledgers.history(
            cid, _in(CHANNELS, request.channel), request.page_size, after
        )
        assert self._audit is not None  # bound with the ledgers
        evidence = any(e.data.get("evidence") for e in entries)  # the personal data here
        shown = await self._audit.disclose([cid] if evidence else [])
        return pb.GetConsentHistoryResponse(
            entries=[entry_to_pb(e, shown) for e in entries], next_page_token=_seal(token)
        )

    async def SuppressChannel(
        self, request: pb.SuppressChannelRequest, context: grpc.aio.ServicerContext
    ) -> pb.SuppressChannelResponse:
        cid = _contact_id(request.contact_id)
        rid = request.request_id
        cmd = domain.Suppress(
            _in(CHANNELS, request.channel), _in(REASONS, request.reason), request.note
        )
        ch, changed, now = await self.ledgers.suppress(
            cid, cmd, request_id=rid, meta=_meta(rid, context)
        )
        return pb.SuppressChannelResponse(
            contact_id=cid, consent=channel_to_pb(ch, now), changed=changed
        )

    async def UnsuppressChannel(
        self, request: pb.UnsuppressChannelRequest, context: grpc.aio.ServicerContext
    ) -> pb.UnsuppressChannelResponse:
        cid = _contact_id(request.contact_id)
        rid = request.request_id
        cmd = domain.Unsuppress(_in(CHANNELS, request.channel), request.note)
        ch, changed, now = await self.ledgers.unsuppress(
            cid, cmd, request_id=rid, meta=_meta(rid, context)
        )
        return pb.UnsuppressChannelResponse(
            contact_id=cid, consent=channel_to_pb(ch, now), changed=changed
        )
