"""What to do next for one step sent through a fallback chain (e.g. `["wechat", "sms"]`), from what happened to
its attempts so far: send on a channel, wait until a time, or stop.

Attempt n goes through `chain[n - 1]`. The next channel is used only when the current attempt failed (refused,
undelivered, bounced, suppressed, unreachable), or stayed silent past its receipt window. A channel with no window
(email, the in-app inbox) counts as done once the provider accepted the message: it reports nothing to wait for.
Never two channels for one step unless the first failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from domain.channels.deliveries import FAILURE, SUCCESS, DeliveryState


@dataclass(frozen=True)
class Attempt:
    number: int  # 1-based position in the chain
    channel: str
    state: DeliveryState
    receipt_due_at: datetime | None = None  # None: no receipt is awaited (accepted is final)
    retry_at: datetime | None = None        # a queued attempt: when to try the provider again


@dataclass(frozen=True)
class Send:
    number: int
    channel: str


@dataclass(frozen=True)
class Wait:
    until: datetime


@dataclass(frozen=True)
class Done:
    outcome: str  # delivered | sent | exhausted


Decision = Send | Wait | Done


def decide(chain: Sequence[str], attempts: Sequence[Attempt], now: datetime) -> Decision:
    if not chain:
        return Done("exhausted")
    if not attempts:
        return Send(1, chain[0])
    last = max(attempts, key=lambda a: a.number)
    if last.state in SUCCESS:
        return Done("delivered")
    failed = last.state in FAILURE
    if last.state is DeliveryState.SENT:
        if last.receipt_due_at is None:
            return Done("sent")
        if now < last.receipt_due_at:
            return Wait(last.receipt_due_at)
        failed = True  # silent past the window
    if last.state in (DeliveryState.QUEUED, DeliveryState.DEFERRED):
        # Recorded but not known to be sent: send the same attempt again once it is due (same idempotency key).
        if last.retry_at is not None and now < last.retry_at:
            return Wait(last.retry_at)
        return Send(last.number, last.channel)
    if failed:
        if last.number >= len(chain):
            return Done("exhausted")
        return Send(last.number + 1, chain[last.number])
    raise AssertionError(f"unhandled state {last.state}")  # pragma: no cover - every state is above


def message_key(delivery_key: str, number: int) -> str:
    """The provider idempotency key of attempt `number`: the delivery key itself for the first channel (so an email
    step's Message-ID is what it always was), suffixed for the fallbacks."""
    return delivery_key if number == 1 else f"{delivery_key}#{number}"
