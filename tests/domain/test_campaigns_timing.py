"""Recurrences (cron and intervals in a zone, with an end), the runs' delivery steps, and local-time slots."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.campaigns_timing import (
    Recurrence,
    local_slots,
    next_cron,
    next_local,
    parse_cron,
    parse_local_time,
    run_step,
)
from domain.errors import DomainError

ZONES = ["UTC", "Asia/Shanghai", "Asia/Tokyo", "Asia/Kolkata", "Europe/London", "Europe/Paris", "America/New_York",
         "America/Sao_Paulo", "Australia/Lord_Howe", "Pacific/Kiritimati", "Pacific/Pago_Pago", "Asia/Kathmandu"]
instants = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1),
                        timezones=st.just(UTC))


def _exists(wall: datetime, tz: ZoneInfo) -> bool:
    """The wall-clock time happens in the zone (a DST gap skips some)."""
    aware = wall.replace(tzinfo=tz)
    return aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wall


@pytest.mark.parametrize(("text", "minutes", "hours", "weekdays"), [
    ("0 9 * * MON", (0,), (9,), {1}),
    ("*/20 8-10 * * 1-5", (0, 20, 40), (8, 9, 10), {1, 2, 3, 4, 5}),
    ("30 18 * * 0,7", (30,), (18,), {0}),
    ("@daily", (0,), (0,), set(range(7))),
])
def test_cron_fields(text: str, minutes: tuple[int, ...], hours: tuple[int, ...], weekdays: set[int]) -> None:
    cron = parse_cron(text)
    assert (cron.minutes, cron.hours, set(cron.weekdays)) == (minutes, hours, weekdays)


@pytest.mark.parametrize(("text", "says"), [
    ("0 9 * *", "five fields"),
    ("61 9 * * *", "minute '61'"),
    ("0 24 * * *", "hour '24'"),
    ("0 9 * * FUNDAY", "day of week 'FUNDAY'"),
    ("0 9 5-1 * *", "runs backwards"),
    ("*/0 9 * * *", "step '0'"),
    ("0 9 1 * MON", "restrict one of them"),
    ("0 0 31 2 *", "never fires"),
])
def test_a_bad_cron_says_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(DomainError, match=says):
        parse_cron(text)


@settings(max_examples=200, deadline=None)
@given(st.sets(st.integers(0, 59), min_size=1, max_size=3), st.sets(st.integers(0, 23), min_size=1, max_size=3),
       st.sampled_from(ZONES), instants)
def test_next_cron_is_the_first_matching_minute_after(minutes: set[int], hours: set[int], zone: str,
                                                      after: datetime) -> None:
    cron = parse_cron(f"{','.join(map(str, sorted(minutes)))} {','.join(map(str, sorted(hours)))} * * *")
    tz = ZoneInfo(zone)
    found = next_cron(cron, tz, after)
    assert found is not None and after < found <= after + timedelta(days=1, hours=2)
    wall = found.astimezone(tz)
    if _exists(wall.replace(tzinfo=None), tz) and (wall.hour, wall.minute) in {(h, m) for h in hours for m in minutes}:
        pass  # a matching wall time
    else:  # only a DST gap moves a time off the cron's wall clock
        assert any(not _exists(datetime.combine(wall.date(), time(h, m)), tz) for h in hours for m in minutes)
    # No matching minute was skipped between `after` and what was found.
    t = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while t < found:
        local = t.astimezone(tz)
        assert (local.hour, local.minute) not in {(h, m) for h in hours for m in minutes}
        t += timedelta(minutes=1)


@given(st.integers(3600, 30 * 86400), instants)
def test_an_interval_fires_on_its_multiples_of_the_epoch(every: int, after: datetime) -> None:
    found = Recurrence(every_seconds=every).next_after(after)
    assert found is not None and after < found <= after + timedelta(seconds=every)
    assert found.timestamp() % every == 0


@given(instants, st.sampled_from(ZONES))
def test_a_recurrence_ends_at_until_and_starts_at_start(after: datetime, zone: str) -> None:
    daily = Recurrence(timezone=zone, cron="0 9 * * *")
    first = daily.next_after(after)
    assert first is not None
    assert Recurrence(zone, "0 9 * * *", until=first).next_after(after) == first
    assert Recurrence(zone, "0 9 * * *", until=first - timedelta(seconds=1)).next_after(after) is None
    later = after + timedelta(days=10)
    started = Recurrence(zone, "0 9 * * *", start=later).next_after(after)
    assert started is not None and later <= started < later + timedelta(days=1, hours=2)


@pytest.mark.parametrize(("recurrence", "field"), [
    (Recurrence(), "either a cron expression or an interval"),
    (Recurrence(cron="0 9 * * *", every_seconds=3600), "not both"),
    (Recurrence(timezone="Mars/Base", cron="0 9 * * *"), "recurrence.timezone"),
    (Recurrence(cron="0 9"), "recurrence.cron"),
    (Recurrence(every_seconds=60), "recurrence.every"),
    (Recurrence(cron="@daily", start=datetime(2027, 1, 2, tzinfo=UTC), until=datetime(2027, 1, 1, tzinfo=UTC)),
     "recurrence.until"),
])
def test_a_bad_recurrence_names_its_field(recurrence: Recurrence, field: str) -> None:
    with pytest.raises(DomainError, match=field):
        recurrence.check()


def test_a_recurrence_round_trips_through_json() -> None:
    r = Recurrence("Asia/Shanghai", "0 9 * * MON", None, datetime(2027, 1, 1, tzinfo=UTC),
                   datetime(2027, 6, 30, tzinfo=UTC)).check()
    assert Recurrence.from_json(r.to_json()) == r


@given(st.integers(1, 10_000), st.integers(1, 10_000))
def test_each_run_has_its_own_step(a: int, b: int) -> None:
    assert (run_step(a) == run_step(b)) == (a == b)
    assert run_step(1) == "s1"  # a one-off campaign's keys are unchanged


@pytest.mark.parametrize("bad", ["9", "9:5", "24:00", "09:60", "nine", "09:00:00", ""])
def test_local_time_is_hh_mm(bad: str) -> None:
    with pytest.raises(DomainError, match="HH:MM"):
        parse_local_time(bad)


@given(st.sampled_from(ZONES), st.integers(0, 23), st.integers(0, 59), instants)
def test_next_local_is_the_first_such_wall_time_at_or_after_the_start(zone: str, hour: int, minute: int,
                                                                        start: datetime) -> None:
    tz = ZoneInfo(zone)
    due = next_local(time(hour, minute), tz, start)
    assert start <= due < start + timedelta(days=1, hours=2)
    wall = due.astimezone(tz)
    if _exists(datetime.combine(wall.date(), time(hour, minute)), tz):
        assert (wall.hour, wall.minute) == (hour, minute)
    # A day earlier was before the start: a zone whose time has passed gets it the next day, not at once.
    assert datetime.combine(wall.date() - timedelta(days=1), time(hour, minute), tzinfo=tz) < start


@given(st.lists(st.one_of(st.none(), st.sampled_from([*ZONES, "Mars/Base", ""])), max_size=30),
       st.sampled_from(ZONES), instants)
def test_local_slots_put_each_zone_in_one_slot_earliest_first(names: list[str | None], default: str,
                                                              start: datetime) -> None:
    at = time(9, 0)
    slots = local_slots(names, at, default, start)
    placed = [n for s in slots for n in s.zones]
    assert sorted(placed) == sorted({n or "" for n in names})  # each once; no zone becomes ""
    assert [s.due for s in slots] == sorted({s.due for s in slots})  # earliest first, one slot per instant
    fallback = next_local(at, ZoneInfo(default), start)
    for slot in slots:
        for name in slot.zones:
            tz = ZoneInfo(name) if name in ZONES else ZoneInfo(default)  # unknown or none: the campaign's zone
            assert slot.due == next_local(at, tz, start)
            if name not in ZONES:
                assert slot.due == fallback
