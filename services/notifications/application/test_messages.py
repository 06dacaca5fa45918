"""SendTestMessage: a template rendered with sample variables to an address, marked as a test:
no contact, no policy, never counted in caps; the decision and the outbox row in one
transaction, like any message; RENDER_ERROR when it cannot be rendered (nothing written)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from services.notifications.application.facts import Pipeline, enqueue, outbox_row
from services.notifications.application.message_stream import MESSAGE, NS
from services.notifications.application.ports import PipelineTables
from services.notifications.application.templates import TemplateCommands
from services.notifications.domain import decision as d
from services.notifications.domain import policy, trail
from services.notifications.domain.template import Template
from shared.application import commands as command_runner
from shared.application.commands import CommandRunner, apply, new_id
from shared.eventstore import StreamAppend, StreamState


class TestMessageSender:
    __test__ = False  # not a test class

    def __init__(
        self,
        runner: CommandRunner,
        tables: PipelineTables,
        templates: TemplateCommands,
        pipeline: Pipeline,
        clock: Callable[[], datetime],
    ) -> None:
        self.runner, self.tables, self.templates = runner, tables, templates
        self.pipeline, self.clock = pipeline, clock

    async def send(
        self,
        template: Template,
        version: int,
        address: str,
        variables: Mapping[str, Any],
        locale: str,
        *,
        request_id: str = "",
        meta: Mapping[str, Any] = {},
    ) -> trail.Trail:
        """The test message's first decision (the first answer on a retry)."""
        rid = request_id or uuid.uuid4().hex
        message_id = new_id(NS, "test-message", request_id)
        fingerprint = meta.get(command_runner.FINGERPRINT, "")

        async def earlier() -> trail.Trail | None:
            done = await self.runner.earlier(MESSAGE, message_id, rid, fingerprint)
            return done.state if done is not None else None

        if (done := await earlier()) is not None:
            return done
        shown, rendered = await self.templates.render(template, version, locale, variables)
        subject = d.Subject(
            message_id=message_id,
            contact_id="",
            requested_contact_id="",
            channel=template.channel,
            kind=policy.TRANSACTIONAL,
            template_id=template.template_id,
            template_version=shown,
            locale=rendered.locale,
            origin=d.Origin(d.TEST),
            request_id=request_id,
            test=True,
        )

        async def attempt(_n: int) -> trail.Trail:
            now = self.clock()
            facts = policy.Facts(channel=template.channel, kind=subject.kind, now=now)
            event = d.decided(subject, facts, policy.Decision(policy.SEND), consent=None, number=1)
            stream = d.stream_of(message_id)
            async with self.tables.deciding(()) as tx:
                own = MESSAGE.events(stream, [event], rid, meta)
                await tx.append([StreamAppend(stream, own, StreamState.NO_STREAM)])
                row = outbox_row(self.pipeline, now, subject, address, rendered)
                await enqueue(tx, self.pipeline, [(row, None)])
            return apply(MESSAGE, None, [event], now, 0)

        return await self.runner.retrying(attempt, earlier)
