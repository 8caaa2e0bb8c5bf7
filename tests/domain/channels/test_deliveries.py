"""The delivery state machine: receipts in any order, duplicated, end where the sorted sequence ends, and a state
never moves backwards; and the fallback decision built on it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from domain.channels.deliveries import ORDER, RANK, DeliveryState, advance, settle
from domain.channels.fallback import Attempt, Done, Send, Wait, decide, message_key

states = st.sampled_from(ORDER)
NOW = datetime(2026, 12, 3, 12, tzinfo=UTC)


@given(st.lists(states, max_size=12), st.randoms())
def test_any_order_of_receipts_ends_where_the_sorted_sequence_ends(reports: list[DeliveryState], rnd) -> None:
    shuffled = list(reports)
    rnd.shuffle(shuffled)
    twice = shuffled + shuffled[: len(shuffled) // 2]  # duplicates too
    sorted_end = settle(DeliveryState.QUEUED, sorted(reports, key=RANK.__getitem__))
    assert settle(DeliveryState.QUEUED, twice) == sorted_end


@given(states, st.lists(states, max_size=12))
def test_a_state_never_moves_backwards(start: DeliveryState, reports: list[DeliveryState]) -> None:
    state = start
    for report in reports:
        after = advance(state, report)
        assert RANK[after] >= RANK[state]
        state = after


def test_delivered_beats_a_late_failure_and_complaint_is_last() -> None:
    assert settle(DeliveryState.SENT, [DeliveryState.DELIVERED, DeliveryState.FAILED]) is DeliveryState.DELIVERED
    assert settle(DeliveryState.SENT, [DeliveryState.CLICKED, DeliveryState.OPENED]) is DeliveryState.CLICKED
    assert settle(DeliveryState.SENT, [DeliveryState.COMPLAINED, DeliveryState.CLICKED]) is DeliveryState.COMPLAINED


CHAIN = ["wechat", "sms"]


def test_first_attempt_goes_to_the_first_channel() -> None:
    assert decide(CHAIN, [], NOW) == Send(1, "wechat")


def test_failure_receipt_falls_back_once_then_stops() -> None:
    failed = Attempt(1, "wechat", DeliveryState.FAILED)
    assert decide(CHAIN, [failed], NOW) == Send(2, "sms")
    assert decide(CHAIN, [failed, Attempt(2, "sms", DeliveryState.FAILED)], NOW) == Done("exhausted")


def test_silence_waits_for_the_window_then_falls_back() -> None:
    sent = Attempt(1, "wechat", DeliveryState.SENT, receipt_due_at=NOW + timedelta(minutes=10))
    assert decide(CHAIN, [sent], NOW) == Wait(NOW + timedelta(minutes=10))
    assert decide(CHAIN, [sent], NOW + timedelta(minutes=10)) == Send(2, "sms")


def test_success_or_an_unreported_channel_never_falls_back() -> None:
    for state in (DeliveryState.DELIVERED, DeliveryState.OPENED, DeliveryState.CLICKED):
        assert decide(CHAIN, [Attempt(1, "wechat", state)], NOW + timedelta(days=1)) == Done("delivered")
    assert decide(["email", "sms"], [Attempt(1, "email", DeliveryState.SENT)], NOW) == Done("sent")


def test_a_queued_attempt_is_sent_again_under_the_same_number_when_due() -> None:
    queued = Attempt(2, "sms", DeliveryState.QUEUED, retry_at=NOW + timedelta(minutes=1))
    assert decide(CHAIN, [Attempt(1, "wechat", DeliveryState.FAILED), queued], NOW) == Wait(queued.retry_at)
    assert decide(CHAIN, [queued], NOW + timedelta(minutes=1)) == Send(2, "sms")


@given(st.lists(st.sampled_from(["wechat", "sms", "email", "push"]), min_size=1, max_size=4, unique=True),
       st.lists(states, max_size=6))
def test_never_a_second_channel_unless_the_first_failed(chain: list[str], outcomes: list[DeliveryState]) -> None:
    """Walk a chain with arbitrary outcomes: each new channel is sent only right after a failure or a silence past
    the window, and the attempt numbers go 1, 2, 3 with the chain's channels."""
    attempts: list[Attempt] = []
    now = NOW
    for outcome in outcomes:
        decision = decide(chain, attempts, now)
        if not isinstance(decision, Send):
            break
        if attempts and decision.number != attempts[-1].number:
            assert attempts[-1].state not in (DeliveryState.DELIVERED, DeliveryState.OPENED, DeliveryState.CLICKED,
                                              DeliveryState.COMPLAINED)
            assert decision.number == attempts[-1].number + 1
        assert decision.channel == chain[decision.number - 1]
        attempts = [a for a in attempts if a.number != decision.number]
        attempts.append(Attempt(decision.number, decision.channel, outcome, receipt_due_at=now + timedelta(minutes=5),
                                retry_at=now + timedelta(minutes=1)))
        now += timedelta(minutes=2)


def test_fallback_keys_keep_the_first_attempt_key() -> None:
    assert message_key("delivery:1:s:2", 1) == "delivery:1:s:2"
    assert message_key("delivery:1:s:2", 2) == "delivery:1:s:2#2"
