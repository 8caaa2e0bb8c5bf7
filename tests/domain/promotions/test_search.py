"""The exhaustive search (domain/promotions/search.py): a group's options tried at its first member and the bound on
what the promotions left can take must choose exactly the combination — ties included — that scoring every
combination one by one chooses."""

from __future__ import annotations

from itertools import product
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.promotions.choices import options_of
from domain.promotions.index import RuleIndex
from domain.promotions.model import Cart, Kind, Line, Promotion, promotion_from_json
from domain.promotions.search import Candidate, Memo, exhaustive, free_units, score_of

lines_st = st.lists(st.builds(Line, st.sampled_from(["a", "b", "c"]), st.sampled_from(["x", "y"]),
                              st.integers(0, 20_000), st.integers(1, 4)), min_size=1, max_size=5)
scope_st = st.sampled_from([{}, {"categories": ["x"]}, {"skus": ["a", "c"]}, {"excluded_skus": ["b"]}])
group_st = st.sampled_from([(None, "stackable"), ("g", "group"), ("g", "stackable"), ("h", "group"),
                            ("h", "stackable"), ("k", "group")])


@st.composite
def promotion_st(draw: st.DrawFn, pid: int) -> Promotion:
    kind = draw(st.sampled_from(["amount_off", "tiered", "percent_off", "fixed_price", "buy_n_get_m",
                                 "free_shipping", "gift"]))
    fields: dict[str, Any] = {"scope": draw(scope_st)}
    if kind == "amount_off":
        fields |= {"amount": draw(st.integers(1, 20_000))}
    elif kind == "tiered":  # the lowest tier at 0: always met
        low = draw(st.integers(1, 3_000))
        fields |= {"tiers": [{"threshold": 0, "amount": low},
                             {"threshold": 10_000, "amount": low + draw(st.integers(0, 6_000))}]}
    elif kind == "percent_off":
        fields |= {"percent": draw(st.integers(1, 100)), "cap": draw(st.none() | st.integers(1, 5_000))}
    elif kind == "fixed_price":
        fields |= {"price": draw(st.integers(0, 10_000))}
    elif kind == "buy_n_get_m":
        fields |= {"buy": draw(st.integers(1, 2)), "get": 1}
    elif kind == "gift":
        fields |= {"gift_sku": "g", "gift_value": draw(st.sampled_from([0, 100]))}
    group, exclusivity = draw(group_st)
    return promotion_from_json(pid, {"name": f"p{pid}", "kind": kind, "stacking_group": group,
                                     "exclusivity": exclusivity, "priority": draw(st.integers(0, 2)), **fields})


promotions_st = st.integers(1, 9).flatmap(lambda n: st.tuples(*[promotion_st(i + 1) for i in range(n)]))


def candidates_of(lines: list[Line], promotions: tuple[Promotion, ...], budgets: list[int | None]) -> list[Candidate]:
    """The promotions that reach a line, as the engine makes them candidates (thresholds are all met here)."""
    rules = RuleIndex(promotions)
    out = []
    for position, idx in sorted(rules.scoped(lines).items()):
        p = rules.promotions[position]
        if p.kind is Kind.BUY_N_GET_M and sum(lines[i].quantity for i in idx) < p.buy + p.get:
            continue
        out.append(Candidate(p, tuple(idx), sum(lines[i].amount for i in idx), budget_left=budgets[position],
                             order=rules.application[position], position=position,
                             free_units=free_units(p, lines, idx) if p.kind is Kind.BUY_N_GET_M else ()))
    for place, c in enumerate(sorted(out, key=lambda c: c.order)):
        c.order = place
    for c in out:
        c.weight = 1 << (len(out) - c.order)
    return out


@settings(max_examples=400, deadline=None)
@given(lines_st, promotions_st, st.integers(0, 1_500), st.lists(st.none() | st.integers(1, 5_000), min_size=9,
                                                                max_size=9))
def test_pruning_never_changes_the_chosen_combination(lines: list[Line], promotions: tuple[Promotion, ...],
                                                      shipping: int, budgets: list[int | None]) -> None:
    cart = Cart(tuple(lines), shipping=shipping)
    always, contested, _ = options_of(candidates_of(lines, promotions, budgets))
    memo: Memo = {}
    every = [(score_of([*always, *(c for option in choice for c in option)], lines, cart, memo),
              sorted(c.order for c in [*always, *(c for option in choice for c in option)]))
             for choice in product(*contested)]
    score, taken = exhaustive(always, contested, lines, cart, {})
    assert (score, sorted(c.order for c in taken)) == min(every)
