"""The circuit breaker's transitions, over a hand-driven clock."""

from __future__ import annotations

from channels.breaker import BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_threshold_errors_within_the_window_and_refuses_while_open() -> None:
    clock = Clock()
    breaker = CircuitBreaker("twilio", threshold=3, window=10, cooldown=30, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.record(False)
    assert breaker.state is BreakerState.CLOSED
    breaker.record(False)
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()
    clock.now = 29.9
    assert not breaker.allow()


def test_errors_spread_wider_than_the_window_do_not_open_it() -> None:
    clock = Clock()
    breaker = CircuitBreaker("fcm", threshold=3, window=10, cooldown=30, clock=clock)
    for t in (0, 6, 12, 18):
        clock.now = t
        breaker.record(False)
    assert breaker.state is BreakerState.CLOSED


def test_successes_do_not_reset_counted_errors_but_the_window_does() -> None:
    clock = Clock()
    breaker = CircuitBreaker("fcm", threshold=2, window=10, cooldown=30, clock=clock)
    breaker.record(False)
    breaker.record(True)
    breaker.record(False)
    assert breaker.state is BreakerState.OPEN


def test_half_open_lets_one_probe_through_and_a_success_closes_it() -> None:
    clock = Clock()
    breaker = CircuitBreaker("wechat", threshold=1, window=10, cooldown=30, clock=clock)
    breaker.record(False)
    clock.now = 30
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()          # the probe
    assert not breaker.allow()      # everyone else waits for its outcome
    breaker.record(True)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow() and breaker.allow()


def test_a_failed_probe_reopens_it_for_a_whole_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker("wechat", threshold=1, window=10, cooldown=30, clock=clock)
    breaker.record(False)
    clock.now = 31
    assert breaker.allow()
    breaker.record(False)
    assert breaker.state is BreakerState.OPEN
    clock.now = 60
    assert not breaker.allow()
    clock.now = 61
    assert breaker.state is BreakerState.HALF_OPEN and breaker.allow()


def test_late_outcomes_of_sends_started_before_it_opened_change_nothing() -> None:
    clock = Clock()
    breaker = CircuitBreaker("sms", threshold=1, window=10, cooldown=30, clock=clock)
    breaker.record(False)
    breaker.record(True)   # a send that was in flight when it opened
    assert breaker.state is BreakerState.OPEN
    clock.now = 31
    breaker.record(True)   # still not the probe
    assert breaker.state is BreakerState.HALF_OPEN


def test_the_registry_gives_each_channel_its_own_breaker_from_settings() -> None:
    from channels.registry import build_breakers
    from core.settings import Settings

    breakers = build_breakers(Settings(breaker_threshold=2, breaker_window_seconds=5, breaker_cooldown_seconds=7),
                              ["sms", "wechat"])
    assert set(breakers) == {"sms", "wechat"}
    sms = breakers["sms"]
    assert (sms.provider, sms.threshold, sms.window, sms.cooldown) == ("sms", 2, 5, 7)
    sms.record(False)
    sms.record(False)
    assert sms.state is BreakerState.OPEN and breakers["wechat"].state is BreakerState.CLOSED
