"""The Delivery port over gRPC: batches of rendered messages to the delivery workers (the
notifications `delivery` role, DeliveryService in protos/crm/notifications/v1/delivery.proto).

Every call carries the notifications service token (the workers admit only the service role)
and, like the suite's other clients, goes over TLS when GRPC_TLS_CA_FILE is set. Any failure
of the call itself (workers away, too slow, refusing our token, a malformed answer) raises
``DeliveryUnavailable``: nothing is known about that batch, every message of it is in doubt and
is sent again under the same message id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import grpc

from crm.notifications.v1 import delivery_pb2 as pb
from crm.notifications.v1 import delivery_pb2_grpc as pb_grpc
from crm.notifications.v1 import events_pb2 as epb
from services.notifications.application.delivery import Outbound, Outcome, Status
from shared.grpckit.client import ClientTls, bearer, open_channel
from shared.grpckit.upstream import reason_of

MAX_BATCH = 500  # what DeliverRequest takes
READY_WAIT = 1.0  # seconds ready() waits for a connection
# Workers back after an outage are reached within seconds, not gRPC's default of up to 120 s.
RECONNECT = (("grpc.initial_reconnect_backoff_ms", 500), ("grpc.max_reconnect_backoff_ms", 5000))
# A batch of 500 emails over a pool of SMTP connections, each send bounded by its own timeout.
TIMEOUT = 120.0

_STATUS: dict[int, Status] = {
    pb.DELIVERY_STATUS_SENT: "sent",
    pb.DELIVERY_STATUS_RETRY: "retry",
    pb.DELIVERY_STATUS_REJECTED: "rejected",
}


class DeliveryUnavailable(Exception):
    """The workers could not be asked or did not answer in full: the batch is in doubt."""

    def __init__(self, message: str, code: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.code, self.reason = code, reason


def to_proto(message: Outbound) -> pb.OutboundMessage:
    return pb.OutboundMessage(
        message_id=message.message_id,
        channel=epb.Channel.Value(message.channel),
        to=message.to,
        sender=message.sender,
        subject=message.subject,
        text=message.text,
        html=message.html,
        body=message.body,
        headers=[pb.Header(name=n, value=v) for n, v in message.headers],
        attempt=message.attempt,
        test=message.test,
    )


def from_proto(outcome: pb.DeliveryOutcome) -> Outcome:
    status = _STATUS.get(outcome.status)
    if status is None:
        raise DeliveryUnavailable(
            f"the workers answered status {outcome.status} for {outcome.message_id}"
        )
    return Outcome(outcome.message_id, status, outcome.detail, outcome.provider_id)


class GrpcDelivery:
    """``Delivery`` (services/notifications/application/delivery.py) over gRPC."""

    def __init__(
        self, target: str, token: str, tls: ClientTls | None = None, *, timeout: float = TIMEOUT
    ) -> None:
        self.channel = open_channel(target, tls, options=RECONNECT)
        self.stub = pb_grpc.DeliveryServiceStub(self.channel)
        self.auth = bearer(token)
        self.timeout = timeout

    async def deliver(self, messages: Sequence[Outbound]) -> list[Outcome]:
        """One outcome per message, in order; batches above 500 go as several calls."""
        out: list[Outcome] = []
        for i in range(0, len(messages), MAX_BATCH):
            out += await self._batch(messages[i : i + MAX_BATCH])
        return out

    async def _batch(self, messages: Sequence[Outbound]) -> list[Outcome]:
        request = pb.DeliverRequest(messages=[to_proto(m) for m in messages])
        try:
            answer = await self.stub.Deliver(request, timeout=self.timeout, metadata=self.auth)
        except grpc.aio.AioRpcError as err:
            reason, _ = reason_of(err)
            raise DeliveryUnavailable(
                f"delivery workers: {err.code().name} {err.details() or ''}".strip(),
                err.code().name,
                reason,
            ) from None
        outcomes = [from_proto(o) for o in answer.outcomes]
        if [o.message_id for o in outcomes] != [m.message_id for m in messages]:
            raise DeliveryUnavailable("the workers' outcomes do not match the batch's messages")
        return outcomes

    async def ready(self) -> bool:
        if self.channel.get_state(try_to_connect=True) == grpc.ChannelConnectivity.READY:
            return True
        try:
            await asyncio.wait_for(self.channel.channel_ready(), READY_WAIT)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        await self.channel.close()
