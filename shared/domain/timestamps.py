"""Times in stored events. A published event's time is a google.protobuf.Timestamp field, stored
as the text protobuf's JSON mapping gives it: RFC 3339 in UTC with a 'Z', and 0, 3 or 6 fraction
digits (``2026-12-02T19:59:37Z``, ``…37.120Z``, ``…37.123456Z``), so that decoding a stored
event and encoding it again gives back the stored text."""

from __future__ import annotations

from datetime import UTC, datetime


def timestamp_text(at: datetime) -> str:
    """``at`` (timezone-aware) as a Timestamp field's JSON text."""
    if at.tzinfo is not UTC:
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError(f"a stored time needs a timezone: {at.isoformat()}")
        at = at.astimezone(UTC)
    utc = at
    micros = utc.microsecond
    text = utc.replace(microsecond=0, tzinfo=None).isoformat()
    if micros == 0:
        return text + "Z"
    if micros % 1000 == 0:
        return f"{text}.{micros // 1000:03d}Z"
    return f"{text}.{micros:06d}Z"


def timestamp_from_text(text: str) -> datetime:
    """A stored time (RFC 3339 with 'Z' or an offset) as an aware datetime in UTC. Raises
    ValueError for text that is not such a time; a time without an offset is refused, since it
    names no instant."""
    at = datetime.fromisoformat(text)
    if at.tzinfo is None:
        raise ValueError(f"the time has no offset: {text!r}")
    return at.astimezone(UTC)
