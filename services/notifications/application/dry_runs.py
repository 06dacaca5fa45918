"""DryRunFlow: a flow (a saved version or a draft) run over the recorded log in memory
(domain/flows/dry_run.py). The log is read from its beginning — the facts before the window
matter — up to the window's end, in its published form; nothing is written anywhere."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from services.notifications.application.flows import FlowCommands
from services.notifications.application.templates import TemplateCommands
from services.notifications.domain import policy
from services.notifications.domain.flows import definition as fd
from services.notifications.domain.flows.dry_run import DryRun
from services.notifications.domain.flows.flow import definition_of
from shared.domain.errors import DomainError, Invalid
from shared.events.upcast import upcast
from shared.eventstore import EventStore, ReadAllPage, RecordedEvent

# What a flow can react to, what the facts come from, and the log's own marketing sends.
CATEGORIES = ("contact", "consent", "order", "cart", "segmentmembership", "message")
PAGE = 5000
SLACK = timedelta(minutes=1)  # a transaction open longer may commit an older instant later
LONGEST = timedelta(days=366)


class FlowDryRuns:
    def __init__(
        self,
        store: EventStore,
        flows: FlowCommands,
        templates: TemplateCommands,
        rules: policy.Rules,
    ) -> None:
        self.store, self.flows, self.templates, self.rules = store, flows, templates, rules

    async def run(
        self,
        flow_id: str,
        version: int,
        draft: Mapping[str, Any] | None,
        start: datetime,
        end: datetime,
    ) -> DryRun:
        if end <= start or end - start > LONGEST:
            raise Invalid([("end_time", "INVALID_WINDOW", "after start_time, at most 366 days")])
        if draft is not None:
            flow, flow_id, version = definition_of(draft), "draft", 0
        else:
            state = await self.flows.get(flow_id)
            shown = state.at(version)
            flow, version = fd.read(shown.definition)[0], shown.version
        sim = DryRun(flow, flow_id, version, await self._channels(flow), self.rules, start, end)
        # Up to the last event committed now: one committed but not yet visible to readers
        # (an older transaction still open) is waited for, not skipped.
        after, head = 0, await self.store.head_position()
        # The next page is read while this one is replayed: the database works meanwhile.
        pending = asyncio.ensure_future(self._page(after))
        try:
            while after < head:
                page = await pending
                if page.last_position == after:
                    await asyncio.sleep(0.01)
                after = page.last_position
                pending = asyncio.ensure_future(self._page(after))
                if not self._replay(sim, page.events, end):
                    break
        finally:
            pending.cancel()
        sim.finish()
        return sim

    async def _page(self, after: int) -> ReadAllPage:
        return await self.store.read_all(after, categories=CATEGORIES, limit=PAGE)

    @staticmethod
    def _replay(sim: DryRun, events: Sequence[RecordedEvent], end: datetime) -> bool:
        """The page's events into the dry run; False once the log is past the window."""
        for e in events:
            if e.recorded_at > end:
                if e.recorded_at > end + SLACK:
                    return False
                continue
            u = upcast(e)
            sim.see(u.type, str(u.event_id), u.data, u.metadata, u.recorded_at)
        return True

    async def _channels(self, flow: fd.Flow) -> dict[str, str]:
        """The channel of each template the flow's steps name (a missing one: none)."""
        keys = {
            s.action.template_key
            for s in flow.steps
            if isinstance(s.action, fd.Send | fd.Webhook) and s.action.template_key
        }
        out: dict[str, str] = {}
        for key in sorted(keys):
            try:
                out[key] = (await self.templates.get("", key)).channel
            except DomainError:
                continue
        return out
