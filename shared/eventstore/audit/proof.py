"""Inclusion proofs (docs/architecture.md §2a): that one event is in the log a signed checkpoint
committed to, checkable offline with nothing but the proof and the signer's public key.

A proof holds the signed checkpoint, the event with the hash before it in its stream, every
later event of its stream up to the stream's head as of the checkpoint (the chain link: each
hash covers the one before, so the head's hash covers the event), and the Merkle audit path
from that head's leaf to the checkpoint's root. It discloses those events as stored (sealed
personal data stays sealed) and nothing about any other stream.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Sequence
from typing import Any

from shared.eventstore import merkle
from shared.eventstore.audit.chains import (
    ALTERED,
    MALFORMED,
    ROOT_MISMATCH,
    Finding,
    Head,
    StoredEvent,
)
from shared.eventstore.audit.checkpoints import Checkpoint, CheckpointFormatError, unhex
from shared.eventstore.audit.port import AuditLog
from shared.eventstore.audit.report import Report, trusted_checkpoints

FORMAT = "crm-inclusion-proof/1"


class ProofError(Exception):
    """No proof can be made: the event is unknown or after the checkpoint (``tamper`` False),
    or the log no longer matches the checkpoint (``tamper`` True)."""

    def __init__(self, message: str, *, tamper: bool = False) -> None:
        super().__init__(message)
        self.tamper = tamper


async def make_proof(log: AuditLog, checkpoint: Checkpoint, event_id: uuid.UUID) -> dict[str, Any]:
    event = await log.stored_event(event_id)
    if event is None:
        raise ProofError(f"no event {event_id} in the log")
    if event.position > checkpoint.position:
        raise ProofError(
            f"event {event_id} (position {event.position}) came after checkpoint "
            f"{checkpoint.number} (position {checkpoint.position})"
        )
    chain: list[StoredEvent] = []
    async for e in log.stream_tail(event.stream, max(event.version - 1, 0), checkpoint.position):
        chain.append(e)
    prev = b""
    if event.version > 0:
        if not chain or chain[0].version != event.version - 1:
            raise ProofError(f"{event.stream} lacks version {event.version - 1}", tamper=True)
        prev = chain.pop(0).hash
    if not chain or chain[0].event_id != event.event_id:
        raise ProofError(f"{event.stream} changed while the proof was made", tamper=True)
    builder = merkle.PathBuilder(checkpoint.streams)
    head = Head.of(chain[-1])
    try:
        async with contextlib.aclosing(log.heads(checkpoint.position)) as heads:
            async for h in heads:
                builder.add(h.leaf(), target=h.stream == event.stream)
                if h.stream == event.stream and h != head:
                    raise ProofError(f"{event.stream}'s head is not its last event", tamper=True)
        index, path, root = builder.finish()
    except ValueError as exc:
        raise ProofError(
            f"the log no longer matches checkpoint {checkpoint.number}: {exc}", tamper=True
        ) from None
    if root != checkpoint.root:
        raise ProofError(
            f"the log no longer matches checkpoint {checkpoint.number}: the Merkle root differs",
            tamper=True,
        )
    return {
        "format": FORMAT,
        "checkpoint": checkpoint.to_json(),
        "previous_hash": prev.hex(),
        "chain": [e.to_json() for e in chain],
        "leaf_index": index,
        "audit_path": [h.hex() for h in path],
    }


def check_proof(proof: Any, *, pinned: Sequence[bytes] = ()) -> Report:
    """Verify a proof offline: the checkpoint's signature, the chain from the event to its
    stream's head, and the audit path from the head's leaf to the signed root."""
    report = Report()

    def fail(kind: str, message: str, **where: Any) -> Report:
        report.add(Finding(kind, message, **where))
        return report

    try:
        if not isinstance(proof, dict) or proof.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} proof")
        cp = Checkpoint.from_json(proof["checkpoint"])
        prev = unhex(proof["previous_hash"], "previous_hash")
        chain = [StoredEvent.from_json(e) for e in proof["chain"]]
        index = int(proof["leaf_index"])
        path = [unhex(h, "audit_path") for h in proof["audit_path"]]
    except (CheckpointFormatError, KeyError, TypeError, ValueError) as exc:
        return fail(MALFORMED, f"the proof cannot be read: {exc}")
    if not chain:
        return fail(MALFORMED, "the proof holds no event")
    if not trusted_checkpoints([cp], pinned, report):
        return report
    event = chain[0]
    report.streams, report.checkpoints = 1, 1
    if event.version == 0 and prev:
        return fail(ALTERED, "version 0 links to a predecessor", stream=event.stream, version=0)
    for e in chain:
        where = {"stream": e.stream, "version": e.version, "position": e.position}
        if e.stream != event.stream or e.version != event.version + report.events:
            return fail(MALFORMED, "the chain is not one stream's consecutive versions", **where)
        if e.position > cp.position:
            return fail(MALFORMED, "the chain goes past the checkpoint's position", **where)
        if e.expected_hash(prev) != e.hash:
            return fail(ALTERED, "the hash does not match the content and the chain", **where)
        prev = e.hash
        report.events += 1
    leaf = Head.of(chain[-1]).leaf()
    if not merkle.verify_inclusion(leaf, index, cp.streams, path, cp.root):
        return fail(
            ROOT_MISMATCH,
            f"the stream's head does not lead to checkpoint {cp.number}'s root",
            stream=event.stream,
            checkpoint=cp.number,
        )
    return report
