"""The SegmentationService gRPC adapter: request -> command or query -> response."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc

from crm.segmentation.v1 import segmentation_pb2 as pb
from crm.segmentation.v1 import segmentation_pb2_grpc as pb_grpc
from services.segmentation.adapters.queries import SegmentQueries
from services.segmentation.application.segments import SEGMENT, SegmentCommands
from services.segmentation.domain.segment import Segment
from shared.domain.errors import NotFound
from shared.grpckit import calls
from shared.grpckit.limits import Limits, enforced

SERVICE = "crm.segmentation.v1.SegmentationService"
DOMAIN = "segmentation.crm"
LIMITS = Limits(fields={"rule": 8000, "name": 200, "description": 2000, "key": 64})
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)


def segment_pb(s: Segment) -> pb.Segment:
    out = pb.Segment(
        segment_id=s.segment_id,
        key=s.key,
        name=s.name,
        description=s.description,
        rule=s.rule,
        rule_version=s.rule_version,
        archived=s.archived,
        etag=str(s.version),
    )
    if s.create_time is not None:
        out.create_time.CopyFrom(calls.timestamp(s.create_time))
    if s.update_time is not None:
        out.update_time.CopyFrom(calls.timestamp(s.update_time))
    return out


@enforced(DOMAIN, LIMITS, pb.DESCRIPTOR.services_by_name["SegmentationService"])
class SegmentationServicer(pb_grpc.SegmentationServiceServicer):
    """Bound to its application objects once the database is reachable (see app.py)."""

    def bind(self, commands: SegmentCommands, queries: SegmentQueries) -> None:
        self.commands, self.queries = commands, queries

    @staticmethod
    def _id(value: str, field: str, reason: str) -> str:
        if not value:
            raise calls.invalid(DOMAIN, field, reason, "required")
        return calls.uuid_arg(DOMAIN, value, field, reason)

    @staticmethod
    def _as_of(request: object) -> datetime:
        at = calls.timestamp_arg(
            DOMAIN, request, "as_of", earliest=EARLIEST, ahead=timedelta(minutes=1)
        )
        return at or datetime.now(UTC)

    async def _segment(self, segment_id: str) -> Segment:
        found = await self.queries.get(segment_id) or await self.commands.runner.get(
            SEGMENT, segment_id
        )
        if found is None:
            raise NotFound("SEGMENT_NOT_FOUND", f"no segment {segment_id}", segment_id=segment_id)
        return found

    async def CreateSegment(
        self, request: pb.CreateSegmentRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateSegmentResponse:
        rid = request.request_id
        s = await self.commands.create(
            request.key,
            request.name,
            request.description,
            request.rule,
            request_id=rid,
            meta=calls.event_meta(rid, context),
        )
        return pb.CreateSegmentResponse(segment=segment_pb(s))

    async def UpdateSegment(
        self, request: pb.UpdateSegmentRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateSegmentResponse:
        sid = self._id(request.segment_id, "segment_id", "INVALID_SEGMENT_ID")
        rid = request.request_id
        s = await self.commands.update(
            sid,
            request.name,
            request.description,
            request.rule,
            etag=request.etag,
            request_id=rid,
            meta=calls.event_meta(rid, context),
        )
        return pb.UpdateSegmentResponse(segment=segment_pb(s))

    async def ArchiveSegment(
        self, request: pb.ArchiveSegmentRequest, context: grpc.aio.ServicerContext
    ) -> pb.ArchiveSegmentResponse:
        sid = self._id(request.segment_id, "segment_id", "INVALID_SEGMENT_ID")
        rid = request.request_id
        s = await self.commands.archive(sid, request_id=rid, meta=calls.event_meta(rid, context))
        return pb.ArchiveSegmentResponse(segment=segment_pb(s))

    async def GetSegment(
        self, request: pb.GetSegmentRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetSegmentResponse:
        sid = self._id(request.segment_id, "segment_id", "INVALID_SEGMENT_ID")
        return pb.GetSegmentResponse(segment=segment_pb(await self._segment(sid)))

    async def ListSegments(
        self, request: pb.ListSegmentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListSegmentsResponse:
        size = calls.page_size(DOMAIN, request.page_size)
        page, token = await self.queries.page(size, request.page_token, request.include_archived)
        return pb.ListSegmentsResponse(
            segments=[segment_pb(s) for s in page], next_page_token=token
        )

    async def IsMember(
        self, request: pb.IsMemberRequest, context: grpc.aio.ServicerContext
    ) -> pb.IsMemberResponse:
        cid = self._id(request.contact_id, "contact_id", "INVALID_CONTACT_ID")
        sid = self._id(request.segment_id, "segment_id", "INVALID_SEGMENT_ID")
        at = self._as_of(request)
        await self._segment(sid)
        out = pb.IsMemberResponse()
        if (since := await self.queries.stay(sid, cid, at)) is not None:
            out.member = True
            out.since.CopyFrom(calls.timestamp(since))
        elif (left := await self.queries.last_exit(sid, cid, at)) is not None:
            out.since.CopyFrom(calls.timestamp(left))
        return out

    async def ListSegmentMembers(
        self, request: pb.ListSegmentMembersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListSegmentMembersResponse:
        sid = self._id(request.segment_id, "segment_id", "INVALID_SEGMENT_ID")
        at = self._as_of(request)
        size = calls.page_size(DOMAIN, request.page_size)
        await self._segment(sid)
        ids, token = await self.queries.members(sid, at, size, request.page_token)
        return pb.ListSegmentMembersResponse(contact_ids=ids, next_page_token=token)

    async def ListContactSegments(
        self, request: pb.ListContactSegmentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListContactSegmentsResponse:
        cid = self._id(request.contact_id, "contact_id", "INVALID_CONTACT_ID")
        at = self._as_of(request)
        out = pb.ListContactSegmentsResponse()
        for stay in await self.queries.segments_of(cid, at):
            out.segments.add(
                segment_id=stay.segment_id,
                segment_key=stay.key,
                enter_time=calls.timestamp(stay.enter_time),
            )
        return out
