"""Task and reward-grant state machines (seed 004's 任务状态机).

A task: draft → approved → active ⇄ paused → ended. A grant (one reward of one completion): claimable (manual
claim mode, until its window closes) → pending → issuing → issued; held while the ledger's risk controls hold
the credit for review; lapsed (a claim window closed) and failed (compensated) are final.
"""

from __future__ import annotations

from enum import StrEnum

from domain.errors import Conflict, InvalidTransition


class TaskStatus(StrEnum):
    DRAFT = "draft"
    APPROVED = "approved"
    ACTIVE = "active"
    PAUSED = "paused"
    ENDED = "ended"


_ALLOWED: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.DRAFT: frozenset({TaskStatus.APPROVED, TaskStatus.ENDED}),
    TaskStatus.APPROVED: frozenset({TaskStatus.ACTIVE, TaskStatus.DRAFT, TaskStatus.ENDED}),
    TaskStatus.ACTIVE: frozenset({TaskStatus.PAUSED, TaskStatus.ENDED}),
    TaskStatus.PAUSED: frozenset({TaskStatus.ACTIVE, TaskStatus.ENDED}),
    TaskStatus.ENDED: frozenset(),
}

EDITABLE = frozenset({TaskStatus.DRAFT})


def transition(current: TaskStatus, target: TaskStatus) -> TaskStatus:
    """The new status, or InvalidTransition naming what is allowed from here."""
    if target not in _ALLOWED[current]:
        allowed = ", ".join(sorted(_ALLOWED[current])) or "nothing (it is final)"
        raise InvalidTransition(f"A {current} task cannot become {target}; allowed from {current}: {allowed}.")
    return target


class GrantStatus(StrEnum):
    CLAIMABLE = "claimable"
    PENDING = "pending"
    ISSUING = "issuing"
    ISSUED = "issued"
    HELD = "held"
    LAPSED = "lapsed"
    FAILED = "failed"


class ClaimRefused(Conflict):
    title = "Reward cannot be claimed"


def check_claim(status: GrantStatus | None, *, expired: bool) -> None:
    """A manual claim is accepted only for a claimable reward inside its window; otherwise the reason."""
    if status is None:
        raise ClaimRefused("the contact has no reward waiting to be claimed for this task")
    if status is GrantStatus.LAPSED or (status is GrantStatus.CLAIMABLE and expired):
        raise ClaimRefused("the claim window has closed: the reward lapsed")
    if status is not GrantStatus.CLAIMABLE:
        raise ClaimRefused(f"the reward was already claimed (it is {status})")
