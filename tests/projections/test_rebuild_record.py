"""How a rebuild's record reads when nobody holds its lock: a rebuild whose switch committed
(phase done) is done, even before its process recorded so (a status read in that moment used
to call it interrupted, and a client waiting for the end stopped there); one that had not
switched yet is interrupted (asking again resumes it); one that holds its lock runs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.projections.status import RebuildRecord


def _row(state: str, phase: str) -> dict[str, Any]:
    return {
        "operation_id": uuid.uuid4(),
        "name": "contacts",
        "state": state,
        "phase": phase,
        "requested_by": "op",
        "host": "vm",
        "pid": 1,
        "resumed_from": 0,
        "position": 10,
        "target": 10,
        "applied": 10,
        "error": "",
        "started_at": datetime.now(UTC),
        "finished_at": None,
    }


@pytest.mark.parametrize(
    ("state", "phase", "running", "shown"),
    [
        ("running", "done", False, "done"),
        ("running", "switching", False, "interrupted"),
        ("running", "catching_up", False, "interrupted"),
        ("running", "catching_up", True, "running"),
        ("running", "done", True, "running"),
        ("failed", "catching_up", False, "failed"),
        ("done", "done", False, "done"),
    ],
)
def test_a_record_reads_as_its_lock_and_phase_say(
    state: str, phase: str, running: bool, shown: str
) -> None:
    assert RebuildRecord.of(_row(state, phase), running).state == shown
