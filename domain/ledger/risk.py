"""Risk controls on points (seed 004's 风控): a blocklist, velocity limits per contact, device and IP on
credits and redemptions, and a review state for suspicious credits. Pure: the store counts, this judges.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from domain.errors import DomainError


class Dimension(StrEnum):
    CONTACT = "contact"
    DEVICE = "device"
    IP = "ip"


class Verdict(StrEnum):
    ALLOW = "allow"
    REVIEW = "review"  # credits only: held until someone releases or rejects them
    REFUSE = "refuse"


class Blocked(DomainError):
    status = 403
    title = "Blocked by risk controls"


class VelocityExceeded(DomainError):
    status = 429
    title = "Velocity limit reached"


@dataclass(frozen=True)
class VelocityRule:
    id: int
    action: str  # "credit" or "redeem"
    dimension: Dimension
    window_seconds: int
    max_count: int | None
    max_amount: int | None
    verdict: Verdict


@dataclass(frozen=True)
class Usage:
    """What a subject already did inside a rule's window."""

    count: int = 0
    amount: int = 0


def subjects(contact_id: int, device: str | None, ip: str | None) -> dict[Dimension, str]:
    found = {Dimension.CONTACT: str(contact_id)}
    if device:
        found[Dimension.DEVICE] = device
    if ip:
        found[Dimension.IP] = ip
    return found


def judge(rules: Iterable[VelocityRule], usage: Mapping[int, Usage], amount: int,
          blocked: Iterable[tuple[Dimension, str]] = ()) -> tuple[Verdict, str]:
    """The strictest verdict any blocklist entry or rule gives this action, with the reason."""
    for dimension, value in blocked:
        return Verdict.REFUSE, f"{dimension} {value!r} is on the blocklist"
    verdict, reason = Verdict.ALLOW, ""
    for rule in rules:
        used = usage.get(rule.id, Usage())
        over = []
        if rule.max_count is not None and used.count + 1 > rule.max_count:
            over.append(f"more than {rule.max_count} {rule.action}s")
        if rule.max_amount is not None and used.amount + amount > rule.max_amount:
            over.append(f"more than {rule.max_amount} points")
        if not over:
            continue
        said = f"{' and '.join(over)} per {rule.dimension} in {rule.window_seconds} s (rule {rule.id})"
        if rule.verdict is Verdict.REFUSE:
            return Verdict.REFUSE, said
        verdict, reason = Verdict.REVIEW, said
    return verdict, reason


def refusal(reason: str) -> DomainError:
    return Blocked(reason) if "blocklist" in reason else VelocityExceeded(reason)
