"""Shared helpers for the ledger property tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from domain.ledger.postings import Book, InsufficientPoints, Kind, Month, Request

Step = Callable[[Book, int, str, int, int, Month], None]


def _apply_step(book: Book, n: int, op: str, amount: int, months_ago: int, today: Month) -> None:
    """One random operation on contact 1's book: credit (into a month `months_ago` back), debit, hold, or
    commit of the oldest open hold. A spend the book cannot cover is refused and changes nothing."""
    try:
        if op == "credit":
            book.apply(Request(f"r{n}", Kind.CREDIT, 1, amount, earned_month=today - months_ago), today)
        elif op in ("debit", "hold"):
            book.apply(Request(f"r{n}", Kind(op), 1, amount), today)
        elif book.holds:
            book.apply(Request(f"r{n}", Kind.COMMIT, 1, hold_reference=sorted(book.holds)[0]), today)
    except InsufficientPoints:
        pass


@pytest.fixture(scope="session")
def apply_step() -> Step:
    """Session-scoped (hypothesis re-runs a test body many times with one set of fixtures)."""
    return _apply_step
