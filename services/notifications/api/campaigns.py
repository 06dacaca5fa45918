"""The CampaignsService gRPC adapter: request -> command or query -> response. A definition and
a schedule cross as their JSON forms (the protobuf JSON mapping with the proto's field names),
which the domain reads and checks and the events keep."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import json_format

from crm.notifications.v1 import campaigns_pb2 as pb
from crm.notifications.v1 import campaigns_pb2_grpc as pb_grpc
from crm.notifications.v1 import events_pb2 as epb
from services.notifications.adapters.campaigns_readmodel import (
    OUTCOMES,
    CampaignQueries,
    recipients_page,
)
from services.notifications.application.campaign_dry_runs import CampaignDryRuns
from services.notifications.application.campaigns import CampaignCommands
from services.notifications.domain.campaigns import campaign as domain
from services.notifications.domain.campaigns.campaign import Campaign
from shared.grpckit import calls
from shared.grpckit.limits import Limits, enforced

SERVICE = "crm.notifications.v1.CampaignsService"
DOMAIN = "notifications.crm"
LIMITS = Limits(
    fields={
        "name": 200,
        "include_segments": 64,
        "exclude_segments": 64,
        "include_segments[]": 20,
        "exclude_segments[]": 20,
        "variants[]": 10,
        "template_key": 64,
    }
)
STATES = {
    domain.DRAFT: pb.CAMPAIGN_STATE_DRAFT,
    domain.WAITING: pb.CAMPAIGN_STATE_SCHEDULED,
    domain.SENDING: pb.CAMPAIGN_STATE_SENDING,
    domain.HALTED: pb.CAMPAIGN_STATE_PAUSED,
    domain.DONE: pb.CAMPAIGN_STATE_COMPLETED,
    domain.STOPPED: pb.CAMPAIGN_STATE_CANCELLED,
}
LISTED, MAX_LISTED = 1000, 10_000  # recipients a dry run lists by default, at most
Request = pb.PauseCampaignRequest | pb.ResumeCampaignRequest | pb.CancelCampaignRequest


def json_of(message: Any) -> dict[str, Any]:
    """The JSON form; a Timestamp out of range has none: INVALID_ARGUMENT."""
    try:
        out: dict[str, Any] = json_format.MessageToDict(message, preserving_proto_field_name=True)
    except json_format.SerializeToJsonError as err:
        raise calls.invalid(DOMAIN, "schedule", "INVALID_TIME", str(err)[:300]) from None
    return out


def schedule_pb(data: dict[str, Any]) -> epb.CampaignSchedule:
    if not data:
        return epb.CampaignSchedule()
    if data.get("local_day"):
        local = epb.LocalSend(
            day=data["local_day"],
            time_of_day=data["local_time"],
            fallback_time_zone=data.get("fallback_time_zone", ""),
        )
        return epb.CampaignSchedule(local=local)
    return json_format.ParseDict({"send_time": data["send_time"]}, epb.CampaignSchedule())


def campaign_pb(s: Campaign) -> pb.Campaign:
    out = pb.Campaign(
        campaign_id=s.campaign_id,
        state=STATES[s.state],
        definition=json_format.ParseDict(dict(s.definition), epb.CampaignDefinition()),
        schedule=schedule_pb(dict(s.schedule)),
        audience_size=s.audience_size,
        audience_digest=s.audience_digest,
        tally=json_format.ParseDict(dict(s.tally), epb.CampaignTally()),
        etag=str(s.version),
    )
    for name, at in (
        ("start_time", s.start_time),
        ("create_time", s.create_time),
        ("update_time", s.update_time),
    ):
        if at is not None:
            getattr(out, name).CopyFrom(calls.timestamp(at))
    return out


def _id(request: Any) -> str:
    return calls.required_uuid(DOMAIN, request.campaign_id, "campaign_id", "INVALID_CAMPAIGN_ID")


@enforced(DOMAIN, LIMITS, pb.DESCRIPTOR.services_by_name["CampaignsService"])
class CampaignsServicer(pb_grpc.CampaignsServiceServicer):
    """Bound to its application objects once the database is reachable (see app.py)."""

    def bind(
        self, commands: CampaignCommands, queries: CampaignQueries, dry_runs: CampaignDryRuns
    ) -> None:
        self.commands, self.queries, self.dry_runs = commands, queries, dry_runs

    async def CreateCampaign(
        self, request: pb.CreateCampaignRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateCampaignResponse:
        rid = request.request_id
        s = await self.commands.create(
            json_of(request.definition), request_id=rid, meta=calls.event_meta(rid, context)
        )
        return pb.CreateCampaignResponse(campaign=campaign_pb(s))

    async def ScheduleCampaign(
        self, request: pb.ScheduleCampaignRequest, context: grpc.aio.ServicerContext
    ) -> pb.ScheduleCampaignResponse:
        rid = request.request_id
        s = await self.commands.schedule(
            _id(request),
            json_of(request.schedule),
            etag=request.etag,
            request_id=rid,
            meta=calls.event_meta(rid, context),
        )
        return pb.ScheduleCampaignResponse(campaign=campaign_pb(s))

    async def _change(
        self, request: Request, context: grpc.aio.ServicerContext, change: str
    ) -> pb.Campaign:
        rid = request.request_id
        s = await self.commands.change(
            _id(request), change, request_id=rid, meta=calls.event_meta(rid, context)
        )
        return campaign_pb(s)

    async def PauseCampaign(
        self, request: pb.PauseCampaignRequest, context: grpc.aio.ServicerContext
    ) -> pb.PauseCampaignResponse:
        return pb.PauseCampaignResponse(
            campaign=await self._change(request, context, domain.PAUSED)
        )

    async def ResumeCampaign(
        self, request: pb.ResumeCampaignRequest, context: grpc.aio.ServicerContext
    ) -> pb.ResumeCampaignResponse:
        s = await self._change(request, context, domain.RESUMED)
        return pb.ResumeCampaignResponse(campaign=s)

    async def CancelCampaign(
        self, request: pb.CancelCampaignRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelCampaignResponse:
        s = await self._change(request, context, domain.CANCELLED)
        return pb.CancelCampaignResponse(campaign=s)

    async def GetCampaign(
        self, request: pb.GetCampaignRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetCampaignResponse:
        return pb.GetCampaignResponse(campaign=campaign_pb(await self.commands.get(_id(request))))

    async def DryRunCampaign(
        self, request: pb.DryRunCampaignRequest, context: grpc.aio.ServicerContext
    ) -> pb.DryRunCampaignResponse:
        drafted = request.HasField("definition")
        if drafted == bool(request.campaign_id):
            raise calls.invalid(
                DOMAIN, "campaign_id", "CAMPAIGN_REQUIRED", "give campaign_id or definition"
            )
        if not 0 <= request.max_recipients <= MAX_LISTED:
            raise calls.invalid(
                DOMAIN, "max_recipients", "INVALID_MAX_RECIPIENTS", f"0..{MAX_LISTED}"
            )
        draft = json_of(request.definition) if drafted else None
        schedule = json_of(request.schedule) if request.HasField("schedule") else None
        run = await self.dry_runs.run("" if drafted else _id(request), draft, schedule)
        shown = run.recipients[: request.max_recipients or LISTED]
        out = pb.DryRunCampaignResponse(
            audience_size=run.audience.size,
            audience_digest=run.audience.digest,
            as_of_time=calls.timestamp(run.as_of),
            variant_counts=run.counts(),
            recipients=[
                pb.DryRunRecipient(
                    contact_id=r.contact_id, variant=r.variant, send_time=calls.timestamp(r.due_at)
                )
                for r in shown
            ],
            truncated=len(shown) < len(run.recipients),
        )
        if run.recipients:
            out.first_send_time.CopyFrom(calls.timestamp(min(r.due_at for r in run.recipients)))
            out.last_send_time.CopyFrom(calls.timestamp(max(r.due_at for r in run.recipients)))
        return out

    async def ListCampaignRecipients(
        self, request: pb.ListCampaignRecipientsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCampaignRecipientsResponse:
        cid = calls.required_uuid(DOMAIN, request.campaign_id, "campaign_id", "INVALID_CAMPAIGN_ID")
        if request.outcome and request.outcome not in OUTCOMES:
            raise calls.invalid(DOMAIN, "outcome", "INVALID_OUTCOME", ", ".join(OUTCOMES))
        size = calls.page_size(DOMAIN, request.page_size)
        campaign = await self.commands.get(cid)  # NOT_FOUND for no such campaign
        page, token = await recipients_page(
            self.queries.pool, campaign.campaign_id, request.outcome, size, request.page_token
        )
        return pb.ListCampaignRecipientsResponse(
            recipients=[
                pb.CampaignRecipient(
                    contact_id=r.contact_id,
                    variant=r.variant,
                    send_time=calls.timestamp(r.send_time),
                    done_time=calls.timestamp(r.done_time) if r.done_time else None,
                    outcome=r.outcome,
                )
                for r in page
            ],
            next_page_token=token,
        )

    async def ListCampaigns(
        self, request: pb.ListCampaignsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCampaignsResponse:
        size = calls.page_size(DOMAIN, request.page_size)
        page, token = await self.queries.page(size, request.page_token)
        return pb.ListCampaignsResponse(
            campaigns=[campaign_pb(s) for s in page], next_page_token=token
        )
