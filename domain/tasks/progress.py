"""How matched behaviour advances a task: progress within a period, completions under the per-period threshold
and the lifetime cap, streaks (rising rewards, reset by a missed period), ladders (tiers within a period) and
composite tasks (steps in order). Pure: the store locks the rows, calls `advance` once per (task, contact,
period) touched by a batch, and writes the results back in one statement per table.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import IntEnum, StrEnum


class TaskKind(StrEnum):
    SIMPLE = "simple"        # every `num` units → `reward_count`
    STREAK = "streak"        # `num` units in consecutive periods; day n of the streak earns streak_rewards[n-1]
    LADDER = "ladder"        # tiers within a period: reaching tier i's num earns tier i's reward, once
    COMPOSITE = "composite"  # the `steps` actions in order (B then C) complete it


class ProgressStatus(IntEnum):
    """Seed 001's 任务推进状态, extended with what a manual claim adds."""

    INITIAL = 0
    IN_PROGRESS = 1
    COMPLETED = 2
    CLAIMED = 3
    LAPSED = 4


@dataclass(frozen=True)
class Rule:
    kind: TaskKind
    num: int
    reward_count: int
    threshold: int | None = None       # completions per period; None: no limit
    lifetime_cap: int | None = None    # completions over the task's life per contact; None: no limit
    streak_rewards: tuple[int, ...] = ()
    ladder: tuple[tuple[int, int], ...] = ()   # (num, reward), ascending num
    steps: tuple[str, ...] = ()                # composite: the actions, in order


@dataclass(frozen=True)
class Slot:
    """One progress row: a contact's state in one period of one task."""

    progress: int = 0
    completions: int = 0
    stage: int = 0  # composite: the next step expected

    def status(self, rule: Rule, participant: Participant) -> ProgressStatus:
        if self.completions and not can_complete_more(rule, self, participant):
            return ProgressStatus.COMPLETED
        return ProgressStatus.IN_PROGRESS if self.progress or self.completions or self.stage else \
            ProgressStatus.INITIAL


@dataclass(frozen=True)
class Participant:
    """A contact's state across the periods of one task."""

    lifetime: int = 0          # completions so far
    streak: int = 0            # consecutive periods completed, ending at last_key
    last_key: str | None = None


@dataclass(frozen=True)
class Reward:
    n: int       # the completion's number within its period (the last part of the reward reference)
    amount: int


def per_period_max(rule: Rule) -> int | None:
    if rule.kind is TaskKind.STREAK:
        return 1
    if rule.kind is TaskKind.LADDER:
        return len(rule.ladder) if rule.threshold is None else min(rule.threshold, len(rule.ladder))
    return rule.threshold


def can_complete_more(rule: Rule, slot: Slot, participant: Participant) -> bool:
    cap = per_period_max(rule)
    if cap is not None and slot.completions >= cap:
        return False
    return rule.lifetime_cap is None or participant.lifetime < rule.lifetime_cap


def advance(rule: Rule, slot: Slot, participant: Participant, key: str, previous_key: str | None,
            steps: Sequence[tuple[str, int]]) -> tuple[Slot, Participant, list[Reward]]:
    """Apply the matched events of one period (action, increment), in order. Returns the new slot, the new
    participant and the rewards the new completions earn; thresholds and the lifetime cap are never exceeded,
    however many events arrive at once."""
    if rule.kind is TaskKind.COMPOSITE:
        return _composite(rule, slot, participant, steps)
    total = slot.progress + sum(max(0, amount) for _, amount in steps)
    if rule.kind is TaskKind.LADDER:
        reached = sum(1 for need, _ in rule.ladder if total >= need)
        wanted = reached
    else:
        wanted = total // rule.num if rule.num > 0 else 0
    cap = per_period_max(rule)
    if cap is not None:
        wanted = min(wanted, cap)
    new = max(0, wanted - slot.completions)
    if rule.lifetime_cap is not None:
        new = min(new, max(0, rule.lifetime_cap - participant.lifetime))
    rewards: list[Reward] = []
    for i in range(slot.completions + 1, slot.completions + new + 1):
        if rule.kind is TaskKind.LADDER:
            rewards.append(Reward(i, rule.ladder[i - 1][1]))
        elif rule.kind is TaskKind.STREAK:
            streak = participant.streak + 1 if participant.last_key is not None and \
                participant.last_key == previous_key else 1
            participant = replace(participant, streak=streak, last_key=key)
            rewards.append(Reward(i, streak_reward(rule, streak)))
        else:
            rewards.append(Reward(i, rule.reward_count))
    participant = replace(participant, lifetime=participant.lifetime + new)
    return replace(slot, progress=total, completions=slot.completions + new), participant, rewards


def completions_at(rule: Rule, progress: int) -> int:
    """Completions a simple task's or a ladder's period has at `progress` (what the store's counting upsert
    computes in SQL, `task_completions` in migration 0016): both are a function of the period's progress alone."""
    if rule.kind is TaskKind.LADDER:
        wanted = sum(1 for need, _ in rule.ladder if progress >= need)
    else:
        wanted = progress // rule.num if rule.num > 0 else 0
    cap = per_period_max(rule)
    return max(0, wanted if cap is None else min(wanted, cap))


def completion_reward(rule: Rule, n: int) -> int:
    """What the n-th completion of a period earns, for the kinds whose completions depend on progress alone."""
    return rule.ladder[n - 1][1] if rule.kind is TaskKind.LADDER else rule.reward_count


def streak_reward(rule: Rule, streak: int) -> int:
    """Day n of a streak earns the n-th reward; after the last day the cycle starts again (day 8 earns day 1's)."""
    if not rule.streak_rewards:
        return rule.reward_count
    return rule.streak_rewards[(streak - 1) % len(rule.streak_rewards)]


def _composite(rule: Rule, slot: Slot, participant: Participant,
               steps: Sequence[tuple[str, int]]) -> tuple[Slot, Participant, list[Reward]]:
    rewards: list[Reward] = []
    for action, _ in steps:
        if not can_complete_more(rule, slot, participant):
            break
        if rule.steps and action == rule.steps[slot.stage]:
            slot = replace(slot, stage=slot.stage + 1, progress=slot.progress + 1)
        if rule.steps and slot.stage == len(rule.steps):
            slot = replace(slot, stage=0, completions=slot.completions + 1)
            participant = replace(participant, lifetime=participant.lifetime + 1)
            rewards.append(Reward(slot.completions, rule.reward_count))
    return slot, participant, rewards


def fit_budget(remaining: int | None, amounts: Sequence[int]) -> int:
    """How many of `amounts` (in order) the remaining budget covers; None is an unlimited budget. A reward that
    does not fit stops the rest, so rewards are granted in the order they were earned."""
    if remaining is None:
        return len(amounts)
    n = 0
    for amount in amounts:
        if amount > remaining:
            break
        remaining -= amount
        n += 1
    return n


def assign_variant(task_id: int, contact_id: int, weights: Sequence[int]) -> int:
    """Deterministic A/B assignment: the index of the contact's variant, the same on every call and process."""
    total = sum(weights)
    if total <= 0:
        return 0
    digest = hashlib.sha256(f"task:{task_id}:{contact_id}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") % total
    for i, weight in enumerate(weights):
        if point < weight:
            return i
        point -= weight
    return len(weights) - 1


def reward_reference(task_id: int, contact_id: int, period_key: str, n: int) -> str:
    """The business key of one reward: the grant's unique key and the ledger posting's reference."""
    return f"reward:{task_id}:{contact_id}:{period_key}:{n}"
