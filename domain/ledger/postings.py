"""Points ledger rules: balanced postings, monthly buckets spent oldest-first, expiry, holds, rollups.

Pure values in, values out. The store applies the `Plan` a request produces to locked rows; the
property tests replay random sequences of plans through `Book` and check the invariants the
reconciliation checks in SQL: balance = opening + sum of entries = sum of buckets, never negative.

Expiry is a rule of every plan, not only of the sweep, with the clock (`today`) as an input: points are
earned only into a month that has started and has not expired; a spend takes only buckets still spendable;
and points never enter a bucket past its expiry (a hold voided late, or a merge, expires those parts at
once). The sweep (domain/ledger/operations.py) then only moves out what is already unspendable.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

from domain.errors import Conflict, DomainError

Month = int  # months since year 0: year * 12 + (month - 1); orderable, easy to add to
Buckets = Mapping[Month, int]

USER = "user"  # the contact's own account; every other account is a program's system account


class SystemAccount(StrEnum):
    ISSUANCE = "issuance"      # where credits come from (its balance is minus the points issued)
    REDEMPTION = "redemption"  # where spent points go
    HOLDS = "holds"            # points reserved by pending holds
    EXPIRY = "expiry"          # points that expired
    ADJUSTMENT = "adjustment"  # manual and reconciliation corrections
    BREAKAGE = "breakage"      # points written off (closed accounts)
    TRANSFER = "transfer"      # points between two user accounts (an identity merge); nets to zero


class Kind(StrEnum):
    CREDIT = "credit"  # issuance → user, into the bucket of the earned month
    DEBIT = "debit"    # user → redemption, oldest buckets first
    HOLD = "hold"      # user → holds, taking exact buckets (reserve)
    COMMIT = "commit"  # holds → redemption (the reserved points are spent)
    VOID = "void"      # holds → user, giving back exactly the buckets the hold took
    EXPIRE = "expire"  # user → expiry, what remains in the named due buckets
    ADJUST = "adjust"  # adjustment ⇄ user, signed
    FORFEIT = "forfeit"  # user → breakage, everything that remains (an erased or closed account)
    MERGE_OUT = "merge_out"  # user → transfer, exactly the named buckets (a contact merged away)
    MERGE_IN = "merge_in"    # transfer → user, into the named months' buckets (the surviving contact)


class InsufficientPoints(DomainError):
    title = "Insufficient points"


class ReferenceConflict(Conflict):
    title = "Reference already used"


class UnbalancedPosting(DomainError):
    title = "Unbalanced posting"


class MonthNotOpen(DomainError):
    """Points earned into a month that has not started, or whose points have already expired."""

    title = "Month not open for earning"


class HoldNotPending(Conflict):
    title = "Hold is not pending"


def month_of(moment: date | datetime) -> Month:
    return moment.year * 12 + moment.month - 1


def month_label(month: Month) -> str:
    return f"{month // 12:04d}-{month % 12 + 1:02d}"


def parse_month(label: str) -> Month:
    try:
        year, month = (int(p) for p in label.split("-"))
    except ValueError as exc:
        raise DomainError(f"month {label!r} must look like 2025-03") from exc
    if not 1 <= month <= 12 or not 1970 <= year <= 9999:
        raise DomainError(f"month {label!r} must look like 2025-03")
    return year * 12 + month - 1


def month_start(month: Month) -> date:
    return date(month // 12, month % 12 + 1, 1)


@dataclass(frozen=True)
class ExpiryPolicy:
    """Points earned in month M expire at the end of month M + `months` (None: they never expire)."""

    months: int | None = None

    def last_month(self, earned: Month) -> Month | None:
        return None if self.months is None else earned + self.months

    def is_due(self, earned: Month, today: Month) -> bool:
        last = self.last_month(earned)
        return last is not None and today > last

    def due(self, buckets: Buckets, today: Month) -> dict[Month, int]:
        return {m: r for m, r in sorted(buckets.items()) if r > 0 and self.is_due(m, today)}

    def expiring_soon(self, buckets: Buckets, today: Month, within_months: int = 1) -> int:
        """What expires at the end of this month (or of the next `within_months` − 1 months too)."""
        horizon = today + within_months - 1
        return sum(r for m, r in buckets.items()
                   if r > 0 and (last := self.last_month(m)) is not None and today <= last <= horizon)

    def spendable(self, buckets: Buckets, today: Month) -> dict[Month, int]:
        """The buckets that can still be spent today: everything not yet due, whether or not a sweep ran."""
        return {m: r for m, r in sorted(buckets.items()) if r > 0 and not self.is_due(m, today)}

    def split(self, parts: Buckets, today: Month) -> tuple[dict[Month, int], dict[Month, int]]:
        """Parts of buckets as (still spendable, past their expiry)."""
        live = self.spendable(parts, today)
        return live, {m: r for m, r in sorted(parts.items()) if r > 0 and m not in live}

    def check_earning(self, earned: Month, today: Month) -> None:
        """Points may be earned into a month that has started and whose points have not expired: a later month
        would expire later than the policy allows, an expired one would never be spendable."""
        if earned > today:
            raise MonthNotOpen(f"{month_label(earned)} has not started (this is {month_label(today)}): points "
                               "are earned only into a month that has begun")
        if self.months is not None and today > earned + self.months:
            rule = ("at the end of the month they are earned" if self.months == 0
                    else f"{self.months} month{'s' if self.months > 1 else ''} after the month they are earned")
            raise MonthNotOpen(
                f"points earned in {month_label(earned)} expired at the end of {month_label(earned + self.months)} "
                f"(this program's points expire {rule}); months open for earning are "
                f"{month_label(today - self.months)} to {month_label(today)}")


def add(buckets: Buckets, delta: Mapping[Month, int]) -> dict[Month, int]:
    """Buckets plus a signed per-month delta; emptied buckets disappear."""
    out = dict(buckets)
    for month, amount in delta.items():
        out[month] = out.get(month, 0) + amount
        if out[month] < 0:
            raise InsufficientPoints(f"bucket {month_label(month)} would go negative")
        if out[month] == 0:
            del out[month]
    return out


def take(buckets: Buckets, amount: int) -> dict[Month, int]:
    """Which buckets `amount` comes out of, oldest first. Raises if the buckets hold less."""
    if amount <= 0:
        raise DomainError("amount must be a positive integer")
    taken: dict[Month, int] = {}
    left = amount
    for month in sorted(buckets):
        if left == 0:
            break
        part = min(buckets[month], left)
        if part > 0:
            taken[month] = part
            left -= part
    if left:
        raise InsufficientPoints(f"needs {amount} points, the account has {amount - left}")
    return taken


def negate(delta: Mapping[Month, int]) -> dict[Month, int]:
    return {m: -a for m, a in delta.items()}


@dataclass(frozen=True)
class Entry:
    """One side of a posting: `amount` > 0 raises the account's balance, < 0 lowers it."""

    account: str
    amount: int


