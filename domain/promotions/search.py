"""The search for the best combination: the candidates that passed every check, one promotion's discount given
the amounts before it (`step`), and the two searches — exhaustive (a tree walk sharing work between combinations)
and greedy with a bound — over the only real choices, the mutually exclusive alternatives (`options_of`).
Before searching, the choices are split into parts that cannot influence each other (`best_combination`): groups
whose every option saves a fixed amount whatever else is taken are decided alone, and the rest falls into
components of promotions that share no line (nor the shipping fee), each searched by itself.
See pricing.py for the rules the search relies on (thresholds at list price make every discount monotone)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from domain.promotions.allocation import allocate
from domain.promotions.model import Cart, Exclusivity, Kind, Line, Promotion

EXHAUSTIVE_LIMIT = 256  # combinations; above it, the greedy search
GREEDY_ROUNDS = 2
GIFT, SHIPPING, SUMMED_ONLY, STEPPED = "gift", "shipping", "summed only", "stepped"  # how the walk takes one


@dataclass(slots=True)
class Candidate:
    promotion: Promotion
    idx: tuple[int, ...]  # the scoped lines (canonical positions)
    list_base: int  # scoped subtotal at list price
    coupon_code: str | None = None
    budget_left: int | None = None
    order: int = 0  # position in the order of application (stage, priority, id)
    free_units: tuple[int, ...] = ()  # buy N get M: units free per scoped line
    weight: int = 0  # tie-break bit: 1 << (candidates - order), so earlier promotions weigh more
    position: int = 0  # in the rule set (RuleIndex.promotions)
    fixed: int = -1  # amount off, tiered: what it wants, once worked out (it does not depend on the amounts)
    bits: int = -1  # its footprint, once worked out
    remembered: bool = False  # a step of it is in the memo (`memo_step`)


def free_units(p: Promotion, lines: Sequence[Line], idx: Sequence[int]) -> tuple[int, ...]:
    """Buy N get M: in each group of N + M scoped units, dearest first by *list* price, the M cheapest are free.
    Chosen by list price, the free units do not move when an earlier promotion changes amounts, so the discount of
    every line only ever grows with its own amount (what keeps the engine monotone)."""
    size = p.buy + p.get
    groups = sum(lines[i].quantity for i in idx) // size
    if p.max_applications is not None:
        groups = min(groups, p.max_applications)
    end = groups * size

    def freed_before(n: int) -> int:  # free positions among the first n units (dearest first)
        n = min(n, end)
        return n // size * p.get + max(0, n % size - p.buy)

    free = [0] * len(idx)
    position = 0
    for k in sorted(range(len(idx)), key=lambda k: (-lines[idx[k]].unit_price, k)):
        quantity = lines[idx[k]].quantity
        free[k] = freed_before(position + quantity) - freed_before(position)
        position += quantity
    return tuple(free)


def wanted(c: Candidate, base: int) -> int:
    """What an amount, tiered or percent off promotion takes from `base` (its lines' current amounts), before the
    cap at `base`: tiers and repeats go by the list-price subtotal."""
    if c.fixed >= 0:
        return c.fixed
    p = c.promotion
    if p.kind is Kind.AMOUNT_OFF:
        times = c.list_base // p.threshold if p.repeat else 1
        if p.max_applications is not None:
            times = min(times, p.max_applications)
        c.fixed = p.amount * times
        return c.fixed
    if p.kind is Kind.TIERED:
        c.fixed = max(t.amount for t in p.tiers if t.threshold <= c.list_base)
        return c.fixed
    wanted = base * p.percent // 100
    return wanted if p.cap is None else min(wanted, p.cap)


def discount(candidate: Candidate, lines: Sequence[Line], amounts: list[int]) -> list[int]:
    """One promotion's discount on each of its scoped lines (aligned with `candidate.idx`), given the amounts
    left by those applied before it."""
    p, idx = candidate.promotion, candidate.idx
    kind = p.kind
    if kind is Kind.AMOUNT_OFF or kind is Kind.TIERED or kind is Kind.PERCENT_OFF:
        scoped = [amounts[i] for i in idx]
        base = sum(scoped)
        return allocate(min(wanted(candidate, base), base), scoped)
    if kind is Kind.FIXED_PRICE:
        out = []
        left = p.max_applications
        for i in idx:
            quantity = lines[i].quantity
            count = quantity if left is None else max(0, min(quantity, left))
            if left is not None:
                left -= count
            out.append(max(0, amounts[i] * count // quantity - p.price * count))
        return out
    if kind is Kind.BUY_N_GET_M:
        out = []
        for k, i in enumerate(idx):
            free = candidate.free_units[k]
            each, extra = divmod(amounts[i], lines[i].quantity)
            plain = lines[i].quantity - extra  # units whose share is `each`; the others' is each + 1
            out.append(min(free, plain) * each + max(0, free - plain) * (each + 1))
        return out
    return [0] * len(idx)


Memo = dict[tuple[int, int, tuple[int, ...]], tuple[list[int], int]]


def memo_step(c: Candidate, lines: Sequence[Line], amounts: list[int], shipping: int,
               memo: Memo) -> tuple[list[int], int]:
    """`_step`, remembered by what it depends on (the amounts of its own lines, and shipping): the combinations the
    search compares share most of their steps."""
    key = (c.order, shipping if c.promotion.kind is Kind.FREE_SHIPPING else 0, tuple([amounts[i] for i in c.idx]))
    found = memo.get(key)
    if found is None:
        found = memo[key] = step(c, lines, amounts, shipping)
        c.remembered = True
    return found


def step(c: Candidate, lines: Sequence[Line], amounts: list[int], shipping: int) -> tuple[list[int], int]:
    """(per scoped line discount, shipping discount) of one promotion, capped by what is left of its budget."""
    per_line = discount(c, lines, amounts)
    ship = shipping if c.promotion.kind is Kind.FREE_SHIPPING else 0
    if c.budget_left is not None and sum(per_line) + ship > c.budget_left:
        ship = min(ship, c.budget_left)
        per_line = allocate(c.budget_left - ship, per_line)
    return per_line, ship


Score = tuple[int, int, int]  # (total before points, -gift value, -sum of the weights of the promotions taken)


def score_of(chosen: Sequence[Candidate], lines: Sequence[Line], cart: Cart, memo: Memo) -> Score:
    """What the search compares: (total before points, -gift value, -weight). The weight breaks ties towards the
    combination holding the earliest promotion (in the order of application) where two differ; unlike comparing
    sorted lists of promotions, it adds up over independent parts of the search."""
    amounts = [line.amount for line in lines]
    shipping = cart.shipping
    benefit = 0
    weight = 0
    for c in sorted(chosen, key=_by_order):
        weight += c.weight
        kind = c.promotion.kind
        if kind is Kind.GIFT:  # nothing off (`step` gives zeros)
            benefit += c.promotion.gift_value
        elif kind is Kind.FREE_SHIPPING:  # the fee left, at most the budget (`step`, without the lines' zeros)
            shipping -= shipping if c.budget_left is None else min(shipping, c.budget_left)
        else:
            per_line, ship = memo_step(c, lines, amounts, shipping, memo)
            for i, d in zip(c.idx, per_line, strict=True):
                amounts[i] -= d
            shipping -= ship
    return sum(amounts) + shipping, -benefit, -weight


def _by_order(c: Candidate) -> int:
    return c.order


def footprint(c: Candidate) -> int:
    """What a promotion reads and changes, as bits (bit 0: the shipping fee; bit i + 1: line i). Free shipping
    only touches the fee and a gift nothing: their thresholds are met at list price."""
    if c.bits >= 0:
        return c.bits
    kind = c.promotion.kind
    bits = 0
    if kind is Kind.FREE_SHIPPING:
        bits = 1
    elif kind is not Kind.GIFT:
        for i in c.idx:
            bits |= 2 << i
    c.bits = bits
    return bits


def late_choices(ordered: list[Candidate], group_of: dict[int, int]) -> list[Candidate]:
    """`ordered` (the order of application) rearranged so that promotions outside any choice come as early as they
    may: one only moves ahead of promotions whose footprint it does not share."""
    prints = [footprint(c) for c in ordered]
    placed = [False] * len(ordered)
    out: list[Candidate] = []
    while len(out) < len(ordered):
        ready = []
        blocked = 0  # footprints of promotions not placed yet, earlier in the order of application
        for k in range(len(ordered)):
            if placed[k]:
                continue
            if not prints[k] & blocked:
                ready.append(k)
            blocked |= prints[k]
        free = [k for k in ready if ordered[k].order not in group_of]
        for k in free or ready[:1]:
            placed[k] = True
            out.append(ordered[k])
    return out


SUMMED = (Kind.AMOUNT_OFF, Kind.TIERED, Kind.PERCENT_OFF)
FIXED = (Kind.AMOUNT_OFF, Kind.TIERED)  # what they want does not depend on the amounts before them


def last_readers(everyone: Sequence[Candidate], group_of: dict[int, int],
                  members: Sequence[Sequence[frozenset[int]]]) -> list[bool]:
    """Per position of the walk: a promotion whose discount is a plain sum (amount, tiered, percent off) and whose
    lines no later promotion that can be taken with it reads — the search needs its sum, not its allocation."""
    prints = [footprint(c) for c in everyone]
    out = []
    for k, c in enumerate(everyone):
        g = group_of.get(c.order)
        alone = c.promotion.kind in SUMMED and not any(
            prints[k] & prints[j] and not (
                g is not None and group_of.get(everyone[j].order) == g
                and not any(c.order in m and everyone[j].order in m for m in members[g]))
            for j in range(k + 1, len(everyone)))
        out.append(alone)
    return out


def saving(c: Candidate, amounts: list[int]) -> int:
    """The sum `_step` would allocate, for a promotion in SUMMED."""
    base = sum([amounts[i] for i in c.idx])
    saving = min(wanted(c, base), base)
    return saving if c.budget_left is None else min(saving, c.budget_left)


def exhaustive(always: Sequence[Candidate], contested: Sequence[Sequence[Sequence[Candidate]]],
               lines: Sequence[Line], cart: Cart, memo: Memo) -> tuple[Score, list[Candidate]]:
    """Every combination of one option per contested group, walked as a tree: the promotions before a choice are
    applied once for all the combinations that share them. The walk may apply promotions out of the order of
    application where that cannot change anything — a promotion only reads its own lines (and free shipping the
    fee), so two with disjoint footprints commute — and it puts the choices as late as it can."""
    group_of = {c.order: g for g, options in enumerate(contested) for option in options for c in option}
    everyone = late_choices(sorted([*always, *(c for options in contested for option in options for c in option)],
                                   key=_by_order), group_of)
    members = [[frozenset(c.order for c in option) for option in options] for options in contested]
    last = last_readers(everyone, group_of, members)
    groups = [group_of.get(c.order, -1) for c in everyone]
    # per position: the options of its group that hold it, as bits
    holding = [sum(1 << o for o, m in enumerate(members[g]) if c.order in m) if g >= 0 else 0
               for c, g in zip(everyone, groups, strict=True)]
    # per position, what taking it does: a gift adds its value; free shipping takes the fee left (at most its
    # budget); a promotion no later one reads adds its saving; any other is stepped (`step`: the same values)
    how = [GIFT if c.promotion.kind is Kind.GIFT else SHIPPING if c.promotion.kind is Kind.FREE_SHIPPING
           else SUMMED_ONLY if last[k] else STEPPED for k, c in enumerate(everyone)]
    plan = list(zip(everyone, groups, holding, how, strict=True))
    size = len(everyone)
    best: list[Score] = []

    def walk(start: int, amounts: list[int], shipping: int, benefit: int, allowed: tuple[int, ...],
             weight: int, saved: int) -> None:
        for k in range(start, size):
            c, g, hold, todo = plan[k]
            if g >= 0:
                with_c = allowed[g] & hold
                if not with_c:
                    continue
                without = allowed[g] & ~with_c
                if without:
                    walk(k + 1, amounts[:], shipping, benefit, (*allowed[:g], without, *allowed[g + 1:]), weight,
                         saved)
                    allowed = (*allowed[:g], with_c, *allowed[g + 1:])
            weight += c.weight
            if todo is STEPPED:
                per_line, ship = memo_step(c, lines, amounts, shipping, memo)
                for i, d in zip(c.idx, per_line, strict=True):
                    amounts[i] -= d
                shipping -= ship
            elif todo is SUMMED_ONLY:  # nobody reads its lines after it: only its sum matters
                saved += saving(c, amounts)
            elif todo is SHIPPING:
                budget = c.budget_left
                shipping -= shipping if budget is None or budget > shipping else budget
            else:
                benefit += c.promotion.gift_value
        score = (sum(amounts) + shipping - saved, -benefit, -weight)
        if not best or score < best[0]:
            best[:] = [score]

    walk(0, [line.amount for line in lines], cart.shipping, 0,
         tuple((1 << len(options)) - 1 for options in contested), 0, 0)
    weight = -best[0][2]
    return best[0], [c for c in everyone if c.weight & weight]


def greedy(always: list[Candidate], contested: Sequence[Sequence[list[Candidate]]], lines: Sequence[Line],
           cart: Cart, memo: Memo) -> tuple[Score, list[Candidate]]:
    """Too many combinations to try them all: decide the groups one at a time (best-ranked group first), each
    taking the option that is best given the choices before it (the groups not decided yet left out), then
    re-decide each group given all the others, for at most `GREEDY_ROUNDS` rounds or until nothing changes.
    At most (1 + GREEDY_ROUNDS) × (sum of the options) combinations are priced."""
    pick: list[int] = []
    best: tuple[Score, list[Candidate]] | None = None
    for g, options in enumerate(contested):
        decided = always + [c for h in range(g) for c in contested[h][pick[h]]]
        scores = [score_of(decided + option, lines, cart, memo) for option in options]
        pick.append(min(range(len(options)), key=lambda o: scores[o]))
    for _ in range(GREEDY_ROUNDS + 1):
        changed = False
        for g, options in enumerate(contested):
            others = always + [c for h in range(len(contested)) if h != g for c in contested[h][pick[h]]]
            scored = [(score_of(others + option, lines, cart, memo), o) for o, option in enumerate(options)]
            score, choice = min(scored)
            if choice != pick[g]:
                pick[g], changed = choice, True
            if best is None or score < best[0]:
                best = (score, others + options[choice])
        if not changed:
            break
    if best is None:  # no contested group at all
        best = (score_of(always, lines, cart, memo), list(always))
    return best


def options_of(candidates: Sequence[Candidate]) -> tuple[list[Candidate], list[list[list[Candidate]]],
                                                         list[Candidate]]:
    """(always included, per contested group its alternative option sets, exclusive ones)."""
    exclusive = [c for c in candidates if c.promotion.exclusivity is Exclusivity.EXCLUSIVE]
    groups: dict[str, list[Candidate]] = {}
    always: list[Candidate] = []
    for c in candidates:
        p = c.promotion
        if p.exclusivity is Exclusivity.EXCLUSIVE:
            continue
        if p.stacking_group is None:
            always.append(c)
        else:
            groups.setdefault(p.stacking_group, []).append(c)
    contested: list[list[list[Candidate]]] = []
    for name in sorted(groups, key=lambda g: min(c.promotion.rank() for c in groups[g])):
        members = groups[name]
        solo = [c for c in members if c.promotion.exclusivity is Exclusivity.GROUP]
        stackable = [c for c in members if c.promotion.exclusivity is Exclusivity.STACKABLE]
        if not solo:
            always += stackable
            continue
        contested.append([[c] for c in sorted(solo, key=lambda c: c.promotion.rank())] + ([stackable] if stackable
                                                                                             else []))
    return always, contested, exclusive


def ceiling(c: Candidate, lines: Sequence[Line], list_amounts: list[int] | None = None) -> int:
    """The most a promotion can take off its lines whatever was applied before it (amounts only ever fall, and
    every discount only grows with the amounts it sees). `list_amounts`: the lines' amounts at list price."""
    kind = c.promotion.kind
    if kind in SUMMED:
        top = wanted(c, c.list_base)
    elif kind is Kind.FIXED_PRICE:
        top = sum(discount(c, lines, list_amounts or [line.amount for line in lines]))
    elif kind is Kind.BUY_N_GET_M:
        top = sum([min(lines[i].amount, f * (lines[i].unit_price + 1)) for i, f in zip(c.idx, c.free_units,
                                                                                       strict=True)])
    else:
        return 0
    top = min(top, c.list_base)
    return top if c.budget_left is None else min(top, c.budget_left)


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
    prints = [(o, o.order, footprint(o)) for o in pool]
    list_amounts = [line.amount for line in lines]
    ceilings: dict[int, int] = {}
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
                room = c.list_base - want  # what the promotions before it may take at most
                for o, order, bits in prints:
                    if o is c or not bits & lines_of:
                        continue
                    if order > c.order:
                        if order in mine or order not in rivals:
                            room = -1  # read after it by a promotion taken with it
                            break
                    else:
                        top = ceilings.get(order)
                        if top is None:
                            top = ceilings[order] = ceiling(o, lines, list_amounts)
                        room -= top
                        if room < 0:
                            break
                if room < 0:
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
    merged: list[tuple[int, list[int]]] = []  # (footprint, items) of the parts so far; a new item joins every part
    for k, bits in enumerate(items):           # it overlaps (the parts of a graph: unique, whatever the order)
        joined, together = bits, [k]
        apart = []
        for part_bits, part in merged:
            if part_bits & bits:
                joined |= part_bits
                together += part
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
                     ) -> tuple[list[Candidate], list[tuple[Score, Candidate]], bool]:
    """The best valid combination of the candidates (their `order` set) without the exclusive ones, each exclusive
    one alone with its score (the caller compares them with the combination it prices in full anyway), and
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
    return list(chosen.values()), [(score_of([c], lines, cart, memo), c) for c in exclusive], complete
