"""The delivery state machine of one channel attempt: a total order of states, and a receipt moves an attempt only
forwards in it. Applying receipts is then a maximum, so any sequence of (duplicate, out-of-order) receipts ends in
the state the sorted sequence ends in, and never moves backwards.

The order says which report wins when two disagree. Pre-send outcomes come first (`queued`, `deferred`,
`suppressed`), then `sent`; then the failures (`failed`, `bounced`): a message the provider later reports delivered
(or opened, clicked) did arrive, whatever an earlier retry's failure said; then the engagement ladder; a complaint is
last, as nobody complains about a message they did not get.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class DeliveryState(StrEnum):
    QUEUED = "queued"          # an attempt recorded before the provider call (the crash window's marker)
    DEFERRED = "deferred"      # waiting for quiet hours to end
    SUPPRESSED = "suppressed"  # never sent: suppressed, unsubscribed, opted out, over a frequency cap, no address
    SENT = "sent"              # the provider accepted it
    FAILED = "failed"          # the provider refused it, or reported it undelivered
    BOUNCED = "bounced"
    DELIVERED = "delivered"
    OPENED = "opened"
    CLICKED = "clicked"
    COMPLAINED = "complained"


ORDER: tuple[DeliveryState, ...] = tuple(DeliveryState)
RANK: dict[DeliveryState, int] = {s: i for i, s in enumerate(ORDER)}

SUCCESS = frozenset({DeliveryState.DELIVERED, DeliveryState.OPENED, DeliveryState.CLICKED, DeliveryState.COMPLAINED})
FAILURE = frozenset({DeliveryState.FAILED, DeliveryState.BOUNCED, DeliveryState.SUPPRESSED})
PENDING = frozenset({DeliveryState.QUEUED, DeliveryState.DEFERRED, DeliveryState.SENT})

# What a provider's receipt status means for the attempt. A provider's own `deferred` (it keeps retrying) says
# no more than `sent`.
RECEIPT_STATES: dict[str, DeliveryState] = {
    "sent": DeliveryState.SENT, "deferred": DeliveryState.SENT, "delivered": DeliveryState.DELIVERED,
    "opened": DeliveryState.OPENED, "clicked": DeliveryState.CLICKED, "failed": DeliveryState.FAILED,
    "bounced": DeliveryState.BOUNCED, "complained": DeliveryState.COMPLAINED,
}


def advance(current: DeliveryState, incoming: DeliveryState) -> DeliveryState:
    """The state after a report of `incoming`: the later of the two in the order."""
    return incoming if RANK[incoming] > RANK[current] else current


def moves(current: DeliveryState, incoming: DeliveryState) -> bool:
    return RANK[incoming] > RANK[current]


def settle(start: DeliveryState, reports: Iterable[DeliveryState]) -> DeliveryState:
    state = start
    for report in reports:
        state = advance(state, report)
    return state


def suppresses(state: DeliveryState) -> str | None:
    """The suppression reason a report of `state` feeds, if any."""
    return {DeliveryState.BOUNCED: "bounce", DeliveryState.COMPLAINED: "complaint"}.get(state)
