"""The search for the best combination: the candidates that passed every check, one promotion's discount given
the amounts before it (`step`), the most it can take whatever came before (`ceiling`), and the two searches over
the mutually exclusive alternatives of one part (choices.py splits them) — exhaustive (a tree walk sharing work
between combinations, pruned by a bound on what the promotions left can still take) and greedy.
See pricing.py for the rules the search relies on (thresholds at list price make every discount monotone)."""

from __future__ import annotations

from bisect import insort
from collections.abc import Sequence
from dataclasses import dataclass

from domain.promotions.allocation import allocate
from domain.promotions.model import Cart, Exclusivity, Kind, Line, Promotion

# The members of Kind and Exclusivity bound to names once: looking one up on its Enum class (`Kind.GIFT`) costs
# about 0.1 µs on Python 3.11, and a quote makes hundreds of such checks.
AMOUNT_OFF, TIERED, PERCENT_OFF = Kind.AMOUNT_OFF, Kind.TIERED, Kind.PERCENT_OFF
FIXED_PRICE, BUY_N_GET_M, GIFT = Kind.FIXED_PRICE, Kind.BUY_N_GET_M, Kind.GIFT
FREE_SHIPPING, POINTS = Kind.FREE_SHIPPING, Kind.POINTS
STACKABLE, GROUP, EXCLUSIVE = Exclusivity.STACKABLE, Exclusivity.GROUP, Exclusivity.EXCLUSIVE

EXHAUSTIVE_LIMIT = 256  # combinations; above it, the greedy search
GREEDY_ROUNDS = 2
# how the walk takes a promotion (`exhaustive`)
ADDS_GIFT, TAKES_FEE, SUM_ONLY, STEPPED = "adds a gift", "takes the fee", "sum only", "stepped"


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
    top: int = -1  # the most it can take whatever was applied before it (`ceiling`), once worked out


def free_units(p: Promotion, lines: Sequence[Line], idx: Sequence[int]) -> tuple[int, ...]:
    """Buy N get M: in each group of N + M scoped units, dearest first by *list* price, the M cheapest are free.
    Chosen by list price, the free units do not move when an earlier promotion changes amounts, so the discount of
    every line only ever grows with its own amount (what keeps the engine monotone)."""
    size = p.buy + p.get
    groups = sum(lines[i].quantity for i in idx) // size
    if p.max_applications is not None:
        groups = min(groups, p.max_applications)
    end = groups * size
    buy, get = p.buy, p.get
    free = [0] * len(idx)
    position = freed = 0  # units placed so far (dearest first), and the free ones among them
    for k in sorted(range(len(idx)), key=lambda k: -lines[idx[k]].unit_price):  # stable: ties keep their order
        position = min(position + lines[idx[k]].quantity, end)
        now = position // size * get + max(0, position % size - buy)  # free among the first `position` units
        free[k] = now - freed
        freed = now
        if position == end:
            break
    return tuple(free)


def wanted(c: Candidate, base: int) -> int:
    """What an amount, tiered or percent off promotion takes from `base` (its lines' current amounts), before the
    cap at `base`: tiers and repeats go by the list-price subtotal."""
    if c.fixed >= 0:
        return c.fixed
    p = c.promotion
    if p.kind is AMOUNT_OFF:
        times = c.list_base // p.threshold if p.repeat else 1
        if p.max_applications is not None:
            times = min(times, p.max_applications)
        c.fixed = p.amount * times
        return c.fixed
    if p.kind is TIERED:
        c.fixed = max(t.amount for t in p.tiers if t.threshold <= c.list_base)
        return c.fixed
    wanted = base * p.percent // 100
    return wanted if p.cap is None else min(wanted, p.cap)


