"""Reconciliation and expiry rules: classification, bucket repair, deterministic references."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.ledger.operations import (
    AUTO_FIXED,
    FindingClass,
    classify_account,
    expiry_cutoff,
    expiry_reference,
    legacy_expiry_reference,
    repair_buckets,
)
from domain.ledger.postings import ExpiryPolicy, parse_month

JAN_2025 = parse_month("2025-01")


def test_each_disagreement_has_its_class_and_only_projection_drift_is_fixed_automatically() -> None:
    assert classify_account(100, 100, 100) is None
    assert classify_account(150, 100, 100) is FindingClass.BALANCE_DRIFT
    assert classify_account(100, 100, 80) is FindingClass.BUCKET_DRIFT
    assert classify_account(100, 70, 100) is FindingClass.JOURNAL_DRIFT
    assert classify_account(100, 70, 80) is FindingClass.ACCOUNT_DRIFT
    assert {FindingClass.BALANCE_DRIFT, FindingClass.BUCKET_DRIFT} <= AUTO_FIXED
    assert not {FindingClass.JOURNAL_DRIFT, FindingClass.ACCOUNT_DRIFT, FindingClass.UNBALANCED_POSTING} & AUTO_FIXED


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.integers(JAN_2025 - 24, JAN_2025), st.integers(1, 1000), max_size=8),
       st.integers(0, 10_000))
def test_repaired_buckets_sum_to_the_journal_and_surplus_leaves_oldest_first(buckets: dict[int, int],
                                                                             journal: int) -> None:
    total = sum(buckets.values())
    delta = repair_buckets(buckets, journal, JAN_2025)
    repaired = {m: buckets.get(m, 0) + delta.get(m, 0) for m in set(buckets) | set(delta)}
    assert sum(repaired.values()) == journal
    assert all(v >= 0 for v in repaired.values())
    if journal < total:
        assert all(repaired[m] == 0 for m in buckets if m < max(delta))
    elif journal > total:
        assert delta == {JAN_2025: journal - total}
    else:
        assert delta == {}

def test_expiry_references_and_cutoffs_are_deterministic() -> None:
    assert expiry_reference(3, 42, parse_month("2026-02")) == "expire:3:42:earned:2026-02"
    assert legacy_expiry_reference(3, 42, parse_month("2026-02")) == "expire:3:42:2026-02"
    # Earned in January 2025 with a 12-month policy: spendable through January 2026, due in February 2026.
    assert expiry_cutoff(ExpiryPolicy(12), parse_month("2026-02")) == JAN_2025
    assert expiry_cutoff(ExpiryPolicy(12), parse_month("2026-01")) == JAN_2025 - 1
    assert expiry_cutoff(ExpiryPolicy(None), JAN_2025) is None
