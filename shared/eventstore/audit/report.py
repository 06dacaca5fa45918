"""A verification's report, and what every verification does first with the checkpoints it is
given: check their signatures against the keys the auditor trusts, and their sequence. No I/O.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.eventstore.audit.chains import FORGED, ROOT_MISMATCH, SEQUENCE, Finding, Findings
from shared.eventstore.audit.checkpoints import DEV_KEY_ID, Checkpoint, key_id_of


@dataclass
class Report:
    findings: Findings = field(default_factory=Findings)
    events: int = 0  # events whose chain was checked
    streams: int = 0
    checkpoints: int = 0  # checkpoints whose commitment was checked against the events
    notes: list[str] = field(default_factory=list)  # what the auditor should know, not tamper

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def add(self, finding: Finding) -> None:
        self.findings.add(finding)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "events": self.events,
            "streams": self.streams,
            "checkpoints_checked": self.checkpoints,
            "findings": [f.to_json() for f in self.findings.items],
            "findings_not_listed": self.findings.more,
            "notes": self.notes,
        }


def trusted_checkpoints(
    checkpoints: Sequence[Checkpoint], pinned: Sequence[bytes], report: Report
) -> list[Checkpoint]:
    """The checkpoints whose signature verifies with a trusted key, in number order; every
    other one, and every break in their sequence, is a finding.

    Trusted keys are the ``pinned`` ones when given. Without them each checkpoint is checked
    with the key it publishes, which proves it was not edited after signing, but not who signed
    it: a note says so, and a change of key along the sequence is a finding (a rotation is
    verified by pinning both keys)."""
    ordered = sorted(checkpoints, key=lambda c: c.number)
    if not pinned:
        report.note(
            "no --public-key given: signatures were checked with the keys the checkpoints "
            "publish; pin the key you trust to rule out checkpoints forged with another key"
        )
    first_key: bytes | None = None
    good: list[Checkpoint] = []
    for cp in ordered:
        if _trusted(cp, pinned, first_key, report):
            good.append(cp)
            first_key = first_key or cp.public_key
    _check_sequence(ordered, report)
    return good


def _trusted(
    cp: Checkpoint, pinned: Sequence[bytes], first_key: bytes | None, report: Report
) -> bool:
    def forged(message: str) -> bool:
        report.add(Finding(FORGED, message, position=cp.position, checkpoint=cp.number))
        return False

    if cp.key_id != key_id_of(cp.public_key):
        return forged(f"checkpoint {cp.number} names key {cp.key_id} but publishes another")
    if pinned:
        if not any(cp.signed_by(key) for key in pinned):
            return forged(
                f"checkpoint {cp.number}: the signature does not verify with any pinned key"
                f" (it names key {cp.key_id})"
            )
    elif not cp.signed_by(cp.public_key):
        return forged(f"checkpoint {cp.number}: the signature does not verify")
    elif first_key is not None and cp.public_key != first_key:
        return forged(
            f"checkpoint {cp.number} is signed by key {cp.key_id}, earlier ones by "
            f"{key_id_of(first_key)}: pin the keys you trust with --public-key"
        )
    if cp.key_id == DEV_KEY_ID:
        report.note(
            "checkpoints are signed with the public development key: they prove nothing "
            "(set CHECKPOINT_SIGNING_KEY in production)"
        )
    return True


def _check_sequence(ordered: Sequence[Checkpoint], report: Report) -> None:
    """Numbers without gaps or repeats, each linked to its predecessor, positions and stream
    counts never going back (streams are never removed from an append-only log)."""
    for before, cp in itertools.pairwise(ordered):

        def broken(message: str, cp: Checkpoint = cp) -> None:
            report.add(Finding(SEQUENCE, message, position=cp.position, checkpoint=cp.number))

        if cp.number == before.number:
            broken(f"two checkpoints numbered {cp.number}")
            continue
        if cp.number != before.number + 1:
            broken(f"checkpoints {before.number + 1} to {cp.number - 1} are missing")
        elif cp.previous != before.digest():
            broken(f"checkpoint {cp.number} does not link to checkpoint {before.number}")
        if cp.position < before.position or cp.streams < before.streams:
            broken(
                f"checkpoint {cp.number} (position {cp.position}, {cp.streams} streams) goes "
                f"back from checkpoint {before.number} (position {before.position}, "
                f"{before.streams} streams)"
            )
    if ordered and ordered[0].number == 1 and ordered[0].previous:
        report.add(Finding(SEQUENCE, "checkpoint 1 links to a predecessor", checkpoint=1))


def compare_tree(cp: Checkpoint, streams: int, root: bytes, report: Report) -> None:
    """Do the stream heads as of ``cp.position`` (``streams`` leaves, ``root``) match what the
    checkpoint committed to? A mismatch is a finding that says what kind of change it shows."""
    where = f"as of checkpoint {cp.number} (position {cp.position})"
    if streams < cp.streams:
        message = (
            f"{where} there are {streams} streams, {cp.streams - streams} fewer than it "
            "committed to: streams were deleted"
        )
    elif streams > cp.streams:
        message = (
            f"{where} there are {streams} streams, {streams - cp.streams} more than it "
            "committed to: events were inserted before its position"
        )
    elif root != cp.root:
        message = (
            f"{where} the stream heads no longer give its Merkle root: a stream was truncated, "
            "rewritten or re-ordered"
        )
    else:
        return
    report.add(Finding(ROOT_MISMATCH, message, position=cp.position, checkpoint=cp.number))
