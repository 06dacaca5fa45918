"""The notifications service's composition root: the API (serve, stateless: templates and the
decisions of SendMessage) and the project role (the read models, and the dispatcher: outbox
and deferred decisions, one leader across replicas)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from crm.notifications.v1 import campaigns_pb2_grpc, flows_pb2_grpc, reports_pb2_grpc
from crm.notifications.v1 import notifications_pb2_grpc as pb_grpc
from services.notifications.adapters.campaign_tables import PostgresRecipients, PostgresZones
from services.notifications.adapters.campaigns_readmodel import (
    CampaignQueries,
    CampaignsProjection,
    ZonesProjection,
)
from services.notifications.adapters.contact_dates_client import GrpcContactDates
from services.notifications.adapters.contacts_client import GrpcContacts
from services.notifications.adapters.delivery_client import GrpcDelivery
from services.notifications.adapters.erasure import ErasureProjection
from services.notifications.adapters.flow_date_timer import DateTimer
from services.notifications.adapters.flow_dates import FlowDates
from services.notifications.adapters.flow_effects_table import PostgresEffects
from services.notifications.adapters.flow_engine import FlowEngine
from services.notifications.adapters.flow_run_queries import FlowRunQueries
from services.notifications.adapters.flow_timers import FlowTimers
from services.notifications.adapters.flows_readmodel import FlowQueries, FlowsProjection
from services.notifications.adapters.http_server import HttpServer, root_app
from services.notifications.adapters.intake_http import make_intake_app
from services.notifications.adapters.intake_tables import PostgresIntakeTables
from services.notifications.adapters.messages_readmodel import MessageQueries, MessagesProjection
from services.notifications.adapters.orders_client import GrpcOrders
from services.notifications.adapters.pipeline_tables import MIGRATIONS, PostgresPipelineTables
from services.notifications.adapters.queries import TemplateQueries
from services.notifications.adapters.readmodel import TemplatesProjection
from services.notifications.adapters.reports_queries import ReportQueries
from services.notifications.adapters.reports_readmodel import ReportsProjection
from services.notifications.adapters.segmentation_client import GrpcSegments
from services.notifications.adapters.tracking_http import add_routes
from services.notifications.adapters.tracking_tables import PostgresLinks
from services.notifications.api import campaigns as campaigns_api
from services.notifications.api import flows as flows_api
from services.notifications.api import reports as reports_api
from services.notifications.api.servicer import SERVICE, NotificationsServicer
from services.notifications.application.batch_sending import BatchSender
from services.notifications.application.campaign_dry_runs import CampaignDryRuns
from services.notifications.application.campaign_engine import CampaignEngine
from services.notifications.application.campaigns import CampaignCommands
from services.notifications.application.dispatcher import Dispatcher
from services.notifications.application.dry_runs import FlowDryRuns
from services.notifications.application.flow_effects import FlowEffects
from services.notifications.application.flows import FlowCommands
from services.notifications.application.intake import Intake, Suppressing
from services.notifications.application.send_queue import SendQueue
from services.notifications.application.sending import MessageCommands
from services.notifications.application.templates import TemplateCommands
from services.notifications.application.tracking import Tracking
from services.notifications.domain import signatures
from services.notifications.settings import (
    NotificationsSettings,
    attribution_rule,
    dispatching,
    pipeline,
    proxies,
    signing,
    soft_bounces,
)
from shared import runtime
from shared.eventstore.postgres import PostgresEventStore
from shared.grpckit.audit import PersonalDataAudit
from shared.grpckit.client import ClientTls, service_token
from shared.leadership import led
from shared.projections.model import Projection
from shared.runtime import Runtime
from shared.settings import Settings

PROJECTIONS = (
    TemplatesProjection(),
    MessagesProjection(),
    ErasureProjection(),
    FlowsProjection(),
    ReportsProjection(),  # under the default rule; the project role runs it under its settings'
    CampaignsProjection(),
    ZonesProjection(),
)
OWN_MIGRATIONS = [("notifications", MIGRATIONS)]
DISPATCHER = "notifications-dispatcher"
FLOW_TIMERS = "notifications-flow-timers"
FLOW_EFFECTS = "notifications-flow-effects"
FLOW_DATE_TIMER = "notifications-flow-date-timer"
CAMPAIGNS = "notifications-campaigns"


def projections(settings: NotificationsSettings) -> tuple[Projection, ...]:
    """The read models the project role runs: the reports' under the settings' attribution rule
    (another rule than the tables were built with: rebuilt side by side)."""
    rule = attribution_rule(settings)
    return tuple(
        ReportsProjection(rule) if p.name == ReportsProjection.name else p for p in PROJECTIONS
    )


async def connect(settings: Settings) -> Runtime:
    return await runtime.connect(settings, migrations=OWN_MIGRATIONS, projections=PROJECTIONS)


def intake_app(
    rt: Runtime, settings: NotificationsSettings, contacts: Suppressing
) -> web.Application:
    """The intake's endpoints (bounces, complaints, SMS status callbacks), mounted at /intake/
    on the serve role's HTTP server."""
    base = settings.intake_base_url or (
        settings.tracking_base_url.rstrip("/") + "/intake" if settings.tracking_base_url else ""
    )
    if settings.intake_secret:
        try:
            signatures.webhook_key(settings.intake_secret)
        except ValueError as err:
            raise SystemExit(f"INTAKE_SECRET: {err}") from None
    rule = soft_bounces(settings)
    return make_intake_app(
        Intake(rt.store, PostgresIntakeTables(rt.store, rt.pool), contacts, soft_bounces=rule),
        webhook_secret=settings.intake_secret,
        sms_auth_token=settings.sms_auth_token if base else "",
        sms_status_url=base.rstrip("/") + "/sms/status",
    )


