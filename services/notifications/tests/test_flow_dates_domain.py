"""Date triggers' next fire, pure (domain/flows/dates.py): offsets, yearly and one-off dates, the
leap day, DST gaps and folds, zones, and the value forms."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.notifications.domain.flows.dates import Fire, date_of, next_fire, trigger_key
from services.notifications.domain.flows.definition import DateTrigger

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
TOKYO = ZoneInfo("Asia/Tokyo")


def birthday(offset: int = 0, at: str = "09:00", yearly: bool = True) -> DateTrigger:
    h, m = at.split(":")
    return DateTrigger("birthday", offset, time(int(h), int(m)), yearly)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_the_birthday_this_year_at_local_nine() -> None:
    fire = next_fire(date(1990, 5, 17), birthday(), PARIS, utc(2026, 3, 1))
    # 09:00 in Paris in May is CEST (+02:00): 07:00 UTC
    assert fire == Fire(date(2026, 5, 17), utc(2026, 5, 17, 7))


def test_after_this_years_fire_comes_next_years() -> None:
    this = next_fire(date(1990, 5, 17), birthday(), PARIS, utc(2026, 3, 1))
    assert this is not None
    assert next_fire(date(1990, 5, 17), birthday(), PARIS, this.at) == Fire(
        date(2027, 5, 17), utc(2027, 5, 17, 7)
    )
    # earlier the same day, before 09:00 local: still today's
    assert next_fire(date(1990, 5, 17), birthday(), PARIS, utc(2026, 5, 17, 6, 59)) == this


def test_offsets_before_and_after_cross_years() -> None:
    week_before = next_fire(date(1990, 1, 3), birthday(-7), PARIS, utc(2026, 6, 1))
    assert week_before == Fire(date(2026, 12, 27), utc(2026, 12, 27, 8))  # CET, +01:00
    after = next_fire(date(1990, 12, 30), birthday(5), PARIS, utc(2026, 6, 1))
    assert after == Fire(date(2027, 1, 4), utc(2027, 1, 4, 8))
    # the anniversary of 2025-12-30 + 5 days is 2026-01-04, already past on 2026-06-01
    assert after.day.year == 2027


def test_a_one_off_date_fires_once_then_never() -> None:
    once = birthday(yearly=False)
    signed = date(2026, 7, 1)
    fire = next_fire(signed, once, TOKYO, utc(2026, 1, 1))
    assert fire == Fire(date(2026, 7, 1), utc(2026, 7, 1, 0))  # 09:00 +09:00
    assert next_fire(signed, once, TOKYO, fire.at) is None
    assert next_fire(date(2020, 1, 1), once, TOKYO, utc(2026, 1, 1)) is None


def test_leap_day_is_feb_28_in_other_years() -> None:
    leap = date(2000, 2, 29)
    assert next_fire(leap, birthday(), ZoneInfo("UTC"), utc(2026, 1, 1)) == Fire(
        date(2026, 2, 28), utc(2026, 2, 28, 9)
    )
    assert next_fire(leap, birthday(), ZoneInfo("UTC"), utc(2028, 1, 1)) == Fire(
        date(2028, 2, 29), utc(2028, 2, 29, 9)
    )
    # the offset counts from Feb 28: a day after is Mar 1 in 2026
    assert next_fire(leap, birthday(1), ZoneInfo("UTC"), utc(2026, 1, 1)) == Fire(
        date(2026, 3, 1), utc(2026, 3, 1, 9)
    )


def test_a_time_the_spring_jump_skips_moves_forward() -> None:
    # Paris jumps 02:00 → 03:00 on 2026-03-29: 02:30 does not exist and fires at 03:30 CEST
    fire = next_fire(date(1990, 3, 29), birthday(at="02:30"), PARIS, utc(2026, 1, 1))
    assert fire == Fire(date(2026, 3, 29), utc(2026, 3, 29, 1, 30))
    assert fire.at.astimezone(PARIS).time() == time(3, 30)


def test_a_time_the_autumn_fold_repeats_fires_at_its_first_occurrence() -> None:
    # New York goes back 02:00 → 01:00 on 2026-11-01: 01:30 happens twice (EDT, then EST)
    fire = next_fire(date(1990, 11, 1), birthday(at="01:30"), NEW_YORK, utc(2026, 6, 1))
    assert fire == Fire(date(2026, 11, 1), utc(2026, 11, 1, 5, 30))  # 01:30 EDT
    after = next_fire(date(1990, 11, 1), birthday(at="01:30"), NEW_YORK, fire.at)
    assert after is not None and after.day == date(2027, 11, 1)  # not 01:30 EST that night


def test_the_zone_decides_the_instant() -> None:
    paris = next_fire(date(1990, 5, 17), birthday(), PARIS, utc(2026, 1, 1))
    tokyo = next_fire(date(1990, 5, 17), birthday(), TOKYO, utc(2026, 1, 1))
    assert paris is not None and tokyo is not None
    assert paris.at - tokyo.at == timedelta(hours=7)


@pytest.mark.parametrize(
    "value,expected",
    [
        ("1990-05-17", date(1990, 5, 17)),
        ("1990-05-17T00:00:00Z", date(1990, 5, 17)),
        ("1990-05-16T23:30:00-02:00", date(1990, 5, 17)),  # read as its UTC date
        (datetime(1990, 5, 17, tzinfo=UTC), date(1990, 5, 17)),
        ("17/05/1990", None),
        ("", None),
        (42, None),
        (True, None),
    ],
)
def test_date_values(value: object, expected: date | None) -> None:
    assert date_of(value) == expected


def test_trigger_key_names_the_occurrence() -> None:
    assert trigger_key("birthday", date(2026, 5, 17), 0) == "birthday:2026"
    # a week before a January birthday: the occurrence is in December, the anniversary's year
    assert trigger_key("birthday", date(2026, 12, 29), -7) == "birthday:2027"
    # no day or month of the date in the key: the log's run events are not sealed
    assert "05" not in trigger_key("birthday", date(2026, 5, 17), 0).split(":")[1][4:]


ZONES = st.sampled_from([PARIS, NEW_YORK, TOKYO, ZoneInfo("Australia/Lord_Howe"), ZoneInfo("UTC")])


@given(
    st.dates(date(1900, 1, 1), date(2030, 12, 31)),
    st.integers(-366, 366),
    st.times().map(lambda t: t.replace(second=0, microsecond=0)),
    ZONES,
    st.datetimes(datetime(2000, 1, 1), datetime(2090, 1, 1)).map(lambda d: d.replace(tzinfo=UTC)),
)
def test_yearly_fires_strictly_after_within_a_year_and_a_bit(
    value: date, offset: int, at: time, tz: ZoneInfo, after: datetime
) -> None:
    trigger = DateTrigger("d", offset, at, True)
    fire = next_fire(value, trigger, tz, after)
    assert fire is not None
    assert after < fire.at <= after + timedelta(days=367)
    # its local day is the occurrence day (a skipped wall time may land on the next hour only)
    assert fire.at.astimezone(tz).date() == fire.day
    # the next one after it is a later occurrence
    second = next_fire(value, trigger, tz, fire.at)
    assert second is not None and second.day > fire.day
