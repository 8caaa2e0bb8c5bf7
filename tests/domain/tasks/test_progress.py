"""Progress rules: the seed examples, caps that hold however events arrive, streaks, ladders, composites, budgets."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import InvalidTransition
from domain.tasks.definitions import InvalidTask, TaskDefinition, Variant, increments
from domain.tasks.lifecycle import ClaimRefused, GrantStatus, TaskStatus, check_claim, transition
from domain.tasks.periods import Period, PeriodKind
from domain.tasks.progress import (
    Participant,
    ProgressStatus,
    Rule,
    Slot,
    TaskKind,
    advance,
    assign_variant,
    fit_budget,
)

LIKES = Rule(TaskKind.SIMPLE, num=3, reward_count=1, threshold=20)  # like 3 items → 1 point, at most 20 a day


def test_like_three_items_earns_one_point_at_most_twenty_times_a_day() -> None:
    slot, who, rewards = advance(LIKES, Slot(), Participant(), "2026-12-03", None, [("like", 1)] * 100)
    assert [r.n for r in rewards] == list(range(1, 21)) and {r.amount for r in rewards} == {1}
    assert slot.completions == 20 and slot.status(LIKES, who) is ProgressStatus.COMPLETED
    slot, who, more = advance(LIKES, slot, who, "2026-12-03", None, [("like", 1)] * 3)
    assert more == []
    _, _, tomorrow = advance(LIKES, Slot(), who, "2026-12-04", None, [("like", 1)] * 3)
    assert [r.n for r in tomorrow] == [1]


@settings(max_examples=200, deadline=None)
@given(chunks=st.lists(st.lists(st.integers(0, 7), max_size=12), max_size=8), num=st.integers(1, 5),
       threshold=st.none() | st.integers(1, 6), cap=st.none() | st.integers(1, 9))
def test_caps_hold_and_batching_does_not_change_the_outcome(chunks: list[list[int]], num: int, threshold: int | None,
                                                           cap: int | None) -> None:
    rule = Rule(TaskKind.SIMPLE, num=num, reward_count=2, threshold=threshold, lifetime_cap=cap)
    slot, who, granted = Slot(), Participant(), []
    for chunk in chunks:
        slot, who, rewards = advance(rule, slot, who, "k", None, [("a", x) for x in chunk])
        granted += rewards
    all_at_once = advance(rule, Slot(), Participant(), "k", None, [("a", x) for c in chunks for x in c])[2]
    assert granted == all_at_once
    total = sum(x for c in chunks for x in c)
    expected = min(total // num, threshold or 10**9, cap or 10**9)
    assert len(granted) == expected == who.lifetime
    assert [r.n for r in granted] == list(range(1, expected + 1))


def test_a_streak_rises_and_a_missed_day_resets_it() -> None:
    rule = Rule(TaskKind.STREAK, num=1, reward_count=5, streak_rewards=(5, 10, 15))
    daily = Period(PeriodKind.DAILY, "Asia/Shanghai")
    who, amounts = Participant(), []
    for day in ["2026-12-01", "2026-12-02", "2026-12-03", "2026-12-04", "2026-12-06", "2026-12-07"]:
        _, who, rewards = advance(rule, Slot(), who, day, daily.previous_key(day), [("check_in", 1), ("check_in", 1)])
        amounts += [r.amount for r in rewards]
    assert amounts == [5, 10, 15, 5, 5, 10]  # day 4 starts the cycle again; 12-05 was missed


def test_a_ladder_grants_each_tier_once_per_period() -> None:
    rule = Rule(TaskKind.LADDER, num=1, reward_count=0, ladder=((1, 1), (5, 3), (10, 10)))
    slot, who, rewards = advance(rule, Slot(), Participant(), "d", None, [("read", 6)])
    assert [(r.n, r.amount) for r in rewards] == [(1, 1), (2, 3)]
    _, _, rewards = advance(rule, slot, who, "d", None, [("read", 100)])
    assert [(r.n, r.amount) for r in rewards] == [(3, 10)]


def test_a_composite_needs_its_steps_in_order() -> None:
    rule = Rule(TaskKind.COMPOSITE, num=1, reward_count=7, threshold=1, steps=("add_to_cart", "order_paid"))
    slot, who, rewards = advance(rule, Slot(), Participant(), "d", None, [("order_paid", 1), ("add_to_cart", 1)])
    assert rewards == [] and slot.stage == 1
    slot, who, rewards = advance(rule, slot, who, "d", None, [("order_paid", 1), ("add_to_cart", 1),
                                                               ("order_paid", 1)])
    assert [r.amount for r in rewards] == [7] and slot.completions == 1


@settings(deadline=None)  # a loaded CI machine is not a failure
@given(remaining=st.none() | st.integers(0, 50), amounts=st.lists(st.integers(1, 20), max_size=10))
def test_a_budget_is_never_overspent(remaining: int | None, amounts: list[int]) -> None:
    n = fit_budget(remaining, amounts)
    assert remaining is None and n == len(amounts) or sum(amounts[:n]) <= (remaining or 0)
    if remaining is not None and n < len(amounts):
        assert sum(amounts[:n + 1]) > remaining


@settings(deadline=None)  # a loaded CI machine is not a failure
@given(task=st.integers(1, 10**6), contact=st.integers(1, 10**9))
def test_variant_assignment_is_deterministic(task: int, contact: int) -> None:
    assert assign_variant(task, contact, [1, 1]) == assign_variant(task, contact, [1, 1]) in (0, 1)
    assert assign_variant(task, contact, [0, 5]) == 1


def test_variants_split_roughly_by_weight() -> None:
    picks = [assign_variant(7, c, [1, 3]) for c in range(4000)]
    assert 800 < picks.count(0) < 1200


def definition(**kw: object) -> TaskDefinition:
    base: dict[str, object] = dict(name="t", user_action="order_paid", num=1, reward_count=20, program_id=1,
                                   period=Period(PeriodKind.DAILY, "UTC"))
    return TaskDefinition(**(base | kw)).validate()  # type: ignore[arg-type]


def test_seed_examples_filter_and_compute() -> None:
    order = definition(filter="event.properties.amount >= 100")
    comment = definition(user_action="comment", filter="size(event.properties.text) >= 20")
    per_hundred = definition(compute="event.properties.amount / 100")
    events = [{"event": {"properties": {"amount": a, "text": "x" * a}}, "contact": {}} for a in (99, 100, 250)]
    assert increments(order, events) == [0, 1, 1]
    assert increments(comment, events) == [1, 1, 1]
    assert increments(comment, [{"event": {"properties": {"text": "short"}}, "contact": {}}]) == [0]
    assert increments(per_hundred, events) == [0, 1, 2]
    assert increments(order, [{"event": {"properties": {}}, "contact": {}}]) == [0]  # a missing field is a no


@pytest.mark.parametrize("kw, field", [
    (dict(filter="event.properties.amount >="), "filter"),
    (dict(compute="(("), "compute"),
    (dict(num=0), "num"),
    (dict(claim_mode="manual"), "claim_window_seconds"),
    (dict(kind=TaskKind.LADDER), "ladder"),
    (dict(kind=TaskKind.COMPOSITE, steps=("a",)), "steps"),
    (dict(variants=(Variant("a", 0),)), "variants"),
    (dict(starts_at=datetime(2026, 2, 1, tzinfo=UTC), ends_at=datetime(2026, 1, 1, tzinfo=UTC)), "ends_at"),
])
def test_an_invalid_definition_names_its_field(kw: dict[str, object], field: str) -> None:
    from domain.tasks.definitions import ClaimMode
    if kw.get("claim_mode") == "manual":
        kw = kw | {"claim_mode": ClaimMode.MANUAL}
    with pytest.raises(InvalidTask, match=f"^{field}"):
        definition(**kw)


def test_task_lifecycle_and_claims() -> None:
    s = transition(transition(TaskStatus.DRAFT, TaskStatus.APPROVED), TaskStatus.ACTIVE)
    assert transition(transition(s, TaskStatus.PAUSED), TaskStatus.ACTIVE) is TaskStatus.ACTIVE
    with pytest.raises(InvalidTransition, match="allowed from draft"):
        transition(TaskStatus.DRAFT, TaskStatus.ACTIVE)
    check_claim(GrantStatus.CLAIMABLE, expired=False)
    with pytest.raises(ClaimRefused, match="window has closed"):
        check_claim(GrantStatus.CLAIMABLE, expired=True)
    with pytest.raises(ClaimRefused, match="already claimed"):
        check_claim(GrantStatus.ISSUED, expired=False)


@settings(deadline=None)  # a loaded CI machine is not a failure
@given(chunks=st.lists(st.integers(0, 9), max_size=30), num=st.integers(1, 5), threshold=st.none() | st.integers(1, 6))
def test_the_stores_counting_arithmetic_agrees_with_advance(chunks: list[int], num: int, threshold: int | None) -> None:
    """The store counts plain tasks in SQL (completions from progress); rewards are the difference it sees."""
    from domain.tasks.progress import completions_at
    rule = Rule(TaskKind.SIMPLE, num=num, reward_count=1, threshold=threshold)
    slot, who, seen = Slot(), Participant(), 0
    for x in chunks:
        before = completions_at(rule, slot.progress)
        slot, who, rewards = advance(rule, slot, who, "k", None, [("a", x)])
        assert slot.completions == completions_at(rule, slot.progress)
        assert [r.n for r in rewards] == list(range(before + 1, slot.completions + 1))
        seen += len(rewards)
    assert seen == slot.completions


@settings(deadline=None)
@given(chunks=st.lists(st.integers(0, 9), max_size=30),
       needs=st.lists(st.integers(1, 40), min_size=1, max_size=5, unique=True),
       threshold=st.none() | st.integers(1, 6))
def test_the_stores_ladder_arithmetic_agrees_with_advance(chunks: list[int], needs: list[int],
                                                           threshold: int | None) -> None:
    """Ladders count in SQL too: the tiers reached are a function of progress; rewards are the tiers' own."""
    from domain.tasks.progress import completion_reward, completions_at
    ladder = tuple((n, 10 * i + 1) for i, n in enumerate(sorted(needs)))
    rule = Rule(TaskKind.LADDER, num=1, reward_count=0, threshold=threshold, ladder=ladder)
    slot, who = Slot(), Participant()
    for x in chunks:
        before = completions_at(rule, slot.progress)
        slot, who, rewards = advance(rule, slot, who, "k", None, [("a", x)])
        assert slot.completions == completions_at(rule, slot.progress)
        assert [(r.n, r.amount) for r in rewards] == [(n, completion_reward(rule, n))
                                                      for n in range(before + 1, slot.completions + 1)]


