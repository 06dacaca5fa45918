"""The upcaster, on messages with renamed fields (sample_messages.py); no database needed."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from google.protobuf import json_format, timestamp_pb2
from hypothesis import given
from hypothesis import strategies as st

from shared.domain.timestamps import timestamp_from_text, timestamp_text
from shared.events.upcast import upcast, upcast_all
from shared.eventstore import RecordedEvent
from tests.events.sample_messages import PLAIN, SAMPLED, message_class

AT = datetime(2026, 12, 2, 19, 59, 37, 123456, tzinfo=UTC)


def recorded(type_: str, data: dict[str, Any], **meta: Any) -> RecordedEvent:
    return RecordedEvent(uuid.uuid4(), "sample-1", 3, type_, data, meta, AT, 42)


def test_a_renamed_timestamp_moves_to_its_name_as_rfc3339_utc() -> None:
    old = recorded(SAMPLED, {"sample_id": "s", "happened_at": "2026-12-02T20:59:37.5+01:00"})
    new = upcast(old)
    assert new.data == {"sample_id": "s", "happen_time": "2026-12-02T19:59:37.500Z"}
    assert new._replace(data=old.data) == old  # only the data differs


def test_every_old_name_is_moved_and_a_string_keeps_its_value() -> None:
    e = recorded(SAMPLED, {"happenedAt": "2026-12-02T19:59:37+00:00", "name": "tea"})
    assert upcast(e).data == {"happen_time": "2026-12-02T19:59:37Z", "label": "tea"}


def test_the_field_itself_wins_over_an_old_key_which_is_dropped() -> None:
    both = {"happen_time": "2026-01-01T00:00:00Z", "happened_at": "1999-01-01T00:00:00+00:00"}
    assert upcast(recorded(SAMPLED, both)).data == {"happen_time": "2026-01-01T00:00:00Z"}
    camel = {"happenTime": "2026-01-01T00:00:00Z", "happened_at": "1999-01-01T00:00:00+00:00"}
    assert upcast(recorded(SAMPLED, camel)).data == {"happenTime": "2026-01-01T00:00:00Z"}


def test_an_empty_old_time_means_unset_and_an_unreadable_one_is_left_for_the_decoder() -> None:
    assert upcast(recorded(SAMPLED, {"happened_at": ""})).data == {}
    for bad in ("yesterday", "2026-12-02T19:59:37", 17):
        assert upcast(recorded(SAMPLED, {"happened_at": bad})).data == {"happen_time": bad}


def test_renames_inside_nested_repeated_map_and_recursive_messages() -> None:
    old = {
        "inner": {"at": "2026-12-02T19:59:37+00:00", "note": "n"},
        "inners": [{"at": "2026-12-02T19:59:38+00:00"}, {"at_time": "2026-12-02T19:59:39Z"}],
        "by_key": {"k": {"at": "2026-12-02T19:59:40+00:00"}},
        "tree": {"note": "root", "child": {"child": {"note": "leaf"}}},
    }
    assert upcast(recorded(SAMPLED, old)).data == {
        "inner": {"at_time": "2026-12-02T19:59:37Z", "note": "n"},
        "inners": [{"at_time": "2026-12-02T19:59:38Z"}, {"at_time": "2026-12-02T19:59:39Z"}],
        "by_key": {"k": {"at_time": "2026-12-02T19:59:40Z"}},
        "tree": {"note_text": "root", "child": {"child": {"note_text": "leaf"}}},
    }


def test_the_input_is_never_mutated_and_untouched_parts_are_shared() -> None:
    data: dict[str, Any] = {
        "happened_at": "2026-12-02T19:59:37+00:00",
        "inner": {"note": "kept as is"},
        "inners": [{"at": "2026-12-02T19:59:38+00:00"}, {"note": "as is"}],
    }
    before = copy.deepcopy(data)
    event = recorded(SAMPLED, data)
    new = upcast(event)
    assert data == before and event.data is data
    assert new.data is not data and new.data["inner"] is data["inner"]
    assert new.data["inners"][1] is data["inners"][1]


def test_idempotent_and_new_shaped_events_come_back_as_the_same_object() -> None:
    old = recorded(SAMPLED, {"happened_at": "2026-12-02T19:59:37-05:00", "tree": {"note": "x"}})
    once = upcast(old)
    assert upcast(once) is once
    new_shaped = recorded(SAMPLED, {"happen_time": "2026-12-02T19:59:37Z", "inners": [{}]})
    assert upcast(new_shaped) is new_shaped


def test_types_without_renames_and_unknown_types_are_passed_through() -> None:
    for type_ in (PLAIN, "crm.contacts.v1.ConsentGranted", "orders.inbox.DeliveryKept", "Sample"):
        e = recorded(type_, {"note": "x", "at": "2026-12-02T19:59:37+00:00"})
        assert upcast(e) is e
    events = [recorded(PLAIN, {}), recorded(SAMPLED, {"name": "n"})]
    assert [e.data for e in upcast_all(events)] == [{}, {"label": "n"}]


def test_an_upcast_event_decodes_as_its_message() -> None:
    old = recorded(SAMPLED, {"happened_at": "2026-12-02T20:59:37.123456+01:00", "name": "n"})
    message = json_format.ParseDict(upcast(old).data, message_class(SAMPLED)())
    assert message.happen_time.ToDatetime(tzinfo=UTC) == AT  # type: ignore[attr-defined]


# --- the stored text of a time -----------------------------------------------------------------

offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
times = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=offsets
)
micros = st.sampled_from([0, 120_000, 123_000, 123_400, 123_456, 999_999])


@given(times, micros)
def test_timestamp_text_is_what_the_json_mapping_writes(at: datetime, us: int) -> None:
    at = at.replace(microsecond=us)
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(at)
    assert timestamp_text(at) == json_format.MessageToJson(ts).strip('"')
    assert timestamp_from_text(timestamp_text(at)) == at
    assert timestamp_from_text(timestamp_text(at)).tzinfo == UTC


def test_a_time_without_a_zone_is_refused() -> None:
    for call in (
        lambda: timestamp_text(datetime(2026, 1, 1)),
        lambda: timestamp_from_text("2026-01-01T00:00:00"),
    ):
        try:
            call()
        except ValueError:
            continue
        raise AssertionError("a naive time was accepted")
