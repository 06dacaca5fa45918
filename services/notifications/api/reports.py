"""The ReportsService gRPC adapter: a flow's, a campaign's or a template's report from the read
model notifications_reports (adapters/reports_queries.py), with the rates of
domain/attribution.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import grpc

from crm.notifications.v1 import reports_pb2 as pb
from crm.notifications.v1 import reports_pb2_grpc as pb_grpc
from services.notifications.adapters import reports_queries as q
from services.notifications.application.flows import FlowCommands
from services.notifications.application.templates import TemplateCommands
from services.notifications.domain.attribution import rate
from shared.domain.errors import NotFound
from shared.grpckit import calls
from shared.grpckit.limits import Limits, enforced

SERVICE = "crm.notifications.v1.ReportsService"
DOMAIN = "notifications.crm"
DAY = timedelta(days=1)


def _money(amounts: dict[str, int]) -> list[pb.Money]:
    return [pb.Money(currency=c, amount_minor=a) for c, a in sorted(amounts.items())]


def row_pb(r: q.Row, key: str = "") -> pb.ReportRow:
    out = pb.ReportRow(
        recipients=r.recipients,
        sent=r.sent,
        delivered=r.delivered,
        bounced=r.bounced,
        unique_opens=r.opens,
        unique_clicks=r.clicks,
        unsubscribes=r.unsubscribes,
        conversions=r.conversions,
        converted=r.converted,
        revenue=_money(r.revenue),
        open_rate=rate(r.opens, r.delivered),
        click_rate=rate(r.clicks, r.delivered),
        conversion_rate=rate(r.converted, r.delivered),
    )
    if key:
        setattr(out, key, r.group)
    return out


def report_pb(report: q.Report, key: str = "") -> pb.Report:
    return pb.Report(
        rows=[row_pb(r, key) for r in report.rows],
        total=row_pb(report.total),
        days=[
            pb.ReportDay(
                day_start_time=calls.timestamp(d.start),
                sent=d.sent,
                unique_opens=d.opens,
                unique_clicks=d.clicks,
                conversions=d.conversions,
                revenue=_money(d.revenue),
            )
            for d in report.days
        ],
        attribution=pb.Attribution(window_days=report.window / DAY, touch=report.touch),
    )


def _day_of(at: datetime) -> datetime:
    return datetime(at.year, at.month, at.day, tzinfo=UTC)


def days_between(request: Any) -> tuple[datetime | None, datetime | None]:
    """from_time and to_time widened to the UTC days they fall in: [its day's start, the start
    of the day after to_time's); INVALID_RANGE when from_time is after to_time."""
    since = calls.timestamp_arg(DOMAIN, request, "from_time")
    until = calls.timestamp_arg(DOMAIN, request, "to_time")
    if since is not None and until is not None and since > until:
        raise calls.invalid(DOMAIN, "to_time", "INVALID_RANGE", "to_time is before from_time")
    end = None
    if until is not None:
        day = _day_of(until)
        end = day + DAY if day < datetime.max.replace(tzinfo=UTC) - DAY else None
    return (_day_of(since) if since is not None else None), end


@enforced(DOMAIN, Limits(), pb.DESCRIPTOR.services_by_name["ReportsService"])
class ReportsServicer(pb_grpc.ReportsServiceServicer):
    """Bound to its application objects once the database is reachable (see app.py)."""

    def bind(
        self, queries: q.ReportQueries, flows: FlowCommands, templates: TemplateCommands
    ) -> None:
        self.queries, self.flows, self.templates = queries, flows, templates

    async def GetFlowReport(
        self, request: pb.GetFlowReportRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetFlowReportResponse:
        """By flow_id or key. A flow with no message yet has an empty report; an id neither a
        flow nor any message names is FLOW_NOT_FOUND."""
        if request.flow_id and request.key:
            raise calls.invalid(DOMAIN, "key", "FLOW_AMBIGUOUS", "give flow_id or key, not both")
        if request.key:
            flow_id = await self.flows.id_of(request.key)
        else:
            flow_id = calls.required_uuid(DOMAIN, request.flow_id, "flow_id", "INVALID_FLOW_ID")
        since, until = days_between(request)
        report = await self.queries.report(q.FLOW, flow_id, since, until)
        if not report.total.messages:
            await self.flows.get(flow_id)  # FLOW_NOT_FOUND when no flow has this id
        return pb.GetFlowReportResponse(report=report_pb(report, "step_id"))

    async def GetCampaignReport(
        self, request: pb.GetCampaignReportRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetCampaignReportResponse:
        """CAMPAIGN_NOT_FOUND until a message of the campaign is known."""
        campaign_id = calls.required_uuid(
            DOMAIN, request.campaign_id, "campaign_id", "INVALID_CAMPAIGN_ID"
        )
        since, until = days_between(request)
        report = await self.queries.report(q.CAMPAIGN, campaign_id, since, until)
        if not report.total.messages:
            raise NotFound(
                "CAMPAIGN_NOT_FOUND",
                f"no message of campaign {campaign_id} is known",
                campaign_id=campaign_id,
            )
        return pb.GetCampaignReportResponse(report=report_pb(report, "variant"))

    async def GetTemplateReport(
        self, request: pb.GetTemplateReportRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetTemplateReportResponse:
        """The template's messages sent through SendMessage; TEMPLATE_NOT_FOUND when there is
        no such template."""
        template_id = calls.required_uuid(
            DOMAIN, request.template_id, "template_id", "INVALID_TEMPLATE_ID"
        )
        since, until = days_between(request)
        report = await self.queries.report(q.TEMPLATE, template_id, since, until)
        if not report.total.messages:
            await self.templates.get(template_id)
        return pb.GetTemplateReportResponse(report=report_pb(report))
