"""Task periods: keys and boundaries in the task's zone, exact at midnight and across DST changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.tasks.periods import InvalidPeriod, Period, PeriodKind

ZONES = ["UTC", "Asia/Shanghai", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Pacific/Chatham"]
moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC))


def test_last_second_and_midnight_fall_in_different_days_in_the_tasks_zone() -> None:
    daily = Period(PeriodKind.DAILY, "Asia/Shanghai")
    tz = ZoneInfo("Asia/Shanghai")
    assert daily.key(datetime(2026, 12, 3, 23, 59, 59, tzinfo=tz)) == "2026-12-03"
    assert daily.key(datetime(2026, 12, 4, 0, 0, 0, tzinfo=tz)) == "2026-12-04"
    # 23:59:59 in Shanghai is 15:59:59 UTC, still "today" in UTC too; 16:00 UTC is already tomorrow there.
    assert daily.key(datetime(2026, 12, 3, 16, 0, tzinfo=UTC)) == "2026-12-04"


def test_a_dst_day_is_23_or_25_hours_and_its_boundaries_are_local_midnights() -> None:
    daily = Period(PeriodKind.DAILY, "Europe/Berlin")
    start, end = daily.bounds("2026-03-29")  # clocks go forward at 02:00
    assert end - start == timedelta(hours=23)
    start, end = daily.bounds("2026-10-25")  # clocks go back at 03:00
    assert end - start == timedelta(hours=25)
    tz = ZoneInfo("Europe/Berlin")
    assert daily.key(datetime(2026, 10, 25, 23, 59, 59, tzinfo=tz)) == "2026-10-25"
    assert daily.key(datetime(2026, 10, 26, 0, 0, tzinfo=tz)) == "2026-10-26"


@settings(max_examples=300, deadline=None)
@given(at=moments, zone=st.sampled_from(ZONES), kind=st.sampled_from([PeriodKind.DAILY, PeriodKind.WEEKLY,
                                                                       PeriodKind.MONTHLY]))
def test_every_moment_lies_inside_the_bounds_of_its_own_period(at: datetime, zone: str, kind: PeriodKind) -> None:
    period = Period(kind, zone)
    key = period.key(at)
    assert key is not None
    start, end = period.bounds(key)
    assert start <= at < end
    assert period.key(start) == key
    assert period.key(start - timedelta(microseconds=1)) != key
    assert period.key(end) != key
    assert period.previous_key(key) == period.key(start - timedelta(seconds=1))


def test_new_user_and_window_periods_end() -> None:
    seen = datetime(2026, 1, 1, tzinfo=UTC)
    new = Period(PeriodKind.NEW_USER, days=7)
    assert new.key(seen + timedelta(days=6, hours=23), seen) == "new"
    assert new.key(seen + timedelta(days=7), seen) is None
    window = Period(PeriodKind.WINDOW, window_start=seen, window_end=seen + timedelta(days=1))
    assert window.key(seen) == "window" and window.key(seen + timedelta(days=1)) is None


@pytest.mark.parametrize("period, field", [
    (Period(PeriodKind.DAILY, "Mars/Olympus"), "period.zone"),
    (Period(PeriodKind.NEW_USER), "period.days"),
    (Period(PeriodKind.WINDOW), "period.window_start"),
])
def test_invalid_periods_name_the_field(period: Period, field: str) -> None:
    with pytest.raises(InvalidPeriod, match=field):
        period.validate()
