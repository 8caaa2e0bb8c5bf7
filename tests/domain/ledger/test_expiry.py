"""When points may be earned, spent and must expire, with the clock as an input: nothing is earned into a month
that has not started or whose points have already expired; nothing past its expiry is spent or counted as
spendable, sweep or no sweep; and once a bucket's month has expired nothing enters it again, so one expiry
posting per bucket month is enough (and its reference never collides with the older per-run references)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.ledger.operations import expiry_reference, legacy_expiry_reference
from domain.ledger.postings import (
    USER,
    Book,
    Entry,
    ExpiryPolicy,
    InsufficientPoints,
    Kind,
    MonthNotOpen,
    Plan,
    Request,
    SystemAccount,
    month_label,
    parse_month,
    plan,
)

JAN_2025 = parse_month("2025-01")
policies = st.sampled_from([ExpiryPolicy(None), ExpiryPolicy(0), ExpiryPolicy(1), ExpiryPolicy(3), ExpiryPolicy(12)])
months = st.integers(JAN_2025 - 30, JAN_2025 + 30)
buckets = st.dictionaries(months, st.integers(1, 100), max_size=6)


def is_open(policy: ExpiryPolicy, earned: int, today: int) -> bool:
    return earned <= today and not policy.is_due(earned, today)


@settings(max_examples=500, deadline=None)
@given(policies, months, months, st.integers(1, 1000), st.sampled_from([Kind.CREDIT, Kind.ADJUST]))
def test_points_are_earned_only_into_a_month_that_has_started_and_not_expired(
        policy: ExpiryPolicy, earned: int, today: int, amount: int, kind: Kind) -> None:
    request = Request("c", kind, 1, amount, earned_month=earned)
    if is_open(policy, earned, today):
        assert plan(request, {}, today, policy=policy).buckets == {earned: amount}
        return
    with pytest.raises(MonthNotOpen) as refused:
        plan(request, {}, today, policy=policy)
    assert refused.value.status == 422
    assert month_label(earned) in str(refused.value)
    if earned > today:
        assert "has not started" in str(refused.value)
    else:
        assert f"expired at the end of {month_label(policy.last_month(earned) or 0)}" in str(refused.value)


def test_the_refusal_says_which_months_are_open() -> None:
    with pytest.raises(MonthNotOpen, match=r"earned in 2025-01 expired at the end of 2025-02.*2025-03 to 2025-04"):
        plan(Request("c", Kind.CREDIT, 1, 5, earned_month=JAN_2025), {}, JAN_2025 + 3, policy=ExpiryPolicy(1))
    with pytest.raises(MonthNotOpen, match="2030-01 has not started"):
        plan(Request("c", Kind.CREDIT, 1, 5, earned_month=parse_month("2030-01")), {}, JAN_2025,
             policy=ExpiryPolicy(12))
    # Without an earned month a credit goes into this month, which is always open.
    assert plan(Request("c", Kind.CREDIT, 1, 5), {}, JAN_2025, policy=ExpiryPolicy(0)).buckets == {JAN_2025: 5}


@settings(max_examples=500, deadline=None)
@given(policies, buckets, months, st.integers(1, 400), st.sampled_from([Kind.DEBIT, Kind.HOLD, Kind.ADJUST]))
def test_a_spend_takes_only_buckets_still_spendable_oldest_first(
        policy: ExpiryPolicy, held: dict[int, int], today: int, amount: int, kind: Kind) -> None:
    spendable = policy.spendable(held, today)
    assert all(not policy.is_due(m, today) for m in spendable)
    assert sum(spendable.values()) + sum(policy.due(held, today).values()) == sum(held.values())
    request = Request("s", kind, 1, -amount if kind is Kind.ADJUST else amount)
    if amount > sum(spendable.values()):
        with pytest.raises(InsufficientPoints):
            plan(request, held, today, policy=policy)
        return
    taken = {m: -d for m, d in plan(request, held, today, policy=policy).buckets.items()}
    assert sum(taken.values()) == amount
    assert set(taken) <= set(spendable) and all(taken[m] <= spendable[m] for m in taken)
    newest = max(taken)
    assert all(taken.get(m) == spendable[m] for m in spendable if m < newest)  # oldest first


def test_a_hold_voided_after_its_points_expired_returns_only_what_is_still_spendable() -> None:
    hold = {JAN_2025: 30, JAN_2025 + 1: 10}
    result = plan(Request("v", Kind.VOID, 1, hold_reference="h"), {}, JAN_2025 + 1, hold, policy=ExpiryPolicy(0))
    assert result == Plan((Entry(SystemAccount.HOLDS, -40), Entry(USER, 10), Entry(SystemAccount.EXPIRY, 30)),
                          {JAN_2025 + 1: 10})


def test_a_merge_moves_what_is_spendable_and_expires_the_rest() -> None:
    parts = ((JAN_2025, 5), (JAN_2025 + 3, 2))
    policy, today = ExpiryPolicy(1), JAN_2025 + 4  # January ended with February; April is spendable
    out = plan(Request("m:out", Kind.MERGE_OUT, 7, parts=parts), {JAN_2025: 5, JAN_2025 + 3: 4}, today, policy=policy)
    assert out == Plan((Entry(USER, -7), Entry(SystemAccount.TRANSFER, 2), Entry(SystemAccount.EXPIRY, 5)),
                       {JAN_2025: -5, JAN_2025 + 3: -2})
    arrived = plan(Request("m:in", Kind.MERGE_IN, 9, parts=parts), {}, today, policy=policy)
    assert arrived == Plan((Entry(SystemAccount.TRANSFER, -2), Entry(USER, 2)), {JAN_2025 + 3: 2})


def test_an_expiry_empties_only_months_that_are_due() -> None:
    held = {JAN_2025: 5, JAN_2025 + 2: 4}
    result = plan(Request("e", Kind.EXPIRE, 1, months=(JAN_2025, JAN_2025 + 2)), held, JAN_2025 + 2,
                  policy=ExpiryPolicy(1))
    assert result == Plan((Entry(USER, -5), Entry(SystemAccount.EXPIRY, 5)), {JAN_2025: -5})


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 10**6), st.integers(1, 10**12), months, months)
def test_expiry_references_are_per_bucket_month_and_never_an_old_per_run_reference(
        program: int, contact: int, earned: int, other: int) -> None:
    reference = expiry_reference(program, contact, earned)
    assert reference == expiry_reference(program, contact, earned)
    assert (reference == expiry_reference(program, contact, other)) == (earned == other)
    # Deployments hold references of the old shape, one per run month; a new one is never mistaken for one.
    assert reference != legacy_expiry_reference(program, contact, other)
    assert reference.startswith(f"expire:{program}:{contact}:") and len(reference) <= 200


back = st.one_of(st.just(0), st.integers(-3, 15))  # months back (negative: ahead); this month half the time
steps = st.lists(st.one_of(
    st.tuples(st.just("credit"), st.integers(1, 300), back),
    st.tuples(st.just("debit"), st.integers(1, 400), st.just(0)),
    st.tuples(st.just("hold"), st.integers(1, 300), st.just(0)),
    st.tuples(st.just("settle"), st.booleans(), st.just(0)),
    st.tuples(st.just("adjust"), st.integers(-200, 200).filter(bool), back),
    st.tuples(st.just("advance"), st.integers(1, 3), st.just(0)),
    st.tuples(st.just("sweep"), st.just(0), st.just(0)),
), max_size=60)


@settings(max_examples=400, deadline=None)
@given(steps, policies)
def test_over_time_nothing_expired_is_spent_shown_or_refilled_and_each_month_expires_once(
        ops: list[tuple[str, int, int]], policy: ExpiryPolicy) -> None:
    book = Book(policy=policy)
    today = JAN_2025
    issued = 0
    swept: set[str] = set()   # references of non-empty expiry postings
    closed: dict[int, int] = {}  # a month past its expiry → what its bucket held when last seen
    seen: set[int] = set()  # every month that held points, in a bucket or a hold
    for n, (op, a, back) in enumerate(ops):
        ref = f"r{n}"
        spendable = sum(r for m, r in book.buckets.items() if not policy.is_due(m, today))
        try:
            if op == "credit":
                book.apply(Request(ref, Kind.CREDIT, 1, a, earned_month=today - back), today)
                issued += a
            elif op == "adjust":
                book.apply(Request(ref, Kind.ADJUST, 1, a, earned_month=today - back if a > 0 else None), today)
            elif op in ("debit", "hold"):
                book.apply(Request(ref, Kind(op), 1, a), today)
                assert a <= spendable
            elif op == "settle" and book.holds:
                hold = sorted(book.holds)[0]
                book.apply(Request(ref, Kind.COMMIT if a else Kind.VOID, 1, hold_reference=hold), today)
            elif op == "advance":
                today += a
            elif op == "sweep":
                for month in sorted(policy.due(book.buckets, today)):
                    reference = expiry_reference(1, 1, month)
                    assert reference not in swept  # its month was never refilled after an earlier sweep
                    book.apply(Request(reference, Kind.EXPIRE, 1, months=(month,)), today)
                    swept.add(reference)
                assert not policy.due(book.buckets, today)
        except InsufficientPoints:
            assert op in ("debit", "hold", "adjust") and abs(a) > spendable
        except MonthNotOpen:
            assert op in ("credit", "adjust") and not is_open(policy, today - back, today)
        seen |= set(book.buckets) | {m for taken in book.holds.values() for m in taken}
        for month in seen:
            if policy.is_due(month, today):  # an expired bucket never grows again (a hold voided late included)
                remaining = book.buckets.get(month, 0)
                assert remaining <= closed.setdefault(month, remaining)
                closed[month] = remaining
        assert book.balance == sum(book.buckets.values()) == book.opening + sum(x for _, x in book.entries)
        assert book.balance + sum(book.system.values()) == 0
        assert -book.system.get(SystemAccount.ISSUANCE, 0) == issued
