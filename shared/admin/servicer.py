"""AdminService (protos/crm/admin/v1/admin.proto): a project role's projections, their parked
events and the event log, for operators. Served by runtime.project for every registered
service, bound to the projections that role runs; errors in the "admin.crm" domain.

It answers whenever the role is connected, also while the role reports NOT_SERVING because a
worker is down (the server does not gate it on readiness: that is when operators need it)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import asyncpg
import grpc

from crm.admin.v1 import admin_pb2 as pb
from crm.admin.v1 import admin_pb2_grpc as pb_grpc
from shared.admin.convert import event_pb, parked_pb, projection_pb, rebuild_pb
from shared.admin.log_audit import LogAuditRpcs
from shared.admin.rebuilds import Rebuilds
from shared.domain import paging
from shared.domain.errors import NotFound, Precondition
from shared.eventstore import EventStore, RecordedEvent
from shared.eventstore.audit.checkpoints import SigningKey
from shared.eventstore.audit.port import AuditLog
from shared.grpckit import calls
from shared.grpckit import errors as ge
from shared.grpckit.auth import current_caller
from shared.grpckit.limits import Limits, enforced
from shared.grpckit.server import Register
from shared.projections import parked
from shared.projections.model import Projection
from shared.projections.rebuild import RebuildBusy
from shared.projections.status import kind, statuses

SERVICE = "crm.admin.v1.AdminService"
DOMAIN = "admin.crm"
LIMITS = Limits(
    fields={
        "projection": 128,
        "stream": 512,
        "category": 128,
        "types": 256,
        "types[]": 50,
        "reason": 1024,
    }
)
CHUNK_EVENTS = 200  # events per streamed message at most …
CHUNK_BYTES = 1 << 20  # … and about this many bytes of JSON
HEARTBEAT_SECONDS = 5.0  # TailEvents: an empty message this often when nothing arrives


@enforced(DOMAIN, LIMITS, pb.DESCRIPTOR.services_by_name["AdminService"])
class AdminServicer(LogAuditRpcs, pb_grpc.AdminServiceServicer):
    """The projections and the log here; the log's export and checkpoints in log_audit.py."""

    def __init__(self, service: str) -> None:
        self.service = service  # the service whose project role this is
        self.services: list[tuple[str, Register]] = [
            (SERVICE, lambda s: pb_grpc.add_AdminServiceServicer_to_server(self, s))
        ]
        self._bound = False

    def bind(
        self,
        store: EventStore,
        pool: asyncpg.Pool,
        dsn: str,
        projections: Sequence[Projection],
        batch_size: int,
        *,
        audit: AuditLog | None = None,
        signing_key: SigningKey | None = None,
    ) -> None:
        """``audit``: the store's audit side (None: a backend without checkpoints);
        ``signing_key``: this role's CHECKPOINT_SIGNING_KEY, if it has one."""
        self.bind_audit(audit, signing_key)
        self.store, self.pool = store, pool
        self.projections = {p.name: p for p in projections}
        self.rebuilds = Rebuilds(store, pool, dsn, batch_size)
        self._bound = True

    async def close(self) -> None:
        if self._bound:
            self._bound = False
            await self.rebuilds.close()

    # --- arguments ---------------------------------------------------------------------------

    def _ready(self) -> None:
        if not self._bound:
            raise ge.Unavailable("NOT_READY", "the role is starting or stopping; retry")

    def _projection(self, name: str) -> Projection:
        self._ready()
        if not name:
            raise calls.invalid(DOMAIN, "projection", "PROJECTION_REQUIRED", "required")
        found = self.projections.get(name)
        if found is None:
            raise NotFound(
                "PROJECTION_NOT_FOUND",
                f"{self.service}'s project role runs no projection {name!r}"
                f" (it runs {', '.join(sorted(self.projections))})",
                service=self.service,
                projection=name,
            )
        return found

    def _event_id(self, value: str) -> uuid.UUID:
        return uuid.UUID(calls.required_uuid(DOMAIN, value, "event_id", "INVALID_EVENT_ID"))

    async def _first_position(self) -> int:
        page = await self.store.read_all(0, limit=1)
        return page.events[0].position if page.events else 0

    # --- projections -------------------------------------------------------------------------

    async def ListProjections(
        self, request: pb.ListProjectionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListProjectionsResponse:
        self._ready()
        found = await statuses(self.pool, self.store, list(self.projections.values()))
        first = await self._first_position()
        return pb.ListProjectionsResponse(
            service=self.service,
            projections=[projection_pb(s, first) for s in found],
            head_position=await self.store.head_position(),
            read_time=calls.timestamp(datetime.now(UTC)),
        )

    async def RebuildProjection(
        self, request: pb.RebuildProjectionRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.RebuildProjectionResponse]:
        projection = self._projection(request.projection)
        if kind(projection) == "reactor":
            raise Precondition(
                "REBUILD_NOT_SUPPORTED",
                f"{projection.name} is a reactor: its effects are events in the log, and a replay"
                " does nothing, so there is no read model to rebuild",
                projection=projection.name,
            )
        try:
            operation = await self.rebuilds.start(projection, _caller(context))
        except RebuildBusy:
            raise Precondition(
                "REBUILD_IN_PROGRESS",
                f"{projection.name} is being rebuilt by its leader (its definition changed);"
                " try again once it is done",
                projection=projection.name,
            ) from None
        first = await self._first_position()
        async for record in self.rebuilds.follow(operation):
            yield pb.RebuildProjectionResponse(rebuild=rebuild_pb(record, first))

    # --- parked events -----------------------------------------------------------------------

    async def ListParkedEvents(
        self, request: pb.ListParkedEventsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListParkedEventsResponse:
        self._ready()
        names = (
            [self._projection(request.projection).name]
            if request.projection
            else sorted(self.projections)
        )
        size = calls.page_size(DOMAIN, request.page_size)
        query = f"parked|{request.projection}|{request.include_resolved}"
        after = None
        if request.page_token:
            name, position = paging.decode_token(request.page_token, query)
            after = (str(name), int(position))
        rows = await parked.list_parked(
            self.pool,
            names,
            include_resolved=request.include_resolved,
            after=after,
            limit=size + 1,
        )
        token = ""
        if len(rows) > size:
            rows = rows[:size]
            token = paging.encode_token([rows[-1].name, rows[-1].position], query)
        return pb.ListParkedEventsResponse(
            parked_events=[parked_pb(p) for p in rows], next_page_token=token
        )

    async def GetParkedEvent(
        self, request: pb.GetParkedEventRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetParkedEventResponse:
        projection = self._projection(request.projection)
        found = await parked.get_parked(
            self.pool, projection.name, self._event_id(request.event_id)
        )
        event = await self.store.get_event(found.event_id)
        return pb.GetParkedEventResponse(parked_event=parked_pb(found, event))

    async def RetryParkedEvent(
        self, request: pb.RetryParkedEventRequest, context: grpc.aio.ServicerContext
    ) -> pb.RetryParkedEventResponse:
        projection = self._projection(request.projection)
        done = await parked.retry(
            self.pool, self.store, projection, self._event_id(request.event_id)
        )
        return pb.RetryParkedEventResponse(parked_event=parked_pb(done))

    async def SkipParkedEvent(
        self, request: pb.SkipParkedEventRequest, context: grpc.aio.ServicerContext
    ) -> pb.SkipParkedEventResponse:
        projection = self._projection(request.projection)
        event_id = self._event_id(request.event_id)
        if not request.reason.strip():
            raise calls.invalid(DOMAIN, "reason", "REASON_REQUIRED", "say why it is skipped")
        done = await parked.skip(
            self.pool, projection.name, event_id, _caller(context), request.reason
        )
        return pb.SkipParkedEventResponse(parked_event=parked_pb(done))

    # --- the log -----------------------------------------------------------------------------

    async def ReadStream(
        self, request: pb.ReadStreamRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ReadStreamResponse]:
        self._ready()
        if not request.stream:
            raise calls.invalid(DOMAIN, "stream", "STREAM_REQUIRED", "required")
        as_of = calls.timestamp_arg(DOMAIN, request, "as_of")
        version, any_event = 0, False
        while True:
            page = await self.store.read_stream(request.stream, version, limit=CHUNK_EVENTS)
            if not page:
                break
            any_event = True
            version = page[-1].version + 1
            kept = [e for e in page if as_of is None or e.recorded_at <= as_of]
            for chunk in _chunks(kept):
                yield pb.ReadStreamResponse(events=chunk)
            if len(page) < CHUNK_EVENTS:
                break
        if not any_event:
            raise NotFound(
                "STREAM_NOT_FOUND", f"no stream {request.stream!r}", stream=request.stream
            )

    async def TailEvents(
        self, request: pb.TailEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.TailEventsResponse]:
        self._ready()
        if request.HasField("after_position"):
            if request.after_position < 0:
                raise calls.invalid(
                    DOMAIN, "after_position", "INVALID_AFTER_POSITION", "must be 0 or more"
                )
            after = request.after_position
        else:
            after = await self.store.head_position()
        pages = self.store.subscribe(
            after,
            categories=[request.category] if request.category else None,
            types=list(request.types) or None,
            batch_size=CHUNK_EVENTS,
        )
        yield pb.TailEventsResponse(last_position=after)  # where it starts, at once
        quiet_since = time.monotonic()
        async for page in pages:
            if not self._bound:  # the role is stopping
                return
            if page.events:
                chunks = _chunks(page.events)
                for i, chunk in enumerate(chunks):
                    last = page.last_position if i == len(chunks) - 1 else chunk[-1].position
                    yield pb.TailEventsResponse(events=chunk, last_position=last)
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= HEARTBEAT_SECONDS:
                yield pb.TailEventsResponse(last_position=page.last_position)
                quiet_since = time.monotonic()


def _caller(context: grpc.aio.ServicerContext) -> str:
    """Who is calling: the name of the token the interceptor admitted (auth.py)."""
    who = current_caller()
    return who.name if who is not None else "anonymous"


def _chunks(events: Sequence[RecordedEvent]) -> list[list[pb.Event]]:
    out: list[list[pb.Event]] = []
    chunk: list[pb.Event] = []
    size = 0
    for e in events:
        message = event_pb(e)
        if chunk and (len(chunk) >= CHUNK_EVENTS or size + message.ByteSize() > CHUNK_BYTES):
            out.append(chunk)
            chunk, size = [], 0
        chunk.append(message)
        size += message.ByteSize()
    if chunk:
        out.append(chunk)
    return out
