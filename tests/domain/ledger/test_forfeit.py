"""Forfeiting an account (erasure): after its holds are voided, everything left goes to breakage, oldest
bucket and newest alike, and the books still balance."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.ledger.postings import (
    USER,
    Book,
    Entry,
    ExpiryPolicy,
    Kind,
    Plan,
    Request,
    SystemAccount,
    plan,
)

JAN_2025 = 2025 * 12


def test_forfeit_empties_every_bucket_into_breakage() -> None:
    result = plan(Request("erase:1:7", Kind.FORFEIT, 7), {JAN_2025: 5, JAN_2025 + 3: 2}, JAN_2025 + 4,
                  policy=ExpiryPolicy(12))
    assert result == Plan((Entry(USER, -7), Entry(SystemAccount.BREAKAGE, 7)), {JAN_2025: -5, JAN_2025 + 3: -2})


def test_forfeiting_an_empty_account_posts_no_entries() -> None:
    assert plan(Request("erase:1:7", Kind.FORFEIT, 7), {}, JAN_2025, policy=ExpiryPolicy(12)).entries == ()


steps = st.lists(st.one_of(
    st.tuples(st.just("credit"), st.integers(1, 500), st.integers(0, 3)),
    st.tuples(st.just("debit"), st.integers(1, 600), st.just(0)),
    st.tuples(st.just("hold"), st.integers(1, 400), st.just(0)),
    st.tuples(st.just("commit"), st.just(0), st.just(0)),
), max_size=30)


@settings(max_examples=300, deadline=None)
@given(steps)
def test_void_holds_then_forfeit_leaves_nothing_and_stays_balanced(
        apply_step: Callable[..., None], ops: list[tuple[str, int, int]]) -> None:
    book = Book(policy=ExpiryPolicy(12))
    today = JAN_2025 + 6
    for n, (op, amount, months_ago) in enumerate(ops):
        apply_step(book, n, op, amount, months_ago, today)
    owed = book.balance + sum(sum(t.values()) for t in book.holds.values())
    for hold in sorted(book.holds):
        book.apply(Request(f"{hold}:erase", Kind.VOID, 1, hold_reference=hold), today)
    result = book.apply(Request("erase:1:1", Kind.FORFEIT, 1), today)
    assert result.user_delta == -owed
    assert book.balance == 0 and book.buckets == {} and book.holds == {}
    assert book.system.get(SystemAccount.HOLDS, 0) == 0
    assert book.system.get(SystemAccount.BREAKAGE, 0) == owed
    assert book.balance + sum(book.system.values()) == 0
