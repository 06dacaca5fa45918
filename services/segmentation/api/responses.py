"""Domain objects as SegmentationService messages."""

from __future__ import annotations

from crm.segmentation.v1 import segmentation_pb2 as pb
from services.segmentation.api import rule_proto
from services.segmentation.domain import rules
from services.segmentation.domain.segment import Segment
from shared.grpckit import calls


def segment_pb(s: Segment) -> pb.Segment:
    out = pb.Segment(
        segment_id=s.segment_id,
        key=s.key,
        name=s.name,
        description=s.description,
        rule=s.rule,
        rule_version=s.rule_version,
        archived=s.archived,
        etag=str(s.version),
    )
    if s.create_time is not None:
        out.create_time.CopyFrom(calls.timestamp(s.create_time))
    if s.update_time is not None:
        out.update_time.CopyFrom(calls.timestamp(s.update_time))
    out.rule_tree.CopyFrom(rule_proto.to_proto(rules.parse(s.rule)))
    return out