class Upstreams:
    """The clients of contacts, orders and segmentation a role opens (and closes)."""

    def __init__(self, settings: NotificationsSettings) -> None:
        token = service_token(settings, "the contacts, orders and segmentation APIs")
        tls = ClientTls.of(settings)
        self.contacts = GrpcContacts(settings.contacts_target, token, tls)
        self.orders = GrpcOrders(settings.orders_target, token, tls)
        self.segments = GrpcSegments(settings.segmentation_target, token, tls)

    def commands(self, rt: Runtime, settings: NotificationsSettings) -> MessageCommands:
        tables = PostgresPipelineTables(rt.store, rt.pool)
        templates = TemplateCommands(rt.store)
        return MessageCommands(
            rt.store, tables, self.contacts, self.orders, templates, pipeline(settings)
        )

    async def close(self) -> None:
        await self.contacts.close()
        await self.orders.close()
        await self.segments.close()


class NotificationsApi:
    """NotificationsService, FlowsService, CampaignsService, ReportsService and the HTTP
    endpoints (tracking,
    intake): the serve role's APIs.
    ``any_http_port`` (tests) takes a free port instead of HTTP_PORT; ``http_port`` is the
    bound one."""

    def __init__(self, *, any_http_port: bool = False) -> None:
        self.servicer = NotificationsServicer()
        self.flows = flows_api.FlowsServicer()
        self.reports = reports_api.ReportsServicer()
        self.campaigns = campaigns_api.CampaignsServicer()
        self.services = [
            (
                SERVICE,
                lambda s: pb_grpc.add_NotificationsServiceServicer_to_server(self.servicer, s),
            ),
            (
                flows_api.SERVICE,
                lambda s: flows_pb2_grpc.add_FlowsServiceServicer_to_server(self.flows, s),
            ),
            (
                campaigns_api.SERVICE,
                lambda s: campaigns_pb2_grpc.add_CampaignsServiceServicer_to_server(
                    self.campaigns, s
                ),
            ),
            (
                reports_api.SERVICE,
                lambda s: reports_pb2_grpc.add_ReportsServiceServicer_to_server(self.reports, s),
            ),
        ]
        self.upstreams: Upstreams | None = None
        self.any_http_port = any_http_port
        self.http: HttpServer | None = None
        self.http_port = 0

    async def bind(self, rt: Runtime, settings: NotificationsSettings) -> None:
        self.upstreams = Upstreams(settings)
        commands = self.upstreams.commands(rt, settings)
        self.servicer.bind(commands.templates, TemplateQueries(rt.pool))
        self.servicer.bind_messages(
            commands, MessageQueries(rt.pool), PersonalDataAudit(rt.store), SendQueue(commands)
        )
        flows = FlowCommands(rt.store)
        dry_runs = FlowDryRuns(rt.store, flows, commands.templates, pipeline(settings).rules)
        self.flows.bind(flows, FlowQueries(rt.pool), FlowRunQueries(rt.pool), dry_runs)
        self.reports.bind(ReportQueries(rt.pool), flows, commands.templates)
        campaigns = CampaignCommands(rt.store, commands.templates, self.upstreams.segments)
        trials = CampaignDryRuns(campaigns, self.upstreams.segments, PostgresZones(rt.pool))
        self.campaigns.bind(campaigns, CampaignQueries(rt.pool), trials)
        if settings.http_port or self.any_http_port:
            port = 0 if self.any_http_port else settings.http_port
            self.http = HttpServer(self.http_app(rt, settings), settings.grpc_host, port)
            self.http_port = await self.http.start()

    def http_app(self, rt: Runtime, settings: NotificationsSettings) -> web.Application:
        """The HTTP endpoints: tracking at the root (with TRACKING_BASE_URL), the intake of
        bounces, complaints and SMS status callbacks under /intake/."""
        app = root_app()
        if self.upstreams is not None:
            app.add_subapp("/intake/", intake_app(rt, settings, self.upstreams.contacts))
        signed = signing(settings)
        if signed is not None and self.upstreams is not None:
            unsubscribe, tokens = signed
            contacts = self.upstreams.contacts  # reads the message's contact, records withdrawals
            links = PostgresLinks(rt.pool)
            tracking = Tracking(rt.store, links, contacts, contacts, tokens, unsubscribe)
            add_routes(app, tracking, proxies(settings))
        return app

    async def close(self) -> None:
        if self.http is not None:
            await self.http.stop()
        if self.upstreams is not None:
            await self.upstreams.close()


