"""Coupons: states and their transitions, validity windows, and the code format.

A coupon is issued → reserved (held by an order) → redeemed; a reservation released goes back to issued;
an issued or reserved coupon expires or is revoked. Codes are 12 random characters of Crockford's base 32
plus one check character (Luhn mod 32), shown in groups of four: `7K3M-Q9TZ-X2BD-F`. 60 random bits make
guessing hopeless and the check character turns typos into `coupon_invalid` without a lookup.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from domain.errors import InvalidTransition

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford: no I, L, O, U
BODY = 12
TYPOS = str.maketrans({"O": "0", "I": "1", "L": "1"})


class State(StrEnum):
    ISSUED = "issued"
    RESERVED = "reserved"
    REDEEMED = "redeemed"
    EXPIRED = "expired"
    REVOKED = "revoked"


TRANSITIONS: dict[tuple[State, str], State] = {
    (State.ISSUED, "reserve"): State.RESERVED,
    (State.RESERVED, "release"): State.ISSUED,
    (State.RESERVED, "redeem"): State.REDEEMED,
    (State.ISSUED, "expire"): State.EXPIRED,
    (State.RESERVED, "expire"): State.EXPIRED,
    (State.ISSUED, "revoke"): State.REVOKED,
    (State.RESERVED, "revoke"): State.REVOKED,
}


def transition(state: State, event: str) -> State:
    """The state after `event`; InvalidTransition if the coupon cannot go there."""
    after = TRANSITIONS.get((state, event))
    if after is None:
        raise InvalidTransition(f"a coupon that is {state.value} cannot {event}")
    return after


def validity(*, issued_at: datetime, valid_from: datetime | None, valid_until: datetime | None,
             valid_days: int | None) -> tuple[datetime, datetime | None]:
    """A coupon's window: the template's fixed dates, or `valid_days` from issue (whichever ends first)."""
    start = max(issued_at, valid_from) if valid_from else issued_at
    end = issued_at + timedelta(days=valid_days) if valid_days else None
    if valid_until is not None:
        end = min(end, valid_until) if end else valid_until
    return start, end


class Source(StrEnum):
    """Where a coupon came from, read off the reference it was issued under."""

    POINTS = "points"  # bought with points through the ledger's redemption saga: `redeem:{order_id}#{i}`
    TASK = "task"  # a task's reward: `reward:{task}:{contact}:{period}:{n}#{i}`
    JOURNEY = "journey"  # a journey's grant node: `journey:{journey}:{version}:{contact}:{entry}:{node}`
    BULK = "bulk"  # generated unassigned in a batch: `bulk:{batch}:{n}`
    ISSUED = "issued"  # issued by a caller of the API (a claim, a campaign) under its own reference


PREFIXES = (("redeem:", Source.POINTS), ("reward:", Source.TASK), ("journey:", Source.JOURNEY), ("bulk:", Source.BULK))


def purchase_reference(order_id: str, i: int) -> str:
    """The reference of the `i`-th coupon a redemption order buys: one per unit, derived from the order id alone,
    so a retried or replayed step issues the same coupons."""
    return f"redeem:{order_id}#{i}"


def source(reference: str | None) -> Source:
    for prefix, kind in PREFIXES:
        if reference is not None and reference.startswith(prefix):
            return kind
    return Source.ISSUED


def _check_char(body: str) -> str:
    total = 0
    for i, char in enumerate(reversed(body)):
        value = ALPHABET.index(char)
        if i % 2 == 0:
            value *= 2
            value = value // 32 + value % 32
        total += value
    return ALPHABET[(32 - total % 32) % 32]


def make_code(entropy: bytes) -> str:
    """A code from at least 8 random bytes (the caller draws them: `secrets.token_bytes(8)`)."""
    if len(entropy) < 8:
        raise ValueError("a code needs at least 8 random bytes")
    number = int.from_bytes(entropy[:8], "big")
    body = "".join(ALPHABET[(number >> (5 * i)) & 31] for i in range(BODY))
    return body + _check_char(body)


def normalize(code: str) -> str:
    """Upper case, no separators, common misreadings fixed (O→0, I/L→1)."""
    return code.strip().upper().replace("-", "").replace(" ", "").translate(TYPOS)


def well_formed(code: str) -> bool:
    """A generated code (normalized): right length, alphabet and check character. Shared public codes are
    whatever the marketer chose and are looked up as they are."""
    return (len(code) == BODY + 1 and all(c in ALPHABET for c in code)
            and _check_char(code[:BODY]) == code[BODY])


def display(code: str) -> str:
    return "-".join(code[i:i + 4] for i in range(0, len(code), 4))
