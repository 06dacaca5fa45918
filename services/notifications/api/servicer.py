"""The NotificationsService gRPC adapter: request -> command or query -> response."""

from __future__ import annotations

import grpc

from crm.notifications.v1 import notifications_pb2 as pb
from crm.notifications.v1 import notifications_pb2_grpc as pb_grpc
from services.notifications.adapters.queries import TemplateQueries
from services.notifications.api import convert
from services.notifications.api.messages import MessageRpcs
from services.notifications.application.templates import TemplateCommands
from services.notifications.domain import locale as loc
from services.notifications.domain.template import Template
from shared.grpckit import calls
from shared.grpckit.limits import Limits, enforced

SERVICE = "crm.notifications.v1.NotificationsService"
DOMAIN = "notifications.crm"
LIMITS = Limits(
    fields={
        "key": 64,
        "name": 200,
        "locale": loc.MAX_LOCALE,
        "subject": 1000,
        "text": 100_000,
        "html": 200_000,
        "body": 100_000,
        "variants[]": 50,
        "address": 2048,
        "webhook_url": 2048,
    }
)


def _version_arg(value: int) -> int:
    if value < 0:
        raise calls.invalid(DOMAIN, "version", "INVALID_VERSION", "0 (the latest) or 1, 2, ...")
    return value


@enforced(DOMAIN, LIMITS, pb.DESCRIPTOR.services_by_name["NotificationsService"])
class NotificationsServicer(MessageRpcs, pb_grpc.NotificationsServiceServicer):
    """Bound to its application objects once the database is reachable (see app.py); the
    message RPCs are in api/messages.py."""

    def bind(self, commands: TemplateCommands, queries: TemplateQueries) -> None:
        self.commands, self.queries = commands, queries

    async def _template(
        self, request: pb.GetTemplateRequest | pb.RenderTemplateRequest
    ) -> Template:
        """By template_id or by key (one of the two)."""
        if request.template_id and request.key:
            raise calls.invalid(
                DOMAIN, "key", "TEMPLATE_AMBIGUOUS", "give template_id or key, not both"
            )
        if request.key:
            return await self.commands.get(key=request.key)
        tid = calls.required_uuid(DOMAIN, request.template_id, "template_id", "INVALID_TEMPLATE_ID")
        return await self.commands.get(tid)

    async def CreateTemplate(
        self, request: pb.CreateTemplateRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateTemplateResponse:
        rid = request.request_id
        t = await self.commands.create(
            request.key,
            convert.channel_name(request.channel),
            request.name,
            convert.variants_in(request.variants),
            request_id=rid,
            meta=calls.event_meta(rid, context),
        )
        return pb.CreateTemplateResponse(template=convert.template_pb(t))

    async def UpdateTemplate(
        self, request: pb.UpdateTemplateRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateTemplateResponse:
        tid = calls.required_uuid(DOMAIN, request.template_id, "template_id", "INVALID_TEMPLATE_ID")
        rid = request.request_id
        t = await self.commands.update(
            tid,
            request.name,
            convert.variants_in(request.variants),
            etag=request.etag,
            request_id=rid,
            meta=calls.event_meta(rid, context),
        )
        return pb.UpdateTemplateResponse(template=convert.template_pb(t))

    async def ArchiveTemplate(
        self, request: pb.ArchiveTemplateRequest, context: grpc.aio.ServicerContext
    ) -> pb.ArchiveTemplateResponse:
        tid = calls.required_uuid(DOMAIN, request.template_id, "template_id", "INVALID_TEMPLATE_ID")
        rid = request.request_id
        t = await self.commands.archive(tid, request_id=rid, meta=calls.event_meta(rid, context))
        return pb.ArchiveTemplateResponse(template=convert.template_pb(t))

    async def GetTemplate(
        self, request: pb.GetTemplateRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetTemplateResponse:
        version = _version_arg(request.version)
        t = await self._template(request)
        return pb.GetTemplateResponse(template=convert.template_pb(t, t.at(version)))

    async def ListTemplates(
        self, request: pb.ListTemplatesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTemplatesResponse:
        size = calls.page_size(DOMAIN, request.page_size)
        channel = convert.channel_name(request.channel)
        page, token = await self.queries.page(
            size, request.page_token, request.include_archived, channel
        )
        return pb.ListTemplatesResponse(
            templates=[convert.template_pb(t) for t in page], next_page_token=token
        )

    async def ListTemplateVersions(
        self, request: pb.ListTemplateVersionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTemplateVersionsResponse:
        tid = calls.required_uuid(DOMAIN, request.template_id, "template_id", "INVALID_TEMPLATE_ID")
        size = calls.page_size(DOMAIN, request.page_size)
        await self.commands.get(tid)  # TEMPLATE_NOT_FOUND rather than an empty list
        page, token = await self.queries.versions(tid, size, request.page_token)
        return pb.ListTemplateVersionsResponse(
            versions=[convert.version_pb(v) for v in page], next_page_token=token
        )

    async def RenderTemplate(
        self, request: pb.RenderTemplateRequest, context: grpc.aio.ServicerContext
    ) -> pb.RenderTemplateResponse:
        version = _version_arg(request.version)
        try:
            locale = loc.canonical(request.locale)
        except loc.LocaleError as err:
            raise calls.invalid(DOMAIN, "locale", "INVALID_LOCALE", str(err)) from None
        t = await self._template(request)
        shown, rendered = await self.commands.render(
            t, version, locale, convert.variables(request.variables)
        )
        return convert.rendered_pb(t.template_id, shown, rendered)
