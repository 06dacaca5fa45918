"""The Admin API's audit RPCs (protos/crm/admin/v1/admin.proto): ExportEvents, ListCheckpoints
and CreateCheckpoint, so that an auditor exports the log and its signed checkpoints with a
token instead of database credentials. The export is shared/eventstore/audit/export.py's, byte
for byte, streamed in chunks; checkpoints are the store's (shared/eventstore/audit/)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

import grpc
import structlog

from crm.admin.v1 import admin_pb2 as pb
from shared.admin.convert import checkpoint_pb
from shared.domain import paging
from shared.domain.errors import Precondition
from shared.eventstore import EventStore
from shared.eventstore.audit.checkpoints import SigningKey
from shared.eventstore.audit.export import export_chunks, export_range
from shared.eventstore.audit.port import (
    AuditLog,
    CheckpointsUnsupported,
    LogBehindCheckpoint,
    audit_log,
)
from shared.eventstore.audit.worker import written
from shared.grpckit import calls
from shared.grpckit.auth import current_caller

DOMAIN = "admin.crm"
log = structlog.get_logger(__name__)


def audit_side(
    store: EventStore, signing_key: str | None
) -> tuple[AuditLog | None, SigningKey | None]:
    """What a project role binds (runtime.project): the store's audit side (None for a backend
    that keeps no checkpoints) and its signing key (``CHECKPOINT_SIGNING_KEY``; None without
    one). Raises CheckpointFormatError for a key that cannot be read."""
    try:
        audit: AuditLog | None = audit_log(store)
    except CheckpointsUnsupported:
        audit = None
    return audit, SigningKey.parse(signing_key) if signing_key else None


class LogAuditRpcs:
    """Mixed into AdminServicer; ``bind_audit`` gives it the store's audit side (None for a
    backend that keeps no checkpoints) and the signing key, if this role has one."""

    _audit: AuditLog | None = None
    _signing_key: SigningKey | None = None

    def bind_audit(self, audit: AuditLog | None, signing_key: SigningKey | None) -> None:
        self._audit, self._signing_key = audit, signing_key

    def _ready(self) -> None:  # AdminServicer's
        raise NotImplementedError

    def _audit_log(self) -> AuditLog:
        self._ready()
        if self._audit is None:
            raise Precondition(
                "AUDIT_NOT_SUPPORTED",
                "this event store backend keeps no checkpoints and cannot export: run the suite"
                " with EVENTSTORE_BACKEND=postgres (docs/architecture.md §2a)",
            )
        return self._audit

    async def ExportEvents(
        self, request: pb.ExportEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ExportEventsResponse]:
        audit = self._audit_log()
        since: int | datetime | None = None
        until: int | datetime | None = None
        if request.WhichOneof("since") == "since_position":
            since = _position(request.since_position, "since_position")
        elif request.WhichOneof("since") == "since_time":
            since = calls.timestamp_arg(DOMAIN, request, "since_time")
        if request.WhichOneof("until") == "until_position":
            until = _position(request.until_position, "until_position")
        elif request.WhichOneof("until") == "until_time":
            until = calls.timestamp_arg(DOMAIN, request, "until_time")
        if isinstance(since, int) and isinstance(until, int) and since > until:
            raise calls.invalid(
                DOMAIN, "until_position", "INVALID_RANGE", "must not be before since_position"
            )
        first, last = await export_range(audit, since, until)
        async for chunk in export_chunks(audit, first, last):
            yield pb.ExportEventsResponse(
                data=chunk.data,
                first_position=chunk.first,
                last_position=chunk.last,
                exported_events=chunk.events,
                position=chunk.position,
                exported_heads=chunk.heads,
            )

    async def ListCheckpoints(
        self, request: pb.ListCheckpointsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCheckpointsResponse:
        audit = self._audit_log()
        if request.after_number < 0:
            raise calls.invalid(DOMAIN, "after_number", "INVALID_AFTER_NUMBER", "must be 0 or more")
        size = calls.page_size(DOMAIN, request.page_size)
        query = f"checkpoints|{request.after_number}"
        after = request.after_number
        if request.page_token:
            after = int(paging.decode_token(request.page_token, query))
        found = await audit.checkpoints(after, limit=size + 1)
        token = ""
        if len(found) > size:
            found = found[:size]
            token = paging.encode_token(found[-1].number, query)
        return pb.ListCheckpointsResponse(
            checkpoints=[checkpoint_pb(c) for c in found], next_page_token=token
        )

    async def CreateCheckpoint(
        self, request: pb.CreateCheckpointRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateCheckpointResponse:
        audit = self._audit_log()
        if self._signing_key is None:
            raise Precondition(
                "SIGNING_KEY_MISSING",
                "this role has no CHECKPOINT_SIGNING_KEY: ask the project role that signs the"
                " checkpoints (the deploy files give the key to contacts' only)",
            )
        try:
            made = await audit.create_checkpoint(self._signing_key)
        except LogBehindCheckpoint as exc:
            raise Precondition(
                "LOG_BEHIND_CHECKPOINT",
                str(exc),
                checkpoint=str(exc.checkpoint.number),
                checkpoint_position=str(exc.checkpoint.position),
                final_position=str(exc.final),
            ) from None
        if made is not None:
            who = current_caller()
            written(made, requested_by=who.name if who is not None else "anonymous")
            return pb.CreateCheckpointResponse(checkpoint=checkpoint_pb(made), created=True)
        latest = await audit.latest_checkpoint()
        return pb.CreateCheckpointResponse(
            checkpoint=None if latest is None else checkpoint_pb(latest), created=False
        )


def _position(value: int, field: str) -> int:
    if value < 0:
        raise calls.invalid(DOMAIN, field, f"INVALID_{field.upper()}", "must be 0 or more")
    return value
