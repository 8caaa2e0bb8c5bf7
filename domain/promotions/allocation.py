"""Spreading a discount over cart lines in integer cents: proportional to each line's amount, floors first, then
the remaining cents one each to the largest remainders; ties go to the earlier line (callers pass lines in a
canonical order, so the result does not depend on the order the customer listed them)."""

from __future__ import annotations

from collections.abc import Sequence


def allocate(amount: int, weights: Sequence[int]) -> list[int]:
    """`amount` split over `weights` (non-negative), summing exactly to `amount` and never above a weight.

    `amount` must not exceed the sum of the weights (a discount never exceeds what it discounts)."""
    total = sum(weights)
    if amount < 0 or min(weights, default=0) < 0:
        raise ValueError("amount and weights must be non-negative")
    if amount > total:
        raise ValueError(f"cannot allocate {amount} over a total of {total}")
    if amount == 0 or total == 0:
        return [0] * len(weights)
    if amount == total:  # every share whole: the weights themselves
        return list(weights)
    shares = [amount * w // total for w in weights]
    left = amount - sum(shares)
    if left:
        remainders = [amount * w % total for w in weights]
        # largest remainders first, ties to the earlier line (a reversed sort keeps equal keys in order)
        for i in sorted(range(len(weights)), key=remainders.__getitem__, reverse=True)[:left]:
            shares[i] += 1
    return shares
