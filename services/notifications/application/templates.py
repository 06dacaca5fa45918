"""Template commands on the shared command runner, and the reads that must see the latest
write (a template by id or key, a preview). A key is claimed by the first event of its own
stream, in the same atomic write as the template's creation."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from services.notifications.domain import message
from services.notifications.domain import template as domain
from services.notifications.domain.render import RenderFailure
from services.notifications.domain.template import Template
from services.notifications.domain.variant import Variant
from shared.application.commands import Aggregate, CommandRunner, Event, new_id
from shared.application.keys import UniqueKey
from shared.domain.errors import Precondition
from shared.eventstore import EventStore, StreamAppend

NS = uuid.UUID("8d1c6f0e-2b57-4c3a-9e64-71a5b0d3c2f9")  # never change: retries would repeat
KEY_CLAIMED = "crm.notifications.v1.TemplateKeyClaimed"  # the key stream's only event

TEMPLATE: Aggregate[Template] = Aggregate(
    namespace=NS,
    stream_of=domain.stream_of,
    fold=lambda _id, rows: domain.fold(rows),
    evolve=domain.evolve,
    missing="TEMPLATE_NOT_FOUND",
    id_field="template_id",
)
KEY = UniqueKey(NS, domain.key_stream, KEY_CLAIMED, "template_id", "template")


class TemplateCommands:
    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.runner = CommandRunner(store)

    async def create(
        self,
        key: str,
        channel: str,
        name: str,
        variants: Sequence[Variant],
        *,
        request_id: str = "",
        meta: Mapping[str, Any] = {},
    ) -> Template:
        template_id = new_id(NS, "template", request_id)
        decided = domain.decide_create(template_id, key, channel, name, variants)

        async def plan(_attempt: int) -> tuple[list[Event], list[StreamAppend]]:
            return decided, [await KEY.claim(self.store, key, template_id, request_id, meta)]

        return await self.runner.create(
            TEMPLATE, template_id, plan, request_id=request_id, meta=meta
        )

    async def update(
        self,
        template_id: str,
        name: str,
        variants: Sequence[Variant],
        *,
        etag: str = "",
        request_id: str = "",
        meta: Mapping[str, Any] = {},
    ) -> Template:
        def decide(state: Template) -> list[Event]:
            return domain.decide_update(state, name, variants)

        return await self.runner.execute(
            TEMPLATE, template_id, decide, etag=etag, request_id=request_id, meta=meta
        )

    async def archive(
        self, template_id: str, *, request_id: str = "", meta: Mapping[str, Any] = {}
    ) -> Template:
        return await self.runner.execute(
            TEMPLATE, template_id, domain.decide_archive, request_id=request_id, meta=meta
        )

    # --- reads from the log: always the latest write -------------------------------------------

    async def get(self, template_id: str = "", key: str = "") -> Template:
        """A template by id, or by key (the key stream names its template)."""
        if key:
            template_id = await KEY.holder(self.store, key)
        return await self.runner.get(TEMPLATE, template_id)

    async def render(
        self,
        template: Template,
        version: int,
        locale: str,
        variables: Mapping[str, Any],
    ) -> tuple[int, message.Rendered]:
        """A preview of ``version`` (0: the latest) for ``locale``: (the version, the result).
        A render failure is FAILED_PRECONDITION RENDER_ERROR naming field, line and variable."""
        if template.archived:
            raise Precondition("TEMPLATE_ARCHIVED", f"template {template.key} is archived")
        chosen = template.at(version)
        try:
            return chosen.version, message.render(template.channel, chosen, locale, variables)
        except RenderFailure as f:
            meta = {"field": f.part, "template_id": template.template_id}
            if f.line:
                meta["line"] = str(f.line)
            raise Precondition("RENDER_ERROR", str(f), **meta) from None
