"""Contacts (profile, identity, consent: read, suppressed, withdrawn) over its gRPC API, called
with notifications' service token: services never read each other's tables. Its refusals
become ours (shared/grpckit/upstream.py); anything else is UNAVAILABLE."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import UTC
from typing import Any

import grpc
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp

from crm.contacts.v1 import consent_pb2 as kpb
from crm.contacts.v1 import consent_pb2_grpc as kpb_grpc
from crm.contacts.v1 import contacts_pb2 as cpb
from crm.contacts.v1 import contacts_pb2_grpc as cpb_grpc
from crm.contacts.v1 import events_pb2 as cepb
from services.notifications.application.ports import ContactFacts
from services.notifications.application.tracking import Evidence
from services.notifications.domain.decision import ConsentUsed
from shared.grpckit.client import ClientTls, bearer, open_channel
from shared.grpckit.upstream import Upstream

TIMEOUT = 5.0
BATCH = 500  # the most contacts' batch reads take
NEVER_SUBSCRIBED = ConsentUsed(state="CONSENT_STATE_NEVER_SUBSCRIBED")
MAX_USER_AGENT = 512  # what contacts keeps
CONTACTS = Upstream("contacts", "notifications.crm")


def time_text(ts: Timestamp) -> str:
    return ts.ToJsonString() if ts.seconds or ts.nanos else ""


def _attribute(v: cepb.AttributeValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "timestamp_value":
        return time_text(v.timestamp_value)
    if kind == "number_value":
        n = v.number_value
        return int(n) if n.is_integer() and abs(n) < 2**53 else n
    return getattr(v, kind) if kind else None


def contact_facts(c: cpb.Contact) -> ContactFacts:
    profile = {
        "contact_id": c.contact_id,
        "email": c.email,
        "phone": c.phone,
        "external_id": c.external_id,
        "first_name": c.first_name,
        "last_name": c.last_name,
        "locale": c.locale,
        "time_zone": c.time_zone,
        "tags": list(c.tags),
        "attributes": {k: _attribute(v) for k, v in c.attributes.items()},
    }
    return ContactFacts(
        contact_id=c.contact_id,
        email=c.email,
        phone=c.phone,
        locale=c.locale,
        time_zone=c.time_zone,
        archived=c.archived,
        erased=c.erased,
        profile=profile,
    )


class GrpcContacts:
    def __init__(self, target: str, token: str, tls: ClientTls | None = None) -> None:
        self.channel = open_channel(target, tls)
        self.contacts = cpb_grpc.ContactsServiceStub(self.channel)
        self.ledgers = kpb_grpc.ConsentServiceStub(self.channel)
        self.auth = bearer(token)  # the service role: no reason needed

    async def close(self) -> None:
        await self.channel.close()

    async def get(self, contact_id: str) -> ContactFacts | None:
        try:
            found = await self.contacts.GetContact(
                cpb.GetContactRequest(contact_id=contact_id), timeout=TIMEOUT, metadata=self.auth
            )
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise CONTACTS.error(err, "contact_id", "read the contact") from None
        return contact_facts(found.contact)

    async def tag(
        self, contact_id: str, add: Sequence[str], remove: Sequence[str], request_id: str
    ) -> None:
        """A flow's tag step: the contact's tags with ``add`` and without ``remove``, written at
        the version read (a concurrent change: ABORTED, tried again later); a retry with the
        same request id answers the first write."""
        try:
            found = await self.contacts.GetContact(
                cpb.GetContactRequest(contact_id=contact_id), timeout=TIMEOUT, metadata=self.auth
            )
            now = found.contact
            tags = [x for x in now.tags if x not in remove] + [
                x for x in add if x not in now.tags and x not in remove
            ]
            if tags == list(now.tags):
                return
            await self.contacts.UpdateContact(
                cpb.UpdateContactRequest(
                    contact=cpb.Contact(contact_id=contact_id, tags=tags),
                    update_mask=FieldMask(paths=["tags"]),
                    etag=now.etag,
                    request_id=request_id,
                ),
                timeout=TIMEOUT,
                metadata=self.auth,
            )
        except grpc.aio.AioRpcError as err:
            raise CONTACTS.error(err, "contact_id", "tag the contact") from None

    async def find(self, kind: str, value: str) -> str | None:
        try:
            found = await self.contacts.FindContact(
                cpb.FindContactRequest(**{kind: value}), timeout=TIMEOUT, metadata=self.auth
            )
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise CONTACTS.error(err, kind, "find the contact") from None
        return str(found.contact.contact_id)

    async def consent(self, contact_id: str, channel: str) -> ConsentUsed:
        try:
            answer = await self.ledgers.GetConsent(
                kpb.GetConsentRequest(contact_id=contact_id), timeout=TIMEOUT, metadata=self.auth
            )
        except grpc.aio.AioRpcError as err:
            raise CONTACTS.error(err, "contact_id", "read the consent") from None
        return _channels(answer).get(channel, NEVER_SUBSCRIBED)

    async def get_many(self, contact_ids: Sequence[str]) -> dict[str, ContactFacts]:
        """BatchGetContacts, BATCH ids a call."""
        out: dict[str, ContactFacts] = {}
        for chunk in _chunks(contact_ids):
            try:
                answer = await self.contacts.BatchGetContacts(
                    cpb.BatchGetContactsRequest(contact_ids=chunk),
                    timeout=TIMEOUT,
                    metadata=self.auth,
                )
            except grpc.aio.AioRpcError as err:
                raise CONTACTS.error(err, "contact_id", "read the contacts") from None
            out.update((f.requested_contact_id, contact_facts(f.contact)) for f in answer.contacts)
        return out

    async def consents(self, contact_ids: Sequence[str]) -> dict[str, dict[str, ConsentUsed]]:
        """BatchGetConsents, BATCH ids a call."""
        out: dict[str, dict[str, ConsentUsed]] = {}
        for chunk in _chunks(contact_ids):
            try:
                answer = await self.ledgers.BatchGetConsents(
                    kpb.BatchGetConsentsRequest(contact_ids=chunk),
                    timeout=TIMEOUT,
                    metadata=self.auth,
                )
            except grpc.aio.AioRpcError as err:
                raise CONTACTS.error(err, "contact_id", "read the consents") from None
            out.update((c.contact_id, _channels(c)) for c in answer.consents)
        return out

    async def suppress(
        self, contact_id: str, channel: str, reason: str, note: str, request_id: str
    ) -> bool:
        """SuppressChannel (a retry with the same request id answers the first result); whether
        it changed anything."""
        try:
            answer = await self.ledgers.SuppressChannel(
                kpb.SuppressChannelRequest(
                    contact_id=contact_id,
                    channel=kpb.Channel.Value(channel),
                    reason=kpb.SuppressionReason.Value(reason),
                    note=note[:500],
                    request_id=request_id,
                ),
                timeout=TIMEOUT,
                metadata=self.auth,
            )
        except grpc.aio.AioRpcError as err:
            raise CONTACTS.error(err, "contact_id", "suppress the channel") from None
        return bool(answer.changed)

    async def withdraw(
        self, contact_id: str, channel: str, source: str, evidence: Evidence, request_id: str
    ) -> bool:
        """The unsubscribe endpoint's withdrawal of a channel's consent (RecordConsent,
        UNSUBSCRIBED) with its source and evidence; whether it changed anything."""
        request = kpb.RecordConsentRequest(
            contact_id=contact_id,
            channel=kpb.Channel.Value(channel),
            state=kpb.CONSENT_STATE_UNSUBSCRIBED,
            source=source,
            evidence=kpb.ConsentEvidence(
                ip=_ip(evidence.ip),
                user_agent="".join(c for c in evidence.user_agent if c.isprintable())[
                    :MAX_USER_AGENT
                ],
            ),
            request_id=request_id,
        )
        try:
            answer = await self.ledgers.RecordConsent(request, timeout=TIMEOUT, metadata=self.auth)
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.ALREADY_EXISTS:  # the key's withdrawal was recorded
                return False  # by an earlier request (its evidence differed): done already
            raise CONTACTS.error(err, "contact_id", "record the withdrawal") from None
        return bool(answer.changed)


def _chunks(ids: Sequence[str]) -> list[list[str]]:
    unique = list(dict.fromkeys(ids))
    return [unique[i : i + BATCH] for i in range(0, len(unique), BATCH)]


def _channels(answer: kpb.GetConsentResponse) -> dict[str, ConsentUsed]:
    """GetConsent's answer as the consent each channel gives a decision."""
    out = {}
    for c in answer.channels:
        out[kpb.Channel.Name(c.channel)] = ConsentUsed(
            state=kpb.ConsentState.Name(c.state),
            legal_basis=kpb.LegalBasis.Name(c.legal_basis) if c.legal_basis else "",
            policy_version=c.policy_version,
            update_time=c.update_time.ToDatetime(tzinfo=UTC) if c.HasField("update_time") else None,
            suppressed=c.suppressed,
            suppression_reason=kpb.SuppressionReason.Name(c.suppression_reason)
            if c.suppressed
            else "",
        )
    return out


def _ip(text: str) -> str:
    """An IP address contacts accepts, or "" (an aiohttp peer may be a socket path)."""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return ""
