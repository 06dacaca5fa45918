"""The FlowsService gRPC adapter: request -> command or query -> response. A definition
crosses as its JSON form (the protobuf JSON mapping with the proto's field names), which the
domain reads and checks and the events keep."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import json_format

from crm.notifications.v1 import events_pb2 as epb
from crm.notifications.v1 import flow_definition_pb2 as dpb
from crm.notifications.v1 import flows_pb2 as pb
from crm.notifications.v1 import flows_pb2_grpc as pb_grpc
from services.notifications.adapters.flow_run_queries import FlowRunQueries
from services.notifications.adapters.flow_run_tables import RunRow
from services.notifications.adapters.flows_readmodel import FlowQueries
from services.notifications.application.dry_runs import FlowDryRuns
from services.notifications.application.flows import FlowCommands
from services.notifications.domain.flows import flow as domain
from services.notifications.domain.flows import run as runs
from services.notifications.domain.flows.dry_run import Would
from services.notifications.domain.flows.flow import FlowState, FlowVersion
from shared.application.commands import Event
from shared.grpckit import calls
from shared.grpckit.limits import Limits, enforced

SERVICE = "crm.notifications.v1.FlowsService"
DOMAIN = "notifications.crm"
LIMITS = Limits(fields={"key": 64, "name": 200, "steps[]": 200, "url": 2048, "rule": 10_000})
Request = (
    pb.PauseFlowRequest
    | pb.ResumeFlowRequest
    | pb.ArchiveFlowRequest
    | pb.GetFlowRequest
    | pb.DryRunFlowRequest
)


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

    def bind(
        self,
        commands: FlowCommands,
        queries: FlowQueries,
        runs: FlowRunQueries,
        dry_runs: FlowDryRuns,
    ) -> None:
        self.commands, self.queries, self.runs, self.dry_runs = commands, queries, runs, dry_runs

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

    async def ListFlowRuns(
        self, request: pb.ListFlowRunsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListFlowRunsResponse:
        if not request.contact_id and not request.flow_id:
            raise calls.invalid(
                DOMAIN, "contact_id", "CONTACT_OR_FLOW_REQUIRED", "name a contact, a flow or both"
            )
        contact = request.contact_id and calls.uuid_arg(
            DOMAIN, request.contact_id, "contact_id", "INVALID_CONTACT_ID"
        )
        flow = request.flow_id and calls.uuid_arg(
            DOMAIN, request.flow_id, "flow_id", "INVALID_FLOW_ID"
        )
        size = calls.page_size(DOMAIN, request.page_size)
        page, token = await self.runs.page(
            contact, flow, request.open_only, size, request.page_token
        )
        return pb.ListFlowRunsResponse(runs=[run_pb(r) for r in page], next_page_token=token)

    async def DryRunFlow(
        self, request: pb.DryRunFlowRequest, context: grpc.aio.ServicerContext
    ) -> pb.DryRunFlowResponse:
        start = calls.timestamp_arg(DOMAIN, request, "start_time")
        end = calls.timestamp_arg(DOMAIN, request, "end_time")
        if start is None or end is None:
            field = "start_time" if start is None else "end_time"
            raise calls.invalid(DOMAIN, field, "WINDOW_REQUIRED", "give start_time and end_time")
        if not 0 <= request.max_steps <= MAX_STEPS:
            raise calls.invalid(DOMAIN, "max_steps", "INVALID_MAX_STEPS", f"0..{MAX_STEPS}")
        draft = definition_in(request.definition) if request.HasField("definition") else None
        flow_id = "" if draft is not None else await self._flow_id(request)
        if request.version < 0:
            raise calls.invalid(DOMAIN, "version", "INVALID_VERSION", "0 (the latest) or 1, 2...")
        sim = await self.dry_runs.run(flow_id, request.version, draft, start, end)
        shown = request.max_steps or DEFAULT_STEPS
        counts: dict[str, int] = {}
        for w in sim.would:
            for name in (w.outcome, w.reason):
                if name:
                    counts[name] = counts.get(name, 0) + 1
        return pb.DryRunFlowResponse(
            events_read=sim.events_read,
            runs_started=sim.started,
            runs_ended=sim.ended,
            steps=[step_pb(w) for w in sim.would[:shown]],
            truncated=len(sim.would) > shown,
            counts=counts,
        )


MAX_STEPS, DEFAULT_STEPS = 10_000, 1000


def step_pb(w: Would) -> pb.DryRunStep:
    out = pb.DryRunStep(
        decide_time=calls.timestamp(w.at),
        contact_id=w.contact_id,
        run_id=w.run_id,
        step=w.step,
        effect=w.effect,
        template_key=w.template_key,
        channel=epb.Channel.Value(w.channel) if w.channel else epb.CHANNEL_UNSPECIFIED,
        kind=epb.MessageKind.Value(w.kind) if w.kind else epb.MESSAGE_KIND_UNSPECIFIED,
        outcome=epb.Outcome.Value(w.outcome) if w.outcome else epb.OUTCOME_UNSPECIFIED,
        reason=w.reason,
        rule=w.rule,
    )
    if w.defer_until is not None:
        out.defer_until_time.CopyFrom(calls.timestamp(w.defer_until))
    return out


STATES = {
    runs.RUNNING: pb.FLOW_RUN_STATE_RUNNING,
    runs.WAITING_STATE: pb.FLOW_RUN_STATE_WAITING,
    runs.ASKING: pb.FLOW_RUN_STATE_ASKING,
    runs.DONE: pb.FLOW_RUN_STATE_ENDED,
}


def run_pb(row: RunRow) -> pb.FlowRun:
    r = row.run
    out = pb.FlowRun(
        run_id=r.run_id,
        flow_id=r.flow_id,
        flow_version=r.flow_version,
        contact_id=r.contact_id,
        state=STATES[r.status],
        step=r.step,
        waiting_for=r.waiting_for,
        end_reason=r.ended,
        start_time=calls.timestamp(row.start_time),
        trigger_key=row.trigger_key,
        trigger_event_type=str(r.trigger.get("event_type", "")),
        trigger_event_id=str(r.trigger.get("event_id", "")),
        visits=r.visits,
    )
    if r.wake_at is not None:
        out.wake_time.CopyFrom(calls.timestamp(r.wake_at))
    return out
