"""Coupon codes (unguessable, check character catches typos), states and validity windows; allocation of a
discount to lines by largest remainder."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import InvalidTransition
from domain.promotions.allocation import allocate
from domain.promotions.coupons import (
    ALPHABET,
    Source,
    State,
    display,
    make_code,
    normalize,
    purchase_reference,
    source,
    transition,
    validity,
    well_formed,
)

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def test_codes_are_well_formed_and_a_typo_is_caught() -> None:
    codes = {make_code(secrets.token_bytes(8)) for _ in range(2_000)}
    assert len(codes) == 2_000
    for code in list(codes)[:200]:
        assert well_formed(code)
        assert normalize(display(code).lower()) == code
        for i in range(len(code)):  # every single-character substitution is detected
            wrong = code[:i] + ALPHABET[(ALPHABET.index(code[i]) + 1) % 32] + code[i + 1:]
            assert not well_formed(wrong)


def test_misread_letters_are_normalised() -> None:
    assert normalize(" ab-cO-Il ") == "ABC011"


def test_lifecycle() -> None:
    state = State.ISSUED
    for event, expected in [("reserve", State.RESERVED), ("release", State.ISSUED), ("reserve", State.RESERVED),
                            ("redeem", State.REDEEMED)]:
        state = transition(state, event)
        assert state is expected
    with pytest.raises(InvalidTransition):
        transition(State.REDEEMED, "release")
    with pytest.raises(InvalidTransition):
        transition(State.EXPIRED, "reserve")
    assert transition(State.RESERVED, "expire") is State.EXPIRED
    assert transition(State.ISSUED, "revoke") is State.REVOKED


def test_validity_fixed_or_days_from_issue_whichever_ends_first() -> None:
    assert validity(issued_at=T0, valid_from=None, valid_until=None, valid_days=7) == (T0, T0 + timedelta(days=7))
    assert validity(issued_at=T0, valid_from=T0 - timedelta(days=1), valid_until=T0 + timedelta(days=3),
                    valid_days=7) == (T0, T0 + timedelta(days=3))
    assert validity(issued_at=T0, valid_from=T0 + timedelta(days=2), valid_until=None, valid_days=None) == (
        T0 + timedelta(days=2), None)


def test_allocation_by_largest_remainder_ties_to_the_earlier_line() -> None:
    assert allocate(100, [100, 100, 100]) == [34, 33, 33]
    assert allocate(2, [1, 1, 1]) == [1, 1, 0]
    assert allocate(10, [30, 70]) == [3, 7]
    assert allocate(0, [5, 5]) == [0, 0]
    with pytest.raises(ValueError):
        allocate(11, [5, 5])


@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=20), st.data())
def test_allocation_sums_exactly_and_never_exceeds_a_line(weights: list[int], data: st.DataObject) -> None:
    amount = data.draw(st.integers(0, sum(weights)))
    shares = allocate(amount, weights)
    assert sum(shares) == amount
    assert all(0 <= s <= w for s, w in zip(shares, weights, strict=True))


def test_a_coupon_says_where_it_came_from() -> None:
    assert source(purchase_reference("ord-1", 0)) == Source.POINTS == "points"
    assert purchase_reference("ord-1", 2) == "redeem:ord-1#2"
    assert source("reward:3:42:2026-12-01:0#1") == Source.TASK
    assert source("bulk:flyer:17") == Source.BULK
    assert source("journey:4:2:42:1:gift") == Source.JOURNEY
    assert source("claim:campaign-7:42") == source(None) == Source.ISSUED