def test_cel_variables_are_limited_to_the_fields_an_expression_reads() -> None:
    from domain.tasks.definitions import referenced
    assert referenced(["event.properties.amount >= 100", None]) == {"event": frozenset({"properties"})}
    assert referenced(["size(event.properties.text) >= 20 && contact.traits.plan == 'vip'"]) == {
        "event": frozenset({"properties"}), "contact": frozenset({"traits"})}
    assert referenced(['event["properties"].amount > 1', "event.name == 'x'"]) == {"event": None}
    assert referenced(["event . timestamp > '2026'", "event.context.ip == '1'"]) == {
        "event": frozenset({"timestamp", "context"})}
    assert referenced([]) == {}


@settings(deadline=None)
@given(days=st.lists(st.tuples(st.integers(0, 6), st.integers(0, 4)), max_size=25), num=st.integers(1, 3))
def test_a_streak_counted_by_the_upsert_earns_what_advance_earns(days: list[tuple[int, int]], num: int) -> None:
    """The store counts a streak's periods in SQL (one completion a period) and advances the streak only on a new
    completion, from a fresh slot: the same rewards as advancing every period's rows."""
    from domain.tasks.progress import completions_at
    rule = Rule(TaskKind.STREAK, num=num, reward_count=5, threshold=3, streak_rewards=(5, 10, 15))
    keys = [f"2026-12-{d:02d}" for d in range(1, 9)]
    previous = {k: (keys[i - 1] if i else None) for i, k in enumerate(keys)}
    slots: dict[str, Slot] = {}
    who, counted_who = Participant(), Participant()
    progress: dict[str, int] = {}
    expected, counted = [], []
    for day, amount in sorted(days):  # periods arrive in time order, as a batch's sorted keys do
        key = keys[day]
        slots[key], who, rewards = advance(rule, slots.get(key, Slot()), who, key, previous[key], [("a", amount)])
        expected += [(key, r.n, r.amount) for r in rewards]
        before = completions_at(rule, progress.get(key, 0))
        progress[key] = progress.get(key, 0) + amount
        if completions_at(rule, progress[key]) > before:
            _, counted_who, rewards = advance(rule, Slot(), counted_who, key, previous[key], [("", rule.num)])
            counted += [(key, r.n, r.amount) for r in rewards]
    assert counted == expected and counted_who == who
