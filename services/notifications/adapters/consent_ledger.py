"""Contacts' consent ledger over gRPC, for the unsubscribe endpoint: the withdrawal of a channel's
consent (ConsentService.RecordConsent, UNSUBSCRIBED) with its source and evidence, called with
notifications' service token. Refusals become ours (shared/grpckit/upstream.py); anything else
is CONTACTS_UNAVAILABLE."""

from __future__ import annotations

import ipaddress

import grpc

from crm.contacts.v1 import consent_pb2 as kpb
from crm.contacts.v1 import consent_pb2_grpc as kpb_grpc
from services.notifications.application.tracking import Evidence
from shared.grpckit.client import ClientTls, bearer, open_channel
from shared.grpckit.upstream import Upstream

TIMEOUT = 5.0
CONTACTS = Upstream("contacts", "notifications.crm")
MAX_USER_AGENT = 512  # what contacts keeps


def _ip(text: str) -> str:
    """An IP address contacts accepts, or "" (an aiohttp peer may be a socket path)."""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return ""


class GrpcConsentLedger:
    def __init__(self, target: str, token: str, tls: ClientTls | None = None) -> None:
        self.channel = open_channel(target, tls)
        self.stub = kpb_grpc.ConsentServiceStub(self.channel)
        self.auth = bearer(token)

    async def close(self) -> None:
        await self.channel.close()

    async def withdraw(
        self, contact_id: str, channel: str, source: str, evidence: Evidence, request_id: str
    ) -> bool:
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
            answer = await self.stub.RecordConsent(request, timeout=TIMEOUT, metadata=self.auth)
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.ALREADY_EXISTS:  # the key's withdrawal was recorded
                return False  # by an earlier request (its evidence differed): done already
            raise CONTACTS.error(err, "contact_id", "record the withdrawal") from None
        return bool(answer.changed)
