"""The SegmentationService gRPC adapter: request -> command or query -> response."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import grpc

from crm.segmentation.v1 import segmentation_pb2 as pb
from crm.segmentation.v1 import segmentation_pb2_grpc as pb_grpc
from services.segmentation.adapters.queries import SegmentQueries
from services.segmentation.api import rule_proto
from services.segmentation.api.explanation_proto import explanation_to_proto, reads_personal_data
from services.segmentation.api.responses import segment_pb
from services.segmentation.application.insight import Insight
from services.segmentation.application.segments import SEGMENT, SegmentCommands
from services.segmentation.domain import rules
from services.segmentation.domain.segment import Segment
from shared.domain.errors import NotFound
from shared.grpckit import calls
from shared.grpckit.audit import PersonalDataAudit
from shared.grpckit.limits import Limits, enforced

SERVICE = "crm.segmentation.v1.SegmentationService"
DOMAIN = "segmentation.crm"
LIMITS = Limits(fields={"rule": 8000, "name": 200, "description": 2000, "key": 64})
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
MAX_SAMPLE, DEFAULT_SAMPLE = 100, 20
MAX_POINTS, DEFAULT_POINTS = 1000, 100


@enforced(DOMAIN, LIMITS, pb.DESCRIPTOR.services_by_name["SegmentationService"])
class SegmentationServicer(pb_grpc.SegmentationServiceServicer):
    """Bound to its application objects once the database is reachable (see app.py)."""

    def bind(
        self,
        commands: SegmentCommands,
        queries: SegmentQueries,
        insight: Insight,
        audit: PersonalDataAudit,
    ) -> None:
        self.commands, self.queries, self.insight = commands, queries, insight
        self.audit = audit  # ExplainMembership shows personal facts: recorded or redacted

    @staticmethod
    def _as_of(request: object) -> datetime:
        at = calls.timestamp_arg(
            DOMAIN, request, "as_of", earliest=EARLIEST, ahead=timedelta(minutes=1)
        )
        return at or datetime.now(UTC)

    @staticmethod
    def _rule(request: Any) -> str:
        """The request's rule as text: ``rule``, or ``rule_tree`` in canonical text."""
        if not request.HasField("rule_tree"):
            return str(request.rule)
        if request.rule:
            raise calls.invalid(
                DOMAIN, "rule_tree", "RULE_AMBIGUOUS", "give the rule as text or as a tree"
            )
        try:
            return rules.format_rule(rule_proto.from_proto(request.rule_tree, "rule_tree"))
        except rules.RuleError as err:
            raise rule_proto.invalid_argument(err, "rule_tree") from None

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
            self._rule(request),
            request_id=rid,
            meta=calls.event_meta(rid, context),
        )
        return pb.CreateSegmentResponse(segment=segment_pb(s))

    async def UpdateSegment(
        self, request: pb.UpdateSegmentRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateSegmentResponse:
        sid = calls.required_uuid(DOMAIN, request.segment_id, "segment_id", "INVALID_SEGMENT_ID")
        rid = request.request_id
        s = await self.commands.update(
            sid,
            request.name,
            request.description,
            self._rule(request),
            etag=request.etag,
            request_id=rid,
            meta=calls.event_meta(rid, context),
        )
        return pb.UpdateSegmentResponse(segment=segment_pb(s))

    async def ArchiveSegment(
        self, request: pb.ArchiveSegmentRequest, context: grpc.aio.ServicerContext
    ) -> pb.ArchiveSegmentResponse:
        sid = calls.required_uuid(DOMAIN, request.segment_id, "segment_id", "INVALID_SEGMENT_ID")
        rid = request.request_id
        s = await self.commands.archive(sid, request_id=rid, meta=calls.event_meta(rid, context))
        return pb.ArchiveSegmentResponse(segment=segment_pb(s))

    async def GetSegment(
        self, request: pb.GetSegmentRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetSegmentResponse:
        sid = calls.required_uuid(DOMAIN, request.segment_id, "segment_id", "INVALID_SEGMENT_ID")
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
        cid = calls.required_uuid(DOMAIN, request.contact_id, "contact_id", "INVALID_CONTACT_ID")
        sid = calls.required_uuid(DOMAIN, request.segment_id, "segment_id", "INVALID_SEGMENT_ID")
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
        sid = calls.required_uuid(DOMAIN, request.segment_id, "segment_id", "INVALID_SEGMENT_ID")
        at = self._as_of(request)
        size = calls.page_size(DOMAIN, request.page_size)
        await self._segment(sid)
        ids, token = await self.queries.members(sid, at, size, request.page_token)
        return pb.ListSegmentMembersResponse(contact_ids=ids, next_page_token=token)

    async def ListContactSegments(
        self, request: pb.ListContactSegmentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListContactSegmentsResponse:
        cid = calls.required_uuid(DOMAIN, request.contact_id, "contact_id", "INVALID_CONTACT_ID")
        at = self._as_of(request)
        out = pb.ListContactSegmentsResponse()
        for stay in await self.queries.segments_of(cid, at):
            out.segments.add(
                segment_id=stay.segment_id,
                segment_key=stay.key,
                enter_time=calls.timestamp(stay.enter_time),
            )
        return out

    async def ExplainMembership(
        self, request: pb.ExplainMembershipRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExplainMembershipResponse:
        cid = calls.required_uuid(DOMAIN, request.contact_id, "contact_id", "INVALID_CONTACT_ID")
        sid = calls.required_uuid(DOMAIN, request.segment_id, "segment_id", "INVALID_SEGMENT_ID")
        at = self._as_of(request)
        segment = await self._segment(sid)
        explained = await self.insight.explain(segment, cid, at, datetime.now(UTC))
        out = pb.ExplainMembershipResponse()
        if (e := explained.decided_by) is not None:
            out.member = e.type.endswith("ContactEnteredSegment")
            out.decided_by_event_id = str(e.event_id)
            out.cause = e.data["cause"]
            out.cause_event_id = e.data.get("cause_event_id", "")
            out.rule_version = int(e.data["rule_version"])
        # Both explanations may show personal facts: one record (or redaction) for the call.
        shown_ones = [x for x in (explained.now, explained.then) if x is not None]
        personal = any(reads_personal_data(x) for x in shown_ones)
        shown = await self.audit.disclose([cid] if personal else [])
        if explained.now is not None:
            out.now.CopyFrom(explanation_to_proto(explained.now, shown))
        if explained.then is not None:
            out.as_of_explanation.CopyFrom(explanation_to_proto(explained.then, shown))
            out.as_of_rule_version = explained.then_version
        return out

    async def PreviewSegmentRule(
        self, request: pb.PreviewSegmentRuleRequest, context: grpc.aio.ServicerContext
    ) -> pb.PreviewSegmentRuleResponse:
        if not 0 <= request.sample_size <= MAX_SAMPLE:
            raise calls.invalid(
                DOMAIN, "sample_size", "INVALID_SAMPLE_SIZE", f"must be 0..{MAX_SAMPLE}"
            )
        segment = None
        if request.segment_id:
            sid = calls.required_uuid(
                DOMAIN, request.segment_id, "segment_id", "INVALID_SEGMENT_ID"
            )
            segment = await self._segment(sid)
        size = request.sample_size or DEFAULT_SAMPLE
        rule = self._rule(request)
        p = await self.insight.preview(rule, segment, size, datetime.now(UTC))
        return pb.PreviewSegmentRuleResponse(
            count=p.count,
            sample_contact_ids=p.sample,
            would_enter=p.would_enter,
            would_exit=p.would_exit,
            rule=p.rule,
        )

    async def EvaluateRule(
        self, request: pb.EvaluateRuleRequest, context: grpc.aio.ServicerContext
    ) -> pb.EvaluateRuleResponse:
        cid = calls.required_uuid(DOMAIN, request.contact_id, "contact_id", "INVALID_CONTACT_ID")
        rule = self._rule(request)
        text, explained = await self.insight.evaluate(rule, cid, datetime.now(UTC))
        shown = await self.audit.disclose([cid] if reads_personal_data(explained) else [])
        return pb.EvaluateRuleResponse(
            matches=explained.value,
            explanation=explanation_to_proto(explained, shown),
            rule=text,
        )

    async def GetSegmentSizeHistory(
        self, request: pb.GetSegmentSizeHistoryRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetSegmentSizeHistoryResponse:
        sid = calls.required_uuid(DOMAIN, request.segment_id, "segment_id", "INVALID_SEGMENT_ID")
        start = calls.timestamp_arg(DOMAIN, request, "start_time", earliest=EARLIEST)
        end = calls.timestamp_arg(DOMAIN, request, "end_time", earliest=EARLIEST)
        if start is None or end is None or end < start:
            raise calls.invalid(
                DOMAIN, "end_time", "INVALID_INTERVAL", "start_time and end_time, start <= end"
            )
        if not 0 <= request.points <= MAX_POINTS:
            raise calls.invalid(DOMAIN, "points", "INVALID_POINTS", f"must be 0..{MAX_POINTS}")
        await self._segment(sid)
        n = request.points or DEFAULT_POINTS
        step = (end - start) / max(n - 1, 1)
        instants = [start + step * i for i in range(n)] if n > 1 else [start]
        counts = await self.queries.sizes(sid, instants)
        out = pb.GetSegmentSizeHistoryResponse()
        for at, count in zip(instants, counts, strict=True):
            out.points.add(time=calls.timestamp(at), members=count)
        return out
