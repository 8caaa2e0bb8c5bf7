"""Moving points between contacts (an identity merge): after the merged-away account's holds are voided, its
buckets leave month for month and arrive month for month, so balances, expiry dates and the books agree."""

from __future__ import annotations

from collections.abc import Callable

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
    Plan,
    Request,
    SystemAccount,
    add,
    plan,
)

JAN_2025 = 2025 * 12


def test_merge_out_takes_exactly_the_named_buckets_into_transfer() -> None:
    parts = ((JAN_2025, 5), (JAN_2025 + 3, 2))
    result = plan(Request("merge:1:7:9:out", Kind.MERGE_OUT, 7, parts=parts), {JAN_2025: 5, JAN_2025 + 3: 4},
                  JAN_2025 + 4, policy=ExpiryPolicy(12))
    assert result == Plan((Entry(USER, -7), Entry(SystemAccount.TRANSFER, 7)), {JAN_2025: -5, JAN_2025 + 3: -2})


def test_merge_in_credits_the_named_months_not_this_month() -> None:
    parts = ((JAN_2025, 5), (JAN_2025 + 3, 2))
    result = plan(Request("merge:1:7:9:in", Kind.MERGE_IN, 9, parts=parts), {JAN_2025 + 3: 1}, JAN_2025 + 8,
                  policy=ExpiryPolicy(12))
    assert result == Plan((Entry(SystemAccount.TRANSFER, -7), Entry(USER, 7)), {JAN_2025: 5, JAN_2025 + 3: 2})


def test_merge_out_of_points_the_account_does_not_hold_is_refused() -> None:
    with pytest.raises(InsufficientPoints):
        plan(Request("m", Kind.MERGE_OUT, 7, parts=((JAN_2025, 6),)), {JAN_2025: 5}, JAN_2025, policy=ExpiryPolicy(12))


@pytest.mark.parametrize("parts", [(), ((JAN_2025, 0),), ((JAN_2025, -3),), ((JAN_2025, 1), (JAN_2025, 2))])
@pytest.mark.parametrize("kind", [Kind.MERGE_OUT, Kind.MERGE_IN])
def test_a_move_names_each_month_once_with_a_positive_amount(kind: Kind, parts: tuple[tuple[int, int], ...]) -> None:
    with pytest.raises(DomainError, match="names each month it moves once"):
        plan(Request("m", kind, 7, parts=parts), {JAN_2025: 5}, JAN_2025, policy=ExpiryPolicy(12))


def test_the_moved_parts_are_part_of_the_fingerprint_and_older_fingerprints_did_not_change() -> None:
    one = Request("m", Kind.MERGE_IN, 7, parts=((JAN_2025, 5),))
    assert one.fingerprint() != Request("m", Kind.MERGE_IN, 7, parts=((JAN_2025, 6),)).fingerprint()
    assert one.fingerprint() == Request("m", Kind.MERGE_IN, 7, parts=((JAN_2025, 5),)).fingerprint()
    # Stored fingerprints of postings made before `parts` existed must still match their replays.
    assert Request("x", Kind.CREDIT, 1, 5).fingerprint() == "369f381c5a80cc53f1a217638e284833"


steps = st.lists(st.one_of(
    st.tuples(st.sampled_from("ab"), st.just("credit"), st.integers(1, 500), st.integers(0, 5)),
    st.tuples(st.sampled_from("ab"), st.just("debit"), st.integers(1, 600), st.just(0)),
    st.tuples(st.sampled_from("ab"), st.just("hold"), st.integers(1, 400), st.just(0)),
    st.tuples(st.sampled_from("ab"), st.just("commit"), st.just(0), st.just(0)),
), max_size=40)


@settings(max_examples=300, deadline=None)
@given(steps)
def test_void_holds_then_move_keeps_every_point_and_every_earned_month(
        apply_step: Callable[..., None], ops: list[tuple[str, str, int, int]]) -> None:
    books = {"a": Book(policy=ExpiryPolicy(12)), "b": Book(policy=ExpiryPolicy(12))}  # a merges into b
    today = JAN_2025 + 6
    for n, (who, op, amount, months_ago) in enumerate(ops):
        apply_step(books[who], n, op, amount, months_ago, today)
    a, b = books["a"], books["b"]
    for hold in sorted(a.holds):
        a.apply(Request(f"{hold}:merge", Kind.VOID, 1, hold_reference=hold), today)
    owed, before = a.balance, dict(b.buckets)
    expiring = b.policy.expiring_soon(before, today, 12) + a.policy.expiring_soon(a.buckets, today, 12)
    parts = tuple(sorted(a.buckets.items()))
    if parts:
        a.apply(Request("merge:1:1:2:out", Kind.MERGE_OUT, 1, parts=parts), today)
        b.apply(Request("merge:1:1:2:in", Kind.MERGE_IN, 2, parts=parts), today)
    assert a.balance == 0 and a.buckets == {} and a.holds == {}
    assert b.buckets == add(before, dict(parts))  # month for month: nothing expires earlier or later
    assert b.policy.expiring_soon(b.buckets, today, 12) == expiring
    assert b.balance == sum(b.buckets.values()) and owed == sum(v for _, v in parts)
    assert a.system.get(SystemAccount.TRANSFER, 0) + b.system.get(SystemAccount.TRANSFER, 0) == 0
    total = a.balance + b.balance + sum(a.system.values()) + sum(b.system.values())
    assert total == 0  # every point came from issuance and is still accounted for
