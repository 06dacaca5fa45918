"""DeliveryService as a nameko service over nameko-grpc: Deliver (callers with a service-role
token only) and the gRPC health service's Check (no token, for probes and `make run`).

A refusal is a nameko-grpc GrpcError carrying a google.rpc.Status with one ErrorInfo in the
``notifications.crm`` domain, so callers read it as from any suite service. An unexpected
error is INTERNAL ``DELIVERY_FAILED`` without its trace (logged here): the batch is in doubt.
"""

from __future__ import annotations

from typing import Any

import structlog
from grpc_health.v1 import health_pb2
from nameko import config
from nameko.extensions import DependencyProvider
from nameko.timer import timer
from nameko_grpc.entrypoint import Grpc
from nameko_grpc.errors import STATUS_CODE_INT_TO_ENUM_MAP, GrpcError

from crm.notifications.v1 import delivery_pb2 as pb
from services.notifications.delivery import wire
from services.notifications.delivery.metrics import BATCHES
from services.notifications.delivery.sender import Sender
from shared.tokens import SERVICE, TokenTable

log = structlog.get_logger(__name__)

MAX_BATCH = 500
DeliveryStub = wire.stub_of(pb, "DeliveryService")
HealthStub = wire.stub_of(health_pb2, "Health")
# A refusal is expected: nameko logs it without a trace (and main.py keeps such logs quiet).
deliver_rpc = Grpc.implementing(DeliveryStub)(expected_exceptions=GrpcError)
health_rpc = Grpc.implementing(HealthStub)(expected_exceptions=GrpcError)
HEALTH_NAMES = frozenset(
    {"", "liveness", pb.DESCRIPTOR.services_by_name["DeliveryService"].full_name}
)
CONFIG_KEY = "CRM_DELIVERY"  # nameko config: {"settings": DeliverySettings, "tokens": TokenTable}


def refusal(code: int, reason: str, message: str, **metadata: str) -> GrpcError:
    BATCHES.labels(reason).inc()
    log.warning("delivery.refused", reason=reason, **metadata)
    return GrpcError(
        code=STATUS_CODE_INT_TO_ENUM_MAP[code],
        message=message,
        status=wire.status(code, reason, message, **metadata),
    )


def admit(tokens: TokenTable, metadata: Any) -> None:
    """Only the suite's services may ask for sends (the proto's access option says so)."""
    header = ""
    for name, value in metadata:
        if name.lower() == "authorization":
            header = value
    if not header:
        raise refusal(
            wire.UNAUTHENTICATED,
            "TOKEN_MISSING",
            "send the metadata `authorization: Bearer <token>`",
        )
    scheme, _, token = header.strip().partition(" ")
    entry = tokens.authenticate(token.strip()) if scheme.lower() == "bearer" else None
    if entry is None:
        raise refusal(wire.UNAUTHENTICATED, "TOKEN_INVALID", "the bearer token is not valid here")
    if entry.role != SERVICE:
        method = f"{pb.DESCRIPTOR.package}.DeliveryService/Deliver"
        raise refusal(
            wire.PERMISSION_DENIED,
            "ROLE_NOT_ALLOWED",
            f"role {entry.role_name} may not call Deliver",
            role=entry.role_name,
            method=method,
            allowed="service",
        )


def check(request: pb.DeliverRequest) -> None:
    if not 1 <= len(request.messages) <= MAX_BATCH:
        raise refusal(
            wire.INVALID_ARGUMENT,
            "BATCH_SIZE",
            f"a batch has 1..{MAX_BATCH} messages, not {len(request.messages)}",
        )
    ids = [m.message_id for m in request.messages]
    if "" in ids or len(set(ids)) != len(ids):
        raise refusal(
            wire.INVALID_ARGUMENT,
            "MESSAGE_ID_INVALID",
            "every message needs its own message_id (the idempotency key)",
        )


class Senders(DependencyProvider):
    """The process's Sender (the SMTP pool, the green pool), closed when the service stops."""

    def setup(self) -> None:
        self.sender = Sender(config[CONFIG_KEY]["settings"])

    def stop(self) -> None:
        self.sender.close()

    def get_dependency(self, worker_ctx: Any) -> Sender:
        return self.sender


class DeliveryService:
    name = "delivery"
    sender = Senders()

    @deliver_rpc
    def Deliver(self, request: pb.DeliverRequest, context: Any) -> pb.DeliverResponse:
        try:
            admit(config[CONFIG_KEY]["tokens"], context.invocation_metadata())
            check(request)
            outcomes = self.sender.deliver(request.messages)
        except GrpcError:
            raise
        except Exception as exc:
            log.exception("delivery.failed", error=type(exc).__name__)
            raise refusal(
                wire.INTERNAL, "DELIVERY_FAILED", "the batch could not be handled; it is in doubt"
            ) from None
        BATCHES.labels("ok").inc()
        return pb.DeliverResponse(outcomes=outcomes)

    @health_rpc
    def Check(
        self, request: health_pb2.HealthCheckRequest, context: Any
    ) -> health_pb2.HealthCheckResponse:
        """SERVING while the process answers: the workers need nothing else to send (no
        database); the probes' names are "" (readiness), "liveness" and the service's."""
        if request.service not in HEALTH_NAMES:
            raise GrpcError(
                code=STATUS_CODE_INT_TO_ENUM_MAP[wire.NOT_FOUND], message="unknown service"
            )
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    @timer(interval=1)
    def tick(self) -> None:
        """Nothing to do: an entrypoint that wakes each second makes nameko act on SIGTERM
        within about a second (idle, it takes up to a minute)."""
