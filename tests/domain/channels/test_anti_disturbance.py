"""Frequency caps, quiet hours (two zones, both DST transitions), preferences and signed link tokens."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.channels.caps import Cap, InvalidCaps, parse_caps, reached
from domain.channels.preferences import subscribed
from domain.channels.quiet import QuietHours, local_instant, next_allowed
from domain.channels.tokens import InvalidToken, LinkToken, sign, verify
from domain.zones import zone

NOW = datetime(2026, 12, 3, 12, tzinfo=UTC)
DAY_WEEK = parse_caps("*:2/1d, *:5/7d")


def test_caps_parse_and_refuse_nonsense() -> None:
    assert DAY_WEEK == (Cap("*", 2, timedelta(days=1)), Cap("*", 5, timedelta(days=7)))
    assert parse_caps("") == ()
    with pytest.raises(InvalidCaps):
        parse_caps("two a day")


def test_two_a_day_and_five_a_week() -> None:
    day = [("email", NOW - timedelta(hours=1)), ("sms", NOW - timedelta(hours=2))]
    assert reached(DAY_WEEK, day, "push", NOW) == DAY_WEEK[0]
    assert reached(DAY_WEEK, day, "push", NOW + timedelta(hours=23)) is None  # one slot freed after 22 h + 1 h
    week = [("email", NOW - timedelta(days=d)) for d in (1.5, 2.5, 3.5, 4.5, 5.5)]
    assert reached(DAY_WEEK, week, "email", NOW) == DAY_WEEK[1]


@given(st.lists(st.integers(min_value=0, max_value=14 * 24 * 60), max_size=60))
def test_caps_never_let_more_through_in_any_window(minutes: list[int]) -> None:
    """Offer messages at arbitrary times; those let through never exceed a cap in any window of its length."""
    sent: list[tuple[str, datetime]] = []
    for m in sorted(minutes):
        at = NOW + timedelta(minutes=m)
        if reached(DAY_WEEK, sent, "email", at) is None:
            sent.append(("email", at))
    for cap in DAY_WEEK:
        for _, end in sent:
            assert sum(1 for _, at in sent if end - cap.window < at <= end) <= cap.limit


def test_a_channel_cap_counts_only_its_channel() -> None:
    caps = parse_caps("sms:1/1d")
    assert reached(caps, [("email", NOW)], "sms", NOW) is None
    assert reached(caps, [("sms", NOW)], "sms", NOW) == caps[0]
    assert reached(caps, [("sms", NOW)], "email", NOW) is None


QUIET = QuietHours(time(21), time(8))


def test_quiet_hours_defer_to_the_morning_in_two_time_zones() -> None:
    at = datetime(2026, 12, 3, 14, tzinfo=UTC)  # 22:00 in Shanghai, 09:00 in New York
    assert next_allowed(at, zone("Asia/Shanghai"), QUIET) == datetime(2026, 12, 4, 0, tzinfo=UTC)  # 08:00 +08
    assert next_allowed(at, zone("America/New_York"), QUIET) == at
    night_ny = datetime(2026, 12, 4, 3, tzinfo=UTC)  # 22:00 in New York (EST), 11:00 in Shanghai
    assert next_allowed(night_ny, zone("America/New_York"), QUIET) == datetime(2026, 12, 4, 13, tzinfo=UTC)
    assert next_allowed(night_ny, zone("Asia/Shanghai"), QUIET) == night_ny


def test_quiet_hours_end_correctly_across_daylight_saving() -> None:
    ny = zone("America/New_York")
    # Night of 2026-03-07/08: clocks spring forward at 02:00; 08:00 EDT is 12:00 UTC (not 13:00).
    assert next_allowed(datetime(2026, 3, 8, 3, tzinfo=UTC), ny, QUIET) == datetime(2026, 3, 8, 12, tzinfo=UTC)
    # Night of 2026-10-31/11-01: clocks fall back; 08:00 EST is 13:00 UTC.
    assert next_allowed(datetime(2026, 11, 1, 3, tzinfo=UTC), ny, QUIET) == datetime(2026, 11, 1, 13, tzinfo=UTC)
    # An end inside the spring-forward gap (02:30 does not exist) becomes the jump itself, 03:00 EDT.
    assert local_instant(datetime(2026, 3, 8).date(), time(2, 30), ny) == datetime(2026, 3, 8, 7, tzinfo=UTC)


@given(st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2028, 1, 1), timezones=st.just(UTC)),
       st.sampled_from(["America/New_York", "Europe/London", "Asia/Shanghai", "Australia/Lord_Howe", "UTC"]),
       st.sampled_from([QUIET, QuietHours(time(0), time(7)), QuietHours(time(2, 30), time(3, 30))]))
def test_next_allowed_is_never_earlier_never_quiet_and_within_a_day(now: datetime, name: str,
                                                                    quiet: QuietHours) -> None:
    tz = zone(name)
    allowed = next_allowed(now, tz, quiet)
    assert now <= allowed <= now + timedelta(hours=25)
    assert not quiet.contains(allowed.astimezone(tz).time().replace(tzinfo=None))


def test_preferences_most_specific_rule_wins_and_transactional_ignores_them() -> None:
    rules = {("*", "*"): False, ("orders", "*"): True, ("orders", "sms"): False}
    assert subscribed(rules, "orders", "email")
    assert not subscribed(rules, "orders", "sms")
    assert not subscribed(rules, "news", "email")
    assert subscribed(rules, "news", "email", transactional=True)
    assert subscribed({}, None, "email")


SECRET = b"s" * 32


def test_tokens_round_trip_and_refuse_tampering() -> None:
    token = LinkToken("c", 42, key="delivery:1:s:42", channel="email", url="https://example.com/sale?x=1")
    signed = sign(SECRET, token)
    assert verify(SECRET, signed, "c") == token
    with pytest.raises(InvalidToken):
        verify(SECRET, signed, "o")  # another purpose
    with pytest.raises(InvalidToken):
        verify(b"t" * 32, signed, "c")
    body, mac = signed.split(".")
    with pytest.raises(InvalidToken):
        verify(SECRET, body[:-2] + "AA." + mac, "c")


@pytest.mark.parametrize("url", ["javascript:alert(1)", "//evil.example/", "/relative", "https:\\\\evil.example"])
def test_click_tokens_refuse_non_http_targets(url: str) -> None:
    with pytest.raises(InvalidToken):
        sign(SECRET, LinkToken("c", 1, url=url))
