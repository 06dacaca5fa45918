"""The per-stream hash chain, recomputed in Python exactly as eventstore.event_hash() does in SQL,
so an auditor can verify the log without trusting the database's functions."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def event_hash(
    prev: bytes,
    event_id: uuid.UUID,
    stream: str,
    version: int,
    type_: str,
    data_text: str,
    metadata_text: str,
    recorded_at: datetime,
) -> bytes:
    micros = (recorded_at - _EPOCH) // timedelta(microseconds=1)
    content = "\n".join(
        [str(event_id), stream, str(version), type_, data_text, metadata_text, str(micros)]
    )
    return hashlib.sha256(prev + content.encode()).digest()
