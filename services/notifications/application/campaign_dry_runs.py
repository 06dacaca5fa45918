"""DryRunCampaign: who a campaign (saved, or a draft) would reach and when, computed as the
engine computes it at the start (application/campaign_plan.py) from segmentation's members
now; nothing is written. A draft's split between variants uses a stand-in campaign id, so its
counts are what a campaign of that definition gets, not which contact gets which variant."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.notifications.application import campaign_plan as plan
from services.notifications.application.campaign_plan import Recipient, Zones
from services.notifications.application.campaigns import CampaignCommands, Segments
from services.notifications.domain.campaigns import audience as a
from services.notifications.domain.campaigns import campaign as domain
from services.notifications.domain.campaigns import definition as defs

DRAFT = "00000000-0000-0000-0000-000000000000"  # a draft's stand-in campaign id


@dataclass(frozen=True)
class DryRun:
    audience: a.Audience
    as_of: datetime
    recipients: list[Recipient]  # in send order

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.recipients:
            out[r.variant] = out.get(r.variant, 0) + 1
        return out


def _now() -> datetime:
    return datetime.now(UTC)


class CampaignDryRuns:
    def __init__(
        self,
        commands: CampaignCommands,
        segments: Segments,
        zones: Zones,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.commands, self.segments, self.zones, self.clock = commands, segments, zones, clock

    async def run(
        self,
        campaign_id: str,
        draft: Mapping[str, Any] | None,
        schedule: Mapping[str, Any] | None,
    ) -> DryRun:
        now = self.clock()
        scheduled: Mapping[str, Any]
        if draft is not None:
            domain.decide_create(DRAFT, draft)  # checked whole: INVALID_ARGUMENT
            await self.commands.check_named(draft)
            definition, scheduled, send_at = draft, {}, now
        else:
            s = await self.commands.get(campaign_id)
            definition, scheduled, send_at = s.definition, s.schedule, s.send_at or now
            campaign_id = s.campaign_id
        if schedule:
            when = defs.schedule_of(schedule, now)
            scheduled, send_at = when.to_data(), when.start_at
        audience = await plan.frozen(self.segments, definition, now)
        recipients = await plan.planned(
            campaign_id or DRAFT, definition, scheduled, send_at, audience, self.zones
        )
        return DryRun(audience, now, recipients)