async def serve(settings: NotificationsSettings, stop: asyncio.Event) -> None:
    await runtime.serve(settings, stop, NotificationsApi(), connect)


def work(rt: Runtime, settings: NotificationsSettings, stop: asyncio.Event) -> runtime.Work:
    """The read models and the flow engine (one leader each across replicas), the dispatcher,
    the flow timers, the flow effects and the campaign engine (one leader each)."""
    upstreams = Upstreams(settings)
    delivery = GrpcDelivery(
        settings.delivery_url,
        service_token(settings, "the delivery workers"),
        ClientTls.of(settings),
    )
    commands = upstreams.commands(rt, settings)
    dispatcher = Dispatcher(commands.tables, delivery, commands, dispatching(settings))
    if not isinstance(rt.store, PostgresEventStore):
        raise SystemExit("the notifications project role needs the PostgreSQL event store")
    engine = FlowEngine(rt.store)
    timers = FlowTimers(rt.store, engine.definitions)
    dates = FlowDates(GrpcContactDates(upstreams.contacts.contacts, upstreams.contacts.auth))
    date_timer = DateTimer(rt.store)
    effects = FlowEffects(
        PostgresEffects(rt.store, engine.definitions),
        commands,
        upstreams.contacts,
        upstreams.segments,
    )
    campaigns = CampaignEngine(
        CampaignCommands(rt.store, commands.templates, upstreams.segments),
        upstreams.segments,
        PostgresRecipients(rt.pool),
        BatchSender(commands),
    )

    async def close() -> None:
        await delivery.close()
        await upstreams.close()

    return runtime.Work(
        (*projections(settings), engine, dates),
        {
            DISPATCHER: lambda: led(rt.dsn, f"worker:{DISPATCHER}", dispatcher.run, stop),
            FLOW_TIMERS: lambda: led(rt.dsn, f"worker:{FLOW_TIMERS}", timers.run, stop),
            FLOW_EFFECTS: lambda: led(rt.dsn, f"worker:{FLOW_EFFECTS}", effects.run, stop),
            FLOW_DATE_TIMER: lambda: led(rt.dsn, f"worker:{FLOW_DATE_TIMER}", date_timer.run, stop),
            CAMPAIGNS: lambda: led(rt.dsn, f"worker:{CAMPAIGNS}", campaigns.run, stop),
        },
        close,
    )


async def project(settings: NotificationsSettings, stop: asyncio.Event) -> None:
    await runtime.project(settings, stop, connect, work, service="notifications")