def check_balanced(entries: Iterable[Entry]) -> None:
    entries = list(entries)
    if len(entries) < 2 or sum(e.amount for e in entries) != 0 or any(e.amount == 0 for e in entries):
        raise UnbalancedPosting("a posting needs at least two non-zero entries that sum to zero")


@dataclass(frozen=True)
class Request:
    """What a caller asks the ledger to do, identified by a reference unique within the program."""

    reference: str
    kind: Kind
    contact_id: int
    amount: int = 0                       # credit/debit/hold: > 0; adjust: signed; others: ignored
    earned_month: Month | None = None     # credit/positive adjust: the bucket (default: this month)
    months: tuple[Month, ...] = ()        # expire: the due buckets to empty
    hold_reference: str | None = None     # commit/void: the hold's reference
    hold_seconds: int | None = None       # hold: how long until the hold times out
    parts: tuple[tuple[Month, int], ...] = ()  # merge_out/merge_in: (earned month, points) moved
    memo: str | None = None

    def validate(self) -> None:
        if not self.reference or len(self.reference) > 200:
            raise DomainError("reference must be 1 to 200 characters")
        if self.kind in (Kind.CREDIT, Kind.DEBIT, Kind.HOLD) and self.amount <= 0:
            raise DomainError(f"a {self.kind} needs a positive integer amount")
        if self.kind is Kind.ADJUST and self.amount == 0:
            raise DomainError("an adjustment needs a non-zero amount")
        if self.kind in (Kind.COMMIT, Kind.VOID) and not self.hold_reference:
            raise DomainError(f"a {self.kind} names the hold_reference it settles")
        if self.kind is Kind.EXPIRE and not self.months:
            raise DomainError("an expiry names the months it empties")
        if self.kind in (Kind.MERGE_OUT, Kind.MERGE_IN) and (
                not self.parts or any(a <= 0 for _, a in self.parts)
                or len({m for m, _ in self.parts}) != len(self.parts)):
            raise DomainError(f"a {self.kind} names each month it moves once, with a positive amount")

    def fingerprint(self) -> str:
        """Same reference, same fingerprint: a replay. Different fingerprint: a conflict."""
        content: list[object] = [self.kind.value, self.contact_id, self.amount, self.earned_month,
                                 sorted(self.months), self.hold_reference]
        if self.parts:  # only then: fingerprints of postings made before `parts` existed stay the same
            content.append(sorted(self.parts))
        return hashlib.sha256(json.dumps(content).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Plan:
    """The entries of one posting and what it does to the user's buckets."""

    entries: tuple[Entry, ...]
    buckets: dict[Month, int] = field(default_factory=dict)  # signed delta to the user's buckets
    taken: dict[Month, int] = field(default_factory=dict)    # for a hold: exactly what it reserved

    @property
    def user_delta(self) -> int:
        return sum(e.amount for e in self.entries if e.account == USER)


def _pair(source: str, target: str, amount: int) -> tuple[Entry, ...]:
    return (Entry(source, -amount), Entry(target, amount))


def _split_entries(source: tuple[str, int], live: tuple[str, int], dead: tuple[str, int]) -> tuple[Entry, ...]:
    """One side out of `source`, into `live` and `dead` (either may be empty: no zero entries)."""
    return tuple(Entry(a, n) for a, n in (source, live, dead) if n)


def plan(request: Request, buckets: Buckets, today: Month, hold: Mapping[Month, int] | None = None, *,
         policy: ExpiryPolicy) -> Plan:
    """The posting a request makes against the user's current buckets (and the hold's taken buckets), on `today`
    under the program's expiry `policy`."""
    request.validate()
    kind, amount = request.kind, request.amount
    if kind is Kind.CREDIT or (kind is Kind.ADJUST and amount > 0):
        source = SystemAccount.ISSUANCE if kind is Kind.CREDIT else SystemAccount.ADJUSTMENT
        month = today if request.earned_month is None else request.earned_month
        policy.check_earning(month, today)
        return Plan(_pair(source, USER, amount), {month: amount})
    if kind in (Kind.DEBIT, Kind.HOLD) or kind is Kind.ADJUST:
        target = {Kind.DEBIT: SystemAccount.REDEMPTION,
                  Kind.HOLD: SystemAccount.HOLDS}.get(kind, SystemAccount.ADJUSTMENT)
        spendable = policy.spendable(buckets, today)
        if abs(amount) > (has := sum(spendable.values())):
            expired = sum(policy.due(buckets, today).values())
            raise InsufficientPoints(f"needs {abs(amount)} points, the account has {has} spendable"
                                     + (f" ({expired} more are past their expiry)" if expired else ""))
        taken = take(spendable, abs(amount))
        return Plan(_pair(USER, target, abs(amount)), negate(taken), taken if kind is Kind.HOLD else {})
    if kind in (Kind.COMMIT, Kind.VOID):
        if hold is None:
            raise HoldNotPending(f"hold {request.hold_reference!r} is not pending")
        held = sum(hold.values())
        if kind is Kind.COMMIT:
            # The hold reserved these points while they were spendable: committing it spends them even if
            # their month has ended since (an order placed at 23:59 on the last day completes).
            return Plan(_pair(SystemAccount.HOLDS, SystemAccount.REDEMPTION, held))
        # Given back, points past their expiry would sit in a bucket the sweep already emptied: they expire now.
        live, dead = policy.split(hold, today)
        entries = _split_entries((SystemAccount.HOLDS, -held), (USER, sum(live.values())),
                                 (SystemAccount.EXPIRY, sum(dead.values())))
        return Plan(entries, live)
    if kind is Kind.EXPIRE:
        due = {m: buckets[m] for m in sorted(set(request.months))
               if buckets.get(m, 0) > 0 and policy.is_due(m, today)}
        total = sum(due.values())
        if total == 0:
            return Plan(())  # nothing left to expire: an empty posting still records the reference
        return Plan(_pair(USER, SystemAccount.EXPIRY, total), negate(due))
    if kind is Kind.FORFEIT:
        # Holds are not touched: void them first, or their points stay reserved (and still owed).
        remaining = {m: r for m, r in sorted(buckets.items()) if r > 0}
        total = sum(remaining.values())
        if total == 0:
            return Plan(())  # an empty account: the reference still records that it was closed
        return Plan(_pair(USER, SystemAccount.BREAKAGE, total), negate(remaining))
    if kind in (Kind.MERGE_OUT, Kind.MERGE_IN):
        # The two halves of moving buckets between contacts, month for month, so expiry dates do not change.
        # Only what is spendable moves: parts past their expiry leave the merged-away account for the expiry
        # account (the survivor's bucket of that month may have been swept already). Both halves are planned
        # on the same day from the same parts, so the transfer account still nets to zero.
        moved = dict(request.parts)
        live, dead = policy.split(moved, today)
        if kind is Kind.MERGE_IN:
            total = sum(live.values())
            return Plan(_pair(SystemAccount.TRANSFER, USER, total), live) if total else Plan(())
        add(buckets, negate(moved))  # raises unless every named bucket holds its part
        entries = _split_entries((USER, -sum(moved.values())), (SystemAccount.TRANSFER, sum(live.values())),
                                 (SystemAccount.EXPIRY, sum(dead.values())))
        return Plan(entries, negate(moved))
    raise DomainError(f"unknown posting kind {kind!r}")


@dataclass(frozen=True)
class Rollup:
    """Detail older than the retention window, summed per posted month."""

    month: Month
    credited: int
    debited: int

    @property
    def net(self) -> int:
        return self.credited - self.debited


def rollup(amounts_by_month: Iterable[tuple[Month, int]],
           cutoff: Month) -> tuple[list[Rollup], list[tuple[Month, int]]]:
    """Split entries (posted month, signed amount) into rollups before `cutoff` and the detail kept."""
    sums: dict[Month, list[int]] = {}
    kept: list[tuple[Month, int]] = []
    for month, amount in amounts_by_month:
        if month >= cutoff:
            kept.append((month, amount))
            continue
        pair = sums.setdefault(month, [0, 0])
        pair[0 if amount > 0 else 1] += abs(amount)
    return [Rollup(m, c, d) for m, (c, d) in sorted(sums.items())], kept


@dataclass
class Book:
    """One user account in memory: the reference model the store must agree with."""

    policy: ExpiryPolicy = field(default_factory=ExpiryPolicy)
    buckets: dict[Month, int] = field(default_factory=dict)
    entries: list[tuple[Month, int]] = field(default_factory=list)  # (posted month, signed amount)
    opening: int = 0
    rollups: list[Rollup] = field(default_factory=list)
    holds: dict[str, dict[Month, int]] = field(default_factory=dict)
    balance: int = 0
    system: dict[str, int] = field(default_factory=dict)

    def apply(self, request: Request, today: Month) -> Plan:
        hold = self.holds.get(request.hold_reference or "")
        result = plan(request, self.buckets, today, hold, policy=self.policy)
        check_balanced(result.entries) if result.entries else None
        self.buckets = add(self.buckets, result.buckets)
        for entry in result.entries:
            if entry.account == USER:
                self.entries.append((today, entry.amount))
            else:
                self.system[entry.account] = self.system.get(entry.account, 0) + entry.amount
        self.balance += result.user_delta
        if request.kind is Kind.HOLD:
            self.holds[request.reference] = result.taken
        elif request.kind in (Kind.COMMIT, Kind.VOID):
            del self.holds[request.hold_reference or ""]
        return result

    def roll_up(self, cutoff: Month) -> None:
        rolled, self.entries = rollup(self.entries, cutoff)
        self.rollups += rolled
        self.opening += sum(r.net for r in rolled)
