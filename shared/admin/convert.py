"""Admin API messages from the platform's values (no I/O)."""

from __future__ import annotations

import orjson

from crm.admin.v1 import admin_pb2 as pb
from shared.eventstore import RecordedEvent
from shared.eventstore.audit.checkpoints import Checkpoint
from shared.grpckit.calls import timestamp
from shared.projections.parked import Parked
from shared.projections.status import RebuildRecord, Status

KINDS = {
    "read_model": pb.Projection.KIND_READ_MODEL,
    "engine": pb.Projection.KIND_ENGINE,
    "reactor": pb.Projection.KIND_REACTOR,
}
REBUILD_STATES = {
    "running": pb.Rebuild.STATE_RUNNING,
    "done": pb.Rebuild.STATE_DONE,
    "failed": pb.Rebuild.STATE_FAILED,
    "interrupted": pb.Rebuild.STATE_INTERRUPTED,
}
PHASES = {
    "catching_up": pb.Rebuild.PHASE_CATCHING_UP,
    "switching": pb.Rebuild.PHASE_SWITCHING,
    "done": pb.Rebuild.PHASE_DONE,
}


def event_pb(e: RecordedEvent) -> pb.Event:
    return pb.Event(
        event_id=str(e.event_id),
        stream=e.stream,
        version=e.version,
        type=e.type,
        position=e.position,
        record_time=timestamp(e.recorded_at),
        data_json=orjson.dumps(e.data).decode(),
        metadata_json=orjson.dumps(e.metadata).decode(),
    )


def rebuild_pb(r: RebuildRecord, first_position: int = 0) -> pb.Rebuild:
    """``first_position``: the log's first position, from which ``progress`` is measured."""
    start = r.resumed_from or first_position
    span = r.target - start
    if r.state == "done":
        progress = 1.0
    elif span > 0:
        progress = min(1.0, max(0.0, (r.position - start) / span))
    else:
        progress = 0.0
    return pb.Rebuild(
        operation_id=str(r.operation_id),
        projection=r.name,
        state=REBUILD_STATES[r.state],
        phase=PHASES.get(r.phase, pb.Rebuild.PHASE_UNSPECIFIED),
        resumed_from_position=r.resumed_from,
        position=r.position,
        target_position=r.target,
        applied_events=r.applied,
        progress=progress,
        error=r.error,
        requested_by=r.requested_by,
        host=r.host,
        pid=r.pid,
        start_time=timestamp(r.started_at),
        end_time=timestamp(r.finished_at),
    )


def projection_pb(s: Status, first_position: int = 0) -> pb.Projection:
    if s.rebuild is not None and s.rebuild.state == "running":
        state = pb.Projection.STATE_REBUILDING
    elif s.leader is not None:
        state = pb.Projection.STATE_RUNNING
    else:
        state = pb.Projection.STATE_NO_LEADER
    out = pb.Projection(
        name=s.name,
        kind=KINDS[s.kind],
        schema=s.schema,
        state=state,
        checkpoint_position=s.checkpoint,
        checkpoint_update_time=timestamp(s.updated_at),
        lag_events=s.lag_events,
        lag_seconds=s.lag_seconds,
        parked_count=s.parked,
    )
    if s.leader is not None:
        out.leader.CopyFrom(
            pb.Leader(
                host=s.leader.host,
                pid=s.leader.pid,
                backend_pid=s.leader.backend_pid,
                start_time=timestamp(s.leader.since),
            )
        )
    if s.rebuild is not None:
        out.last_rebuild.CopyFrom(rebuild_pb(s.rebuild, first_position))
    return out


def parked_pb(p: Parked, event: RecordedEvent | None = None) -> pb.ParkedEvent:
    return pb.ParkedEvent(
        projection=p.name,
        event_id=str(p.event_id),
        position=p.position,
        stream=p.stream_id,
        type=p.type,
        error=p.error,
        attempts=p.attempts,
        park_time=timestamp(p.parked_at),
        resolve_time=timestamp(p.resolved_at),
        resolved_by=p.resolved_by or "",
        resolution=p.resolution or "",
        event=None if event is None else event_pb(event),
    )


def checkpoint_pb(c: Checkpoint) -> pb.Checkpoint:
    return pb.Checkpoint(
        number=c.number,
        position=c.position,
        time=c.time,
        streams=c.streams,
        root=c.root,
        previous=c.previous,
        key_id=c.key_id,
        public_key=c.public_key,
        signature=c.signature,
    )


def checkpoint_of(m: pb.Checkpoint) -> Checkpoint:
    """The checkpoint a message carries, as `crm audit checkpoint` writes it (to_json)."""
    return Checkpoint(
        number=m.number,
        position=m.position,
        time=m.time,
        streams=m.streams,
        root=m.root,
        previous=m.previous,
        key_id=m.key_id,
        public_key=m.public_key,
        signature=m.signature,
    )
