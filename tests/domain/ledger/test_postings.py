"""Ledger maths: buckets, oldest-first spending, expiry, holds and rollups, with property tests."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import DomainError
from domain.ledger.postings import (
    USER,
    Book,
    Entry,
    ExpiryPolicy,
    InsufficientPoints,
    Kind,
    MonthNotOpen,
    Request,
    SystemAccount,
    UnbalancedPosting,
    check_balanced,
    month_label,
    month_of,
    parse_month,
    plan,
    take,
)

JAN_2025 = parse_month("2025-01")


def test_month_labels_round_trip() -> None:
    assert month_label(parse_month("2025-03")) == "2025-03"
    assert month_of(date(2025, 3, 31)) == parse_month("2025-03")
    with pytest.raises(DomainError):
        parse_month("2025-13")


def test_spending_takes_the_oldest_buckets_first() -> None:
    assert take({JAN_2025 + 2: 5, JAN_2025: 3, JAN_2025 + 1: 4}, 6) == {JAN_2025: 3, JAN_2025 + 1: 3}


def test_spending_more_than_the_buckets_hold_is_refused() -> None:
    with pytest.raises(InsufficientPoints):
        take({JAN_2025: 3}, 4)


def test_points_expire_at_the_end_of_the_nth_month_after_earning() -> None:
    policy = ExpiryPolicy(12)
    assert not policy.is_due(JAN_2025, JAN_2025 + 12)  # still usable during January 2026
    assert policy.is_due(JAN_2025, JAN_2025 + 13)      # gone on 1 February 2026
    assert policy.expiring_soon({JAN_2025: 7, JAN_2025 + 1: 5}, JAN_2025 + 12) == 7
    assert ExpiryPolicy(None).due({JAN_2025: 7}, JAN_2025 + 500) == {}


def test_unbalanced_postings_are_refused() -> None:
    with pytest.raises(UnbalancedPosting):
        check_balanced([Entry(USER, 5), Entry(SystemAccount.ISSUANCE, -4)])


def test_a_voided_hold_gives_back_exactly_the_buckets_it_took() -> None:
    book = Book()
    book.apply(Request("c1", Kind.CREDIT, 1, 5, earned_month=JAN_2025), JAN_2025)
    book.apply(Request("c2", Kind.CREDIT, 1, 5, earned_month=JAN_2025 + 1), JAN_2025 + 1)
    held = book.apply(Request("h", Kind.HOLD, 1, 7), JAN_2025 + 1)
    assert held.taken == {JAN_2025: 5, JAN_2025 + 1: 2}
    book.apply(Request("v", Kind.VOID, 1, hold_reference="h"), JAN_2025 + 1)
    assert book.buckets == {JAN_2025: 5, JAN_2025 + 1: 5}


def test_the_fingerprint_tells_a_replay_from_a_conflict() -> None:
    a = Request("r", Kind.CREDIT, 1, 5)
    assert a.fingerprint() == Request("r", Kind.CREDIT, 1, 5, memo="other memo").fingerprint()
    assert a.fingerprint() != Request("r", Kind.CREDIT, 1, 6).fingerprint()
    assert a.fingerprint() != Request("r", Kind.CREDIT, 2, 5).fingerprint()


operations = st.lists(
    st.one_of(
        st.tuples(st.just("credit"), st.integers(1, 500), st.integers(0, 2)),
        st.tuples(st.just("debit"), st.integers(1, 600), st.just(0)),
        st.tuples(st.just("hold"), st.integers(1, 400), st.just(0)),
        st.tuples(st.just("settle"), st.booleans(), st.just(0)),
        st.tuples(st.just("expire"), st.just(0), st.just(0)),
        st.tuples(st.just("adjust"), st.integers(-300, 300).filter(bool), st.just(0)),
        st.tuples(st.just("rollup"), st.integers(1, 6), st.just(0)),
        st.tuples(st.just("advance"), st.integers(1, 4), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(operations, st.sampled_from([None, 1, 3, 12]))
def test_balance_equals_entries_equals_buckets_and_never_goes_negative(ops: list[tuple], expiry: int | None) -> None:
    book = Book(policy=ExpiryPolicy(expiry))
    today = JAN_2025
    issued = spent = expired = 0
    for n, (op, a, b) in enumerate(ops):
        ref = f"r{n}"
        result = None
        try:
            if op == "credit":
                result = book.apply(Request(ref, Kind.CREDIT, 1, a, earned_month=today - b), today)
                issued += a
            elif op == "debit":
                before = book.policy.spendable(book.buckets, today)
                result = book.apply(Request(ref, Kind.DEBIT, 1, a), today)
                oldest_first(before, result.buckets)
                spent += a
            elif op == "hold":
                result = book.apply(Request(ref, Kind.HOLD, 1, a), today)
            elif op == "settle" and book.holds:
                hold = sorted(book.holds)[0]
                result = book.apply(Request(ref, Kind.COMMIT if a else Kind.VOID, 1, hold_reference=hold), today)
            elif op == "expire":
                result = book.apply(Request(ref, Kind.EXPIRE, 1, months=tuple(book.policy.due(book.buckets, today))
                                            or (0,)), today)
                assert not book.policy.due(book.buckets, today)
            elif op == "adjust":
                result = book.apply(Request(ref, Kind.ADJUST, 1, a), today)
            elif op == "rollup":
                book.roll_up(today - a)
            elif op == "advance":
                today += a
        except InsufficientPoints:
            pass
        except MonthNotOpen:
            assert op == "credit" and book.policy.is_due(today - b, today)
        # What expired: the sweep's postings, and the parts of holds voided after their expiry.
        expired += sum(e.amount for e in (result.entries if result else ()) if e.account == SystemAccount.EXPIRY)
        held = sum(sum(t.values()) for t in book.holds.values())
        assert book.balance == book.opening + sum(amount for _, amount in book.entries)
        assert book.balance == sum(book.buckets.values())
        assert book.balance >= 0 and all(r > 0 for r in book.buckets.values())
        assert book.system.get(SystemAccount.HOLDS, 0) == held
        assert book.balance + sum(book.system.values()) == 0  # every posting balanced
        assert -book.system.get(SystemAccount.ISSUANCE, 0) == issued
        assert book.system.get(SystemAccount.EXPIRY, 0) == expired


def oldest_first(before: dict[int, int], delta: dict[int, int]) -> None:
    """A debit empties every bucket older than the newest one it touched."""
    touched = sorted(delta)
    for month in sorted(before):
        if month < touched[-1]:
            assert -delta.get(month, 0) == before[month]


def test_a_commit_without_a_pending_hold_is_refused() -> None:
    with pytest.raises(DomainError):
        plan(Request("c", Kind.COMMIT, 1, hold_reference="missing"), {}, JAN_2025, policy=ExpiryPolicy(None))
