"""The FlowsService gRPC adapter: request -> command or query -> response. A definition
crosses as its JSON form (the protobuf JSON mapping with the proto's field names), which the
domain reads and checks and the events keep."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import json_format

from crm.notifications.v1 import flow_definition_pb2 as dpb
from crm.notifications.v1 import flows_pb2 as pb
from crm.notifications.v1 import flows_pb2_grpc as pb_grpc
from services.notifications.adapters.flows_readmodel import FlowQueries
from services.notifications.application.flows import FlowCommands
from services.notifications.domain.flows import flow as domain
from services.notifications.domain.flows.flow import FlowState, FlowVersion
from shared.application.commands import Event
from shared.grpckit import calls
from shared.grpckit.limits import Limits, enforced

SERVICE = "crm.notifications.v1.FlowsService"
DOMAIN = "notifications.crm"
LIMITS = Limits(fields={"key": 64, "name": 200, "steps[]": 200, "url": 2048, "rule": 10_000})
Request = pb.PauseFlowRequest | pb.ResumeFlowRequest | pb.ArchiveFlowRequest | pb.GetFlowRequest


def definition_in(d: dpb.FlowDefinition) -> dict[str, Any]:
    """The JSON form; a Duration out of range or with mixed signs has none: INVALID_ARGUMENT."""
    try:
        return json_format.MessageToDict(d, preserving_proto_field_name=True)
    except json_format.SerializeToJsonError as err:
        raise calls.invalid(DOMAIN, "definition", "DURATION_INVALID", str(err)[:300]) from None


def flow_pb(f: FlowState, shown: FlowVersion | None = None) -> pb.Flow:
    shown = shown or f.latest
    out = pb.Flow(
        flow_id=f.flow_id,
        key=f.key,
        state=pb.FlowState.Value(f.state),
        version=shown.version,
        latest_version=f.latest.version,
        definition=json_format.ParseDict(dict(shown.definition), dpb.FlowDefinition()),
        etag=str(f.version),
    )
    for name, at in (
        ("create_time", f.create_time),
        ("update_time", f.update_time),
        ("version_create_time", shown.create_time),
    ):
        if at is not None:
            getattr(out, name).CopyFrom(calls.timestamp(at))
    return out


@enforced(DOMAIN, LIMITS, pb.DESCRIPTOR.services_by_name["FlowsService"])
class FlowsServicer(pb_grpc.FlowsServiceServicer):
    """Bound to its application objects once the database is reachable (see app.py)."""

    def bind(self, commands: FlowCommands, queries: FlowQueries) -> None:
        self.commands, self.queries = commands, queries

    async def _flow_id(self, request: Request) -> str:
        """By flow_id or by key (one of the two)."""
        if request.flow_id and request.key:
            raise calls.invalid(DOMAIN, "key", "FLOW_AMBIGUOUS", "give flow_id or key, not both")
        if request.key:
            return await self.commands.id_of(request.key)
        return calls.required_uuid(DOMAIN, request.flow_id, "flow_id", "INVALID_FLOW_ID")

    async def CreateFlow(
        self, request: pb.CreateFlowRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateFlowResponse:
        rid = request.request_id
        f = await self.commands.create(
            definition_in(request.definition), request_id=rid, meta=calls.event_meta(rid, context)
        )
        return pb.CreateFlowResponse(flow=flow_pb(f))

    async def UpdateFlow(
        self, request: pb.UpdateFlowRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateFlowResponse:
        rid = request.request_id
        f = await self.commands.update(
            definition_in(request.definition),
            etag=request.etag,
            request_id=rid,
            meta=calls.event_meta(rid, context),
        )
        return pb.UpdateFlowResponse(flow=flow_pb(f))

    async def _change(
        self,
        request: Request,
        context: grpc.aio.ServicerContext,
        decide: Callable[[FlowState], list[Event]],
    ) -> pb.Flow:
        flow_id = await self._flow_id(request)
        rid = getattr(request, "request_id", "")
        f = await self.commands.change(
            flow_id, decide, request_id=rid, meta=calls.event_meta(rid, context)
        )
        return flow_pb(f)

    async def PauseFlow(
        self, request: pb.PauseFlowRequest, context: grpc.aio.ServicerContext
    ) -> pb.PauseFlowResponse:
        return pb.PauseFlowResponse(flow=await self._change(request, context, domain.decide_pause))

    async def ResumeFlow(
        self, request: pb.ResumeFlowRequest, context: grpc.aio.ServicerContext
    ) -> pb.ResumeFlowResponse:
        flow = await self._change(request, context, domain.decide_resume)
        return pb.ResumeFlowResponse(flow=flow)

    async def ArchiveFlow(
        self, request: pb.ArchiveFlowRequest, context: grpc.aio.ServicerContext
    ) -> pb.ArchiveFlowResponse:
        flow = await self._change(request, context, domain.decide_archive)
        return pb.ArchiveFlowResponse(flow=flow)

    async def GetFlow(
        self, request: pb.GetFlowRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetFlowResponse:
        if request.version < 0:
            raise calls.invalid(DOMAIN, "version", "INVALID_VERSION", "0 (the latest) or 1, 2...")
        f = await self.commands.get(await self._flow_id(request))
        return pb.GetFlowResponse(flow=flow_pb(f, f.at(request.version)))

    async def ListFlows(
        self, request: pb.ListFlowsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListFlowsResponse:
        size = calls.page_size(DOMAIN, request.page_size)
        page, token = await self.queries.page(size, request.page_token, request.include_archived)
        return pb.ListFlowsResponse(flows=[flow_pb(f) for f in page], next_page_token=token)
