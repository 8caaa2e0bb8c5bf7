"""The posting service's values: a `Submission` goes in, a `Receipt` (or the `DomainError` that refused it)
comes out; and how a stored posting answers a replay of its reference. Shared by postings and credits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from domain.errors import DomainError
from domain.ledger.postings import ReferenceConflict, Request


@dataclass(frozen=True)
class Submission:
    program_id: int
    request: Request


@dataclass(frozen=True)
class Receipt:
    """What a posting did; a replay of the same reference returns the same receipt."""

    id: int
    program_id: int
    reference: str
    kind: str
    contact_id: int
    amount: int
    balance_after: int
    entries: tuple[tuple[str, int], ...]
    hold_reference: str | None
    memo: str | None
    created_at: datetime
    replayed: bool = False


Outcome = Receipt | DomainError


def receipt_json(v: dict[str, Any]) -> Receipt:
    """The receipt of a stored posting (a `ledger_postings` row as JSON)."""
    return Receipt(id=v["id"], program_id=v["program_id"], reference=v["reference"], kind=v["kind"],
                   contact_id=v["contact_id"], amount=v["amount"], balance_after=v["balance_after"],
                   entries=tuple((a, int(n)) for a, n in v["entries"]), hold_reference=v["hold_reference"],
                   memo=v["memo"], created_at=datetime.fromisoformat(v["created_at"]).astimezone(UTC), replayed=True)


def replay(found: tuple[str, Receipt], request: Request) -> Outcome:
    """The answer to a reference already posted: its receipt, or a conflict if the request differs."""
    fingerprint, receipt = found
    if fingerprint != request.fingerprint():
        return ReferenceConflict(
            f"reference {request.reference!r} was already posted as a {receipt.kind} of {receipt.amount} "
            f"for contact {receipt.contact_id}; use a new reference for a different posting")
    return receipt
