"""Campaigns as real processes for the end-to-end tests: the notifications ``Suite`` with
segmentation, orders and the serve role's tracking HTTP port, and the calls a campaign test
makes through their gRPC APIs: contacts registered with tags, a time zone and the email consent
the test needs, a segment defined in segmentation, campaigns created and scheduled, the plan a
dry run shows, what each contact's message of a campaign became, the campaign's report. And
what reached the SMTP server: each email's recipient, Message-ID and the instant it was
accepted."""

from __future__ import annotations

import base64
import email
import email.policy
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage

from crm.contacts.v1 import consent_pb2 as kpb
from crm.contacts.v1 import contacts_pb2 as cpb
from crm.notifications.v1 import campaigns_pb2 as cam
from crm.notifications.v1 import campaigns_pb2_grpc as cam_grpc
from crm.notifications.v1 import events_pb2 as epb
from crm.notifications.v1 import notifications_pb2 as pb
from crm.notifications.v1 import reports_pb2 as rpb
from crm.notifications.v1 import reports_pb2_grpc as rpb_grpc
from crm.segmentation.v1 import segmentation_pb2 as spb
from crm.segmentation.v1 import segmentation_pb2_grpc as spb_grpc
from tests.e2e.notifications_env import Suite, message_id_of


@dataclass(frozen=True)
class Received:
    """One email the SMTP server accepted."""

    to: str
    message_id: str
    accepted_at: datetime
    email: EmailMessage


def inbox(suite: Suite) -> list[Received]:
    out = []
    for r in suite.smtp.received():
        mail = email.message_from_bytes(base64.b64decode(r["data"]), policy=email.policy.default)
        assert isinstance(mail, EmailMessage)
        [to] = r["rcpt_tos"]
        at = datetime.fromtimestamp(r["received_at"], UTC)
        out.append(Received(to, message_id_of(mail), at, mail))
    return out


@dataclass
class Campaigns:
    suite: Suite

    async def contact(
        self, address: str, time_zone: str, tags: tuple[str, ...], subscribed: bool = True
    ) -> str:
        """A contact registered through contacts; subscribed to email (not SMS) when asked."""
        async with self.suite.contacts.channel() as ch:
            contacts, consent = self.suite.contacts_stubs(ch)
            made = await contacts.RegisterContact(
                cpb.RegisterContactRequest(
                    email=address,
                    first_name=address.split("@")[0].title(),
                    tags=list(tags),
                    time_zone=time_zone,
                )
            )
            cid = str(made.contact.contact_id)
            if subscribed:
                await consent.RecordConsent(
                    kpb.RecordConsentRequest(
                        contact_id=cid,
                        channel=kpb.CHANNEL_EMAIL,
                        state=kpb.CONSENT_STATE_SUBSCRIBED,
                        legal_basis=kpb.LEGAL_BASIS_CONSENT,
                        policy_version="e2e-1",
                    )
                )
        return cid

    async def suppress(self, contact_id: str) -> None:
        async with self.suite.contacts.channel() as ch:
            _, consent = self.suite.contacts_stubs(ch)
            await consent.SuppressChannel(
                kpb.SuppressChannelRequest(
                    contact_id=contact_id,
                    channel=kpb.CHANNEL_EMAIL,
                    reason=kpb.SUPPRESSION_REASON_MANUAL,
                    note="e2e: asked by phone",
                )
            )

    async def email_consent(self, contact_id: str) -> int:
        async with self.suite.contacts.channel() as ch:
            _, consent = self.suite.contacts_stubs(ch)
            got = await consent.GetConsent(kpb.GetConsentRequest(contact_id=contact_id))
        [state] = [c.state for c in got.channels if c.channel == kpb.CHANNEL_EMAIL]
        return int(state)

    async def segment(self, key: str, rule: str) -> str:
        async with self.suite.segmentation.channel() as ch:
            made = await spb_grpc.SegmentationServiceStub(ch).CreateSegment(
                spb.CreateSegmentRequest(key=key, name=key.title(), rule=rule)
            )
        return str(made.segment.segment_id)

    async def members(self, segment_id: str) -> set[str]:
        """The segment's members now, as segmentation's engine made them."""
        out: set[str] = set()
        token = ""
        async with self.suite.segmentation.channel() as ch:
            api = spb_grpc.SegmentationServiceStub(ch)
            while True:
                page = await api.ListSegmentMembers(
                    spb.ListSegmentMembersRequest(
                        segment_id=segment_id, page_size=100, page_token=token
                    )
                )
                out.update(page.contact_ids)
                if not (token := page.next_page_token):
                    return out

    async def create(self, name: str, segment_key: str, template_key: str) -> str:
        definition = epb.CampaignDefinition(
            name=name,
            include_segments=[segment_key],
            kind=epb.MESSAGE_KIND_MARKETING,
            variants=[epb.CampaignVariant(name="main", template_key=template_key)],
        )
        async with self.suite.serve.channel() as ch:
            made = await cam_grpc.CampaignsServiceStub(ch).CreateCampaign(
                cam.CreateCampaignRequest(definition=definition, request_id=f"e2e:{name}")
            )
        return str(made.campaign.campaign_id)

    async def schedule(self, campaign_id: str, when: epb.CampaignSchedule) -> cam.Campaign:
        async with self.suite.serve.channel() as ch:
            got = await cam_grpc.CampaignsServiceStub(ch).ScheduleCampaign(
                cam.ScheduleCampaignRequest(campaign_id=campaign_id, schedule=when)
            )
        return got.campaign

    async def get(self, campaign_id: str) -> cam.Campaign:
        async with self.suite.serve.channel() as ch:
            got = await cam_grpc.CampaignsServiceStub(ch).GetCampaign(
                cam.GetCampaignRequest(campaign_id=campaign_id)
            )
        return got.campaign

    async def planned(
        self, campaign_id: str, when: epb.CampaignSchedule | None = None
    ) -> dict[str, datetime]:
        """Each recipient's send instant as DryRunCampaign plans it (the engine's plan,
        application/campaign_plan.py), at ``when`` or the campaign's own schedule."""
        async with self.suite.serve.channel() as ch:
            got = await cam_grpc.CampaignsServiceStub(ch).DryRunCampaign(
                cam.DryRunCampaignRequest(campaign_id=campaign_id, schedule=when)
            )
        return {r.contact_id: r.send_time.ToDatetime(tzinfo=UTC) for r in got.recipients}

    async def messages(self, campaign_id: str, contact_ids: set[str]) -> dict[str, pb.Message]:
        """Each contact's message of the campaign, as ListMessages answers (never two)."""
        out: dict[str, pb.Message] = {}
        for m in (await self.suite.listed(contact_ids)).values():
            if m.decisions[0].trigger.campaign_id == campaign_id:
                assert m.contact_id not in out, f"two messages of a campaign to {m.contact_id}"
                out[m.contact_id] = m
        return out

    async def report(self, campaign_id: str) -> rpb.Report:
        async with self.suite.serve.channel() as ch:
            got = await rpb_grpc.ReportsServiceStub(ch).GetCampaignReport(
                rpb.GetCampaignReportRequest(campaign_id=campaign_id)
            )
        return got.report


def outcome(message: pb.Message) -> tuple[str, str]:
    """The decision in force: its outcome's name and its reason."""
    last = message.decisions[-1]
    return epb.Outcome.Name(last.outcome), last.reason
