"""What the search chooses between, and in which parts: the mutually exclusive alternatives (`options_of`), the
groups whose every option saves a fixed amount whatever else is taken (decided alone, `fixed_savings`), and the
components of promotions that share no line (nor the shipping fee), each searched by itself (`best_combination`,
with search.py's exhaustive or greedy search). See pricing.py for the rules the search relies on."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from domain.promotions.model import Cart, Line
from domain.promotions.search import (
    EXCLUSIVE,
    EXHAUSTIVE_LIMIT,
    FIXED,
    GROUP,
    STACKABLE,
    Candidate,
    Memo,
    Score,
    by_order,
    ceiling,
    exhaustive,
    fee_ceiling,
    footprint,
    greedy,
    score_of,
    wanted,
)


def options_of(candidates: Sequence[Candidate]) -> tuple[list[Candidate], list[list[list[Candidate]]],
                                                         list[Candidate]]:
    """(always included, per contested group its alternative option sets, exclusive ones)."""
    exclusive = [c for c in candidates if c.promotion.exclusivity is EXCLUSIVE]
    groups: dict[str, list[Candidate]] = {}
    always: list[Candidate] = []
    for c in candidates:
        p = c.promotion
        if p.exclusivity is EXCLUSIVE:
            continue
        if p.stacking_group is None:
            always.append(c)
        else:
            groups.setdefault(p.stacking_group, []).append(c)
    contested: list[list[list[Candidate]]] = []
    for name in sorted(groups, key=lambda g: min(c.promotion.rank() for c in groups[g])):
        members = groups[name]
        solo = [c for c in members if c.promotion.exclusivity is GROUP]
        stackable = [c for c in members if c.promotion.exclusivity is STACKABLE]
        if not solo:
            always += stackable
            continue
        contested.append([[c] for c in sorted(solo, key=lambda c: c.promotion.rank())] + ([stackable] if stackable
                                                                                             else []))
    return always, contested, exclusive


def fixed_savings(pool: Sequence[Candidate], contested: Sequence[Sequence[Sequence[Candidate]]],
                  lines: Sequence[Line]) -> list[list[int] | None]:
    """Per contested group, what each option saves if that does not depend on anything else taken, else None.
    It holds when every member is an amount or tiered off (a fixed amount wanted) that nobody taken with it reads
    after it, and whose lines keep at least that amount whatever runs before it (their list price minus the most
    every earlier promotion on them could take)."""
    out: list[list[int] | None] = [None] * len(contested)
    possible = [g for g, options in enumerate(contested)
                if all(c.promotion.kind in FIXED for option in options for c in option)]
    if not possible:  # a member wanting what depends on the amounts: never fixed
        return out
    ranked = sorted(pool, key=by_order)
    orders = [o.order for o in ranked]
    prints = [footprint(o) for o in ranked]
    place = {order: k for k, order in enumerate(orders)}
    list_amounts = [line.amount for line in lines]
    # per footprint, the ceilings of the promotions sharing it summed so far: (up to which place, their sum)
    summed: dict[int, tuple[int, int]] = {}
    for g in possible:
        options = contested[g]
        savings: list[int] | None = []
        rivals = {c.order for option in options for c in option}
        for option in options:
            mine = {c.order for c in option}
            total = 0
            for c in option:
                want = min(wanted(c, c.list_base), c.list_base)
                if c.budget_left is not None:
                    want = min(want, c.budget_left)
                lines_of = footprint(c)
                at = place[c.order]
                if any(prints[j] & lines_of and (orders[j] in mine or orders[j] not in rivals)
                       for j in range(at + 1, len(ranked))):
                    savings = None  # read after it by a promotion taken with it
                    break
                room = c.list_base - want  # what the promotions before it may take at most
                upto, taken = summed.get(lines_of, (0, 0))
                if upto > at:  # summed past it for another promotion on the same lines: again from the start
                    upto, taken = 0, 0
                while upto < at and taken <= room:
                    if prints[upto] & lines_of:
                        o = ranked[upto]
                        taken += o.top if o.top >= 0 else ceiling(o, lines, list_amounts)
                    upto += 1
                summed[lines_of] = (upto, taken)
                if taken > room:
                    savings = None
                    break
                total += want
            if savings is None:
                break
            savings.append(total)
        out[g] = savings
    return out


def components(always: Sequence[Candidate], contested: Sequence[Sequence[Sequence[Candidate]]]) -> list[
        tuple[list[Candidate], list[Sequence[Sequence[Candidate]]]]]:
    """The promotions split into parts that share no line and no shipping fee (a group's options together are one
    part): the best combination of each part does not depend on the others. Parts with no choice are left out."""
    items: list[int] = [footprint(c) for c in always]
    items += [_union(footprint(c) for option in options for c in option) for options in contested]
    alike: dict[int, list[int]] = {}  # items with the same footprint are in the same part; one touching nothing
    for k, bits in enumerate(items):   # is alone (~k: a key no footprint has)
        alike.setdefault(bits or ~k, []).append(k)
    merged: list[tuple[int, list[int]]] = []  # (footprint, items) of the parts so far; new items join every part
    for key, same in alike.items():            # they overlap (the parts of a graph: unique, whatever the order)
        bits = max(key, 0)
        joined, together = bits, same
        apart = []
        for part_bits, part in merged:
            if part_bits & bits:
                joined |= part_bits
                together = together + part
            else:
                apart.append((part_bits, part))
        apart.append((joined, together))
        merged = apart
    first = len(always)
    parts: list[tuple[int, tuple[list[Candidate], list[Sequence[Sequence[Candidate]]]]]] = []
    for _, part in merged:
        groups = sorted(k - first for k in part if k >= first)
        if groups:  # a part with no choice is left out
            parts.append((groups[0], ([always[k] for k in sorted(part) if k < first], [contested[g] for g in groups])))
    return [part for _, part in sorted(parts, key=lambda found: found[0])]


def _union(prints: Iterable[int]) -> int:
    bits = 0
    for p in prints:
        bits |= p
    return bits


def best_combination(candidates: Sequence[Candidate], lines: Sequence[Line], cart: Cart,
                     exhaustive_limit: int = EXHAUSTIVE_LIMIT, memo: Memo | None = None,
                     ) -> tuple[list[Candidate], list[Candidate], bool]:
    """The best valid combination of the candidates (their `order` set) without the exclusive ones, the exclusive
    ones (the caller compares them with the combination it prices in full anyway: `best_alone`), and
    whether the search was exhaustive. Before points: points pay a share of what is left, so the combination that
    leaves least is best with them too. `memo` keeps the steps priced, for the caller to reuse.

    Groups with fixed savings are decided alone (the option saving most; ties to the earliest promotion); the
    others are searched per component, exhaustively while a component has at most `exhaustive_limit`
    combinations."""
    for c in candidates:
        c.weight = 1 << (len(candidates) - c.order)
    always, contested, exclusive = options_of(candidates)
    pool = [*always, *(c for options in contested for option in options for c in option)]
    chosen: dict[int, Candidate] = {c.order: c for c in always}
    searched: list[Sequence[Sequence[Candidate]]] = []
    for options, savings in zip(contested, fixed_savings(pool, contested, lines), strict=True):
        if savings is None:
            searched.append(options)
            continue
        pick = min(range(len(options)), key=lambda o: (-savings[o], -sum(c.weight for c in options[o])))
        chosen.update((c.order, c) for c in options[pick])
    memo = {} if memo is None else memo
    complete = True
    for part_always, part_contested in components(always, searched):
        combos = 1
        for group in part_contested:
            combos *= len(group)
        if combos <= exhaustive_limit:
            _, taken = exhaustive(part_always, part_contested, lines, cart, memo)
        else:
            complete = False
            _, taken = greedy(part_always, [[list(o) for o in group] for group in part_contested], lines, cart,
                              memo)
        chosen.update((c.order, c) for c in taken)
    return list(chosen.values()), exclusive, complete


def best_alone(exclusive: Sequence[Candidate], score: Score, lines: Sequence[Line], cart: Cart,
               memo: Memo) -> Candidate | None:
    """The exclusive promotion whose score alone is the lowest, if that is below `score`. One whose list total less
    the most it could take is already above the best total so far cannot be: it is not priced."""
    winner = None
    list_amounts = [line.amount for line in lines]
    list_total = sum(list_amounts) + cart.shipping
    for c in exclusive:
        if list_total - ceiling(c, lines, list_amounts) - fee_ceiling(c, cart.shipping) > score[0]:
            continue
        alone = score_of([c], lines, cart, memo)
        if alone < score:
            score, winner = alone, c
    return winner
