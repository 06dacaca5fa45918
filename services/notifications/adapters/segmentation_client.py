"""Segmentation over its gRPC API, as campaigns and flows use it: a segment key's id
(ListSegments, the archived ones too), a segment's members as of an instant
(ListSegmentMembers, in pages of the most it gives), and whether a rule holds for a contact now
(EvaluateRule, a flow's rule condition), called with notifications' service token. Its
refusals become ours; anything else is UNAVAILABLE (shared/grpckit/upstream.py). A contact
segmentation does not know yet (its engine behind ours) is UNAVAILABLE too: asked again
later, it will."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import grpc

from crm.segmentation.v1 import segmentation_pb2 as pb
from crm.segmentation.v1 import segmentation_pb2_grpc as pb_grpc
from shared.grpckit import calls
from shared.grpckit.client import ClientTls, bearer, open_channel
from shared.grpckit.errors import Unavailable
from shared.grpckit.upstream import Upstream, reason_of

TIMEOUT = 10.0
PAGE = 1000  # segmentation's largest page
SEGMENTATION = Upstream("segmentation", "notifications.crm")


class GrpcSegments:
    def __init__(self, target: str, token: str, tls: ClientTls | None = None) -> None:
        self.channel = open_channel(target, tls)
        self.stub = pb_grpc.SegmentationServiceStub(self.channel)
        self.auth = bearer(token)

    async def close(self) -> None:
        await self.channel.close()

    async def ids_of(self, keys: Sequence[str]) -> dict[str, str]:
        wanted, found, token = set(keys), {}, ""
        while True:
            try:
                page = await self.stub.ListSegments(
                    pb.ListSegmentsRequest(page_size=PAGE, page_token=token, include_archived=True),
                    timeout=TIMEOUT,
                    metadata=self.auth,
                )
            except grpc.aio.AioRpcError as err:
                raise SEGMENTATION.error(err, "segments", "list the segments") from None
            found.update({s.key: s.segment_id for s in page.segments if s.key in wanted})
            token = page.next_page_token
            if not token or len(found) == len(wanted):
                return found

    async def members(self, segment_id: str, as_of: datetime) -> list[str]:
        out: list[str] = []
        token = ""
        while True:
            try:
                page = await self.stub.ListSegmentMembers(
                    pb.ListSegmentMembersRequest(
                        segment_id=segment_id,
                        as_of=calls.timestamp(as_of),
                        page_size=PAGE,
                        page_token=token,
                    ),
                    timeout=TIMEOUT,
                    metadata=self.auth,
                )
            except grpc.aio.AioRpcError as err:
                raise SEGMENTATION.error(err, "segments", "list the members") from None
            out.extend(page.contact_ids)
            token = page.next_page_token
            if not token:
                return out

    async def evaluate(self, contact_id: str, rule: str) -> bool:
        """Whether ``rule`` (segmentation's rule text) holds for the contact on its current
        facts."""
        try:
            got = await self.stub.EvaluateRule(
                pb.EvaluateRuleRequest(contact_id=contact_id, rule=rule),
                timeout=TIMEOUT,
                metadata=self.auth,
            )
        except grpc.aio.AioRpcError as err:
            if reason_of(err)[0] == "CONTACT_NOT_FOUND":
                raise Unavailable(
                    "SEGMENTATION_CONTACT_UNKNOWN",
                    f"segmentation holds no facts for contact {contact_id} yet; retry later",
                    domain=SEGMENTATION.domain,
                ) from None
            raise SEGMENTATION.error(err, "rule", "evaluate the rule") from None
        return bool(got.matches)