def discount(candidate: Candidate, lines: Sequence[Line], amounts: list[int]) -> list[int]:
    """One promotion's discount on each of its scoped lines (aligned with `candidate.idx`), given the amounts
    left by those applied before it."""
    p, idx = candidate.promotion, candidate.idx
    kind = p.kind
    if kind is AMOUNT_OFF or kind is TIERED or kind is PERCENT_OFF:
        scoped = [amounts[i] for i in idx]
        base = sum(scoped)
        return allocate(min(wanted(candidate, base), base), scoped)
    if kind is FIXED_PRICE:
        out = []
        left = p.max_applications
        for i in idx:
            quantity = lines[i].quantity
            count = quantity if left is None else max(0, min(quantity, left))
            if left is not None:
                left -= count
            out.append(max(0, amounts[i] * count // quantity - p.price * count))
        return out
    if kind is BUY_N_GET_M:
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
    """`step`, remembered by what it depends on (the amounts of its own lines, and shipping): the combinations the
    search compares share most of their steps."""
    key = (c.order, shipping if c.promotion.kind is FREE_SHIPPING else 0, tuple([amounts[i] for i in c.idx]))
    found = memo.get(key)
    if found is None:
        found = memo[key] = step(c, lines, amounts, shipping)
        c.remembered = True
    return found


def step(c: Candidate, lines: Sequence[Line], amounts: list[int], shipping: int) -> tuple[list[int], int]:
    """(per scoped line discount, shipping discount) of one promotion, capped by what is left of its budget."""
    per_line = discount(c, lines, amounts)
    ship = shipping if c.promotion.kind is FREE_SHIPPING else 0
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
    for c in sorted(chosen, key=by_order):
        weight += c.weight
        kind = c.promotion.kind
        if kind is GIFT:  # nothing off (`step` gives zeros)
            benefit += c.promotion.gift_value
        elif kind is FREE_SHIPPING:  # the fee left, at most the budget (`step`, without the lines' zeros)
            shipping -= shipping if c.budget_left is None else min(shipping, c.budget_left)
        else:
            per_line, ship = memo_step(c, lines, amounts, shipping, memo)
            for i, d in zip(c.idx, per_line, strict=True):
                amounts[i] -= d
            shipping -= ship
    return sum(amounts) + shipping, -benefit, -weight


def by_order(c: Candidate) -> int:
    return c.order


def footprint(c: Candidate) -> int:
    """What a promotion reads and changes, as bits (bit 0: the shipping fee; bit i + 1: line i). Free shipping
    only touches the fee and a gift nothing: their thresholds are met at list price."""
    if c.bits >= 0:
        return c.bits
    kind = c.promotion.kind
    bits = 0
    if kind is FREE_SHIPPING:
        bits = 1
    elif kind is not GIFT:
        for i in c.idx:
            bits |= 2 << i
    c.bits = bits
    return bits


def late_choices(ordered: list[Candidate], group_of: dict[int, int]) -> list[Candidate]:
    """`ordered` (the order of application) rearranged so that promotions outside any choice come as early as they
    may: one only moves ahead of promotions whose footprint it does not share. In waves: every promotion outside a
    choice whose earlier sharers are all placed, in order; when there is none, the first such promotion of a
    choice."""
    size = len(ordered)
    prints = [footprint(c) for c in ordered]
    waiting = [0] * size  # per position: the earlier ones sharing its footprint not placed yet
    later: list[list[int]] = [[] for _ in range(size)]  # per position: the later ones sharing its footprint
    for k, bits in enumerate(prints):
        if bits:
            for j in range(k):
                if prints[j] & bits:
                    later[j].append(k)
                    waiting[k] += 1
    grouped = [c.order in group_of for c in ordered]
    wave = [k for k in range(size) if not waiting[k] and not grouped[k]]
    held = [k for k in range(size) if not waiting[k] and grouped[k]]  # choices free to go, in order
    out: list[Candidate] = []
    while wave or held:
        placed = wave or [held.pop(0)]
        wave = []
        for k in placed:
            out.append(ordered[k])
            for j in later[k]:
                waiting[j] -= 1
                if not waiting[j]:
                    if grouped[j]:
                        insort(held, j)
                    else:
                        wave.append(j)
        wave.sort()
    return out


SUMMED = (AMOUNT_OFF, TIERED, PERCENT_OFF)
FIXED = (AMOUNT_OFF, TIERED)  # what they want does not depend on the amounts before them


def last_readers(everyone: Sequence[Candidate], group_of: dict[int, int], option_of: dict[int, int]) -> list[bool]:
    """Per position of the walk: a promotion whose discount is a plain sum (amount, tiered, percent off) and whose
    lines no later promotion that can be taken with it (not another option of its group) reads — the search needs
    its sum, not its allocation."""
    prints = [footprint(c) for c in everyone]
    out = []
    for k, c in enumerate(everyone):
        g = group_of.get(c.order)
        o = option_of.get(c.order)
        alone = c.promotion.kind in SUMMED and not any(
            prints[k] & prints[j] and not (
                g is not None and group_of.get(everyone[j].order) == g and option_of[everyone[j].order] != o)
            for j in range(k + 1, len(everyone)))
        out.append(alone)
    return out


def saving(c: Candidate, amounts: list[int]) -> int:
    """The sum `step` would allocate, for a promotion in SUMMED."""
    base = sum([amounts[i] for i in c.idx])
    saving = min(wanted(c, base), base)
    return saving if c.budget_left is None else min(saving, c.budget_left)


def exhaustive(always: Sequence[Candidate], contested: Sequence[Sequence[Sequence[Candidate]]],
               lines: Sequence[Line], cart: Cart, memo: Memo) -> tuple[Score, list[Candidate]]:
    """Every combination of one option per contested group, walked as a tree: the promotions before a choice are
    applied once for all the combinations that share them. The walk may apply promotions out of the order of
    application where that cannot change anything — a promotion only reads its own lines (and free shipping the
    fee), so two with disjoint footprints commute — and it puts the choices as late as it can. A group's options
    are tried at its first member; one is not walked when the total so far, less the most the promotions left
    could take (`ceiling`), is already above the best total found (only strictly: every combination has its own
    score, the lowest wins, so leaving out what cannot be lowest never changes the winner)."""
    group_of: dict[int, int] = {}  # per promotion of a choice (by order): its group, and its option in the group
    option_of: dict[int, int] = {}
    pool = list(always)
    for g, options in enumerate(contested):
        for o, option in enumerate(options):
            for c in option:
                group_of[c.order] = g
                option_of[c.order] = o
                pool.append(c)
    everyone = late_choices(sorted(pool, key=by_order), group_of)
    last = last_readers(everyone, group_of, option_of)
    size = len(everyone)
    list_amounts = [line.amount for line in lines]
    # per position: its group (-1: none); the most it can take off the lines and off the shipping fee; what taking
    # it does — a gift adds its value, free shipping takes the fee left (at most its budget), a promotion no later
    # one reads adds its saving, any other is stepped (`step`: the same values)
    groups, tops, fees, how = [], [], [], []
    # per group and option: the most its members can take, and the positions of the group's other members (left out
    # when it is taken); per group, the most any option can take
    option_tops = [[0] * len(options) for options in contested]
    option_fees = [[0] * len(options) for options in contested]
    held = [[0] * len(options) for options in contested]
    for k, c in enumerate(everyone):
        g = group_of.get(c.order, -1)
        kind = c.promotion.kind
        top = ceiling(c, lines, list_amounts)
        fee = fee_ceiling(c, cart.shipping)
        groups.append(g)
        tops.append(top)
        fees.append(fee)
        how.append(ADDS_GIFT if kind is GIFT else TAKES_FEE if kind is FREE_SHIPPING else SUM_ONLY if last[k]
                   else STEPPED)
        if g >= 0:
            o = option_of[c.order]
            option_tops[g][o] += top
            option_fees[g][o] += fee
            held[g][o] |= 1 << k
    drop = [[sum(bits) & ~mine for mine in bits] for bits in held]
    most_tops = [max(t) for t in option_tops]
    most_fees = [max(f) for f in option_fees]
    # the most promising option first: a good total found early leaves more out
    tries = [sorted(range(len(t)), key=[-a - b for a, b in zip(t, f, strict=True)].__getitem__)
             for t, f in zip(option_tops, option_fees, strict=True)]
    plan = list(zip(everyone, groups, how, tops, fees, strict=True))
    best: list[Score] = []

    def walk(start: int, amounts: list[int], shipping: int, total: int, benefit: int, weight: int, off: int,
             decided: int, rest_tops: int, rest_fees: int) -> None:
        for k in range(start, size):
            if off >> k & 1:  # a member of an option not taken
                continue
            c, g, todo, top, fee = plan[k]
            if g >= 0 and not decided >> g & 1:  # the group's first member: one branch per option
                decided |= 1 << g
                other_tops, other_fees = rest_tops - most_tops[g], rest_fees - most_fees[g]
                order = tries[g]
                for o in order:
                    with_tops, with_fees = other_tops + option_tops[g][o], other_fees + option_fees[g][o]
                    if best and total - with_tops - min(with_fees, shipping) > best[0][0]:
                        if o == order[-1]:
                            return
                        continue
                    if o != order[-1]:
                        walk(k, amounts[:], shipping, total, benefit, weight, off | drop[g][o], decided, with_tops,
                             with_fees)
                        continue
                    off |= drop[g][o]
                    rest_tops, rest_fees = with_tops, with_fees
                if off >> k & 1:
                    continue
            rest_tops -= top
            rest_fees -= fee
            weight += c.weight
            if todo is STEPPED:
                per_line, ship = memo_step(c, lines, amounts, shipping, memo)
                for i, d in zip(c.idx, per_line, strict=True):
                    amounts[i] -= d
                shipping -= ship
                total -= sum(per_line) + ship
            elif todo is SUM_ONLY:  # nobody reads its lines after it: only its sum matters
                total -= saving(c, amounts)
            elif todo is TAKES_FEE:
                budget = c.budget_left
                ship = shipping if budget is None or budget > shipping else budget
                shipping -= ship
                total -= ship
            else:
                benefit += c.promotion.gift_value
        score = (total, -benefit, -weight)
        if not best or score < best[0]:
            best[:] = [score]

    amounts = [line.amount for line in lines]
    walk(0, amounts, cart.shipping, sum(amounts) + cart.shipping, 0, 0, 0, 0,
         sum(t for t, g in zip(tops, groups, strict=True) if g < 0) + sum(most_tops),
         sum(f for f, g in zip(fees, groups, strict=True) if g < 0) + sum(most_fees))
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


def ceiling(c: Candidate, lines: Sequence[Line], list_amounts: list[int]) -> int:
    """The most a promotion can take off its lines whatever was applied before it (amounts only ever fall, and
    every discount only grows with the amounts it sees). `list_amounts`: the lines' amounts at list price."""
    if c.top >= 0:
        return c.top
    kind = c.promotion.kind
    if kind in SUMMED:
        top = wanted(c, c.list_base)
    elif kind is FIXED_PRICE:
        top = sum(discount(c, lines, list_amounts))
    elif kind is BUY_N_GET_M:
        top = 0
        for i, f in zip(c.idx, c.free_units, strict=True):
            line = lines[i]
            top += min(line.unit_price * line.quantity, f * (line.unit_price + 1))
    else:
        top = 0
    top = min(top, c.list_base)
    c.top = top if c.budget_left is None else min(top, c.budget_left)
    return c.top


def fee_ceiling(c: Candidate, shipping: int) -> int:
    """The most a promotion can take off the shipping fee `shipping`: all of it (at most the budget) for free
    shipping, nothing for any other."""
    if c.promotion.kind is not FREE_SHIPPING:
        return 0
    return shipping if c.budget_left is None else min(shipping, c.budget_left)
