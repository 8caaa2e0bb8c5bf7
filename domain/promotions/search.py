"""The search for the best combination: the candidates that passed every check, one promotion's discount given
the amounts before it (`step`), and the two searches — exhaustive (a tree walk sharing work between combinations)
and greedy with a bound — over the only real choices, the mutually exclusive alternatives (`options_of`).
See pricing.py for the rules the search relies on (thresholds at list price make every discount monotone)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from domain.promotions.allocation import allocate
from domain.promotions.model import Cart, Exclusivity, Kind, Line, Promotion

EXHAUSTIVE_LIMIT = 256  # combinations; above it, the greedy search
GREEDY_ROUNDS = 2


@dataclass
class Candidate:
    promotion: Promotion
    idx: tuple[int, ...]  # the scoped lines (canonical positions)
    list_base: int  # scoped subtotal at list price
    coupon_code: str | None = None
    budget_left: int | None = None
    order: int = 0  # position in the order of application (stage, priority, id)
    free_units: tuple[int, ...] = ()  # buy N get M: units free per scoped line


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
    p = c.promotion
    if p.kind is Kind.AMOUNT_OFF:
        times = c.list_base // p.threshold if p.repeat else 1
        if p.max_applications is not None:
            times = min(times, p.max_applications)
        return p.amount * times
    if p.kind is Kind.TIERED:
        return max(t.amount for t in p.tiers if t.threshold <= c.list_base)
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
    return found


def step(c: Candidate, lines: Sequence[Line], amounts: list[int], shipping: int) -> tuple[list[int], int]:
    """(per scoped line discount, shipping discount) of one promotion, capped by what is left of its budget."""
    per_line = discount(c, lines, amounts)
    ship = shipping if c.promotion.kind is Kind.FREE_SHIPPING else 0
    if c.budget_left is not None and sum(per_line) + ship > c.budget_left:
        ship = min(ship, c.budget_left)
        per_line = allocate(c.budget_left - ship, per_line)
    return per_line, ship


def score_of(chosen: Sequence[Candidate], lines: Sequence[Line], cart: Cart,
           memo: Memo) -> tuple[int, int, tuple[int, ...]]:
    """What the search compares: (total before points, -gift value, the combination's application order)."""
    amounts = [line.amount for line in lines]
    shipping = cart.shipping
    benefit = 0
    ordered = sorted(chosen, key=lambda c: c.order)
    for c in ordered:
        per_line, ship = memo_step(c, lines, amounts, shipping, memo)
        for i, d in zip(c.idx, per_line, strict=True):
            amounts[i] -= d
        shipping -= ship
        if c.promotion.kind is Kind.GIFT:
            benefit += c.promotion.gift_value
    return sum(amounts) + shipping, -benefit, tuple(c.order for c in ordered)


Score = tuple[int, int, tuple[int, ...]]


def footprint(c: Candidate) -> int:
    """The lines a promotion reads and changes, as bits (bit 0: the shipping fee)."""
    bits = 1 if c.promotion.kind is Kind.FREE_SHIPPING else 0
    for i in c.idx:
        bits |= 2 << i
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
                lines: Sequence[Line], cart: Cart, memo: Memo) -> tuple[Score, list[Candidate]] | None:
    """Every combination of one option per contested group, walked as a tree: the promotions before a choice are
    applied once for all the combinations that share them. The walk may apply promotions out of the order of
    application where that cannot change anything — a promotion only reads its own lines (and free shipping the
    fee), so two with disjoint footprints commute — and it puts the choices as late as it can."""
    group_of = {c.order: g for g, options in enumerate(contested) for option in options for c in option}
    everyone = late_choices(sorted([*always, *(c for options in contested for option in options for c in option)],
                                    key=lambda c: c.order), group_of)
    members = [[frozenset(c.order for c in option) for option in options] for options in contested]
    best: list[tuple[Score, list[Candidate]]] = []
    last = last_readers(everyone, group_of, members)

    def walk(k: int, amounts: list[int], shipping: int, benefit: int, allowed: tuple[frozenset[int], ...],
             taken: list[Candidate], saved: int = 0) -> None:
        while k < len(everyone):
            c = everyone[k]
            k += 1
            g = group_of.get(c.order)
            if g is not None:
                with_c = frozenset(o for o in allowed[g] if c.order in members[g][o])
                if not with_c:
                    continue
                without = allowed[g] - with_c
                if without:
                    walk(k, list(amounts), shipping, benefit, allowed[:g] + (without,) + allowed[g + 1:], list(taken),
                         saved)
                    allowed = allowed[:g] + (with_c,) + allowed[g + 1:]
            taken.append(c)
            if last[k - 1]:  # nobody reads its lines after it: only its sum matters
                saved += saving(c, amounts)
                continue
            per_line, ship = memo_step(c, lines, amounts, shipping, memo)
            for i, d in zip(c.idx, per_line, strict=True):
                amounts[i] -= d
            shipping -= ship
            if c.promotion.kind is Kind.GIFT:
                benefit += c.promotion.gift_value
        total = sum(amounts) + shipping - saved
        if best and (total, -benefit) > best[0][0][:2]:
            return  # the common case: worse, and no need to build its tie-breaking key
        score = (total, -benefit, tuple(sorted(c.order for c in taken)))
        if not best or score < best[0][0]:
            best[:] = [(score, taken)]

    walk(0, [line.amount for line in lines], cart.shipping, 0,
         tuple(frozenset(range(len(options))) for options in contested), [])
    return best[0] if best else None


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


def best_combination(candidates: Sequence[Candidate], lines: Sequence[Line], cart: Cart,
                     exhaustive_limit: int = EXHAUSTIVE_LIMIT) -> tuple[list[Candidate], bool]:
    """The best valid combination of the candidates (their `order` set), before points, and whether the search
    was exhaustive. Points pay a share of what is left, so the combination that leaves least is best with them too."""
    always, contested, exclusive = options_of(candidates)
    combos = 1
    for options in contested:
        combos *= len(options)
    complete = combos + len(exclusive) <= exhaustive_limit
    memo: Memo = {}
    best = (exhaustive(always, contested, lines, cart, memo) if complete
            else greedy(always, contested, lines, cart, memo))
    for c in exclusive:
        score = score_of([c], lines, cart, memo)
        if best is None or score < best[0]:
            best = (score, [c])
    return (best[1] if best else []), complete
