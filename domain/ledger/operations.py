"""Ledger operations rules: how reconciliation classifies a disagreement and repairs it, which buckets
expire, and the references those operations post under. Pure values in, values out.

The journal (a posting's entries, plus the rolled-up months of entries already archived) is the truth;
an account's balance row and its monthly buckets are projections of it. A projection that drifted from
the journal is restated from it (an audited posting that moves no points); a journal that disagrees
with both projections, or a posting that does not balance, needs a person (the review queue).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from domain.ledger.postings import Buckets, ExpiryPolicy, Month, month_label, take


class FindingClass(StrEnum):
    BALANCE_DRIFT = "balance_drift"            # balance row ≠ journal = buckets: restate the balance
    BUCKET_DRIFT = "bucket_drift"              # buckets ≠ journal = balance: restate the buckets
    JOURNAL_DRIFT = "journal_drift"            # balance = buckets ≠ journal: entries missing or extra
    ACCOUNT_DRIFT = "account_drift"            # balance, buckets and journal all differ
    UNBALANCED_POSTING = "unbalanced_posting"  # a posting's entries do not sum to zero
    ENTRY_MISMATCH = "entry_mismatch"          # the user's entry rows disagree with the posting's receipt
    PROGRAM_UNBALANCED = "program_unbalanced"  # user balances + holds + system balances ≠ 0
    HOLD_TIMED_OUT = "hold_timed_out"          # a pending hold past its timeout: voided
    GRANT_WITHOUT_POSTING = "grant_without_posting"  # a recorded reward grant never credited: credited now
    POSTING_WITHOUT_GRANT = "posting_without_grant"  # a reward credit no grant explains


AUTO_FIXED = frozenset({FindingClass.BALANCE_DRIFT, FindingClass.BUCKET_DRIFT, FindingClass.HOLD_TIMED_OUT,
                        FindingClass.GRANT_WITHOUT_POSTING})


def classify_account(balance: int, journal: int, buckets: int) -> FindingClass | None:
    """What is wrong with an account, given its balance row, its journal sum and its buckets' sum."""
    if balance == journal == buckets:
        return None
    if journal == buckets:
        return FindingClass.BALANCE_DRIFT
    if balance == journal:
        return FindingClass.BUCKET_DRIFT
    if balance == buckets:
        return FindingClass.JOURNAL_DRIFT
    return FindingClass.ACCOUNT_DRIFT


def repair_buckets(buckets: Buckets, journal: int, today: Month) -> dict[Month, int]:
    """The signed per-month change that makes the buckets sum to the journal.

    Missing points go into this month's bucket (they stay spendable and expire last); surplus points
    come out oldest first, as a spend would take them.
    """
    gap = journal - sum(buckets.values())
    if gap == 0:
        return {}
    if gap > 0:
        return {today: gap}
    return {m: -n for m, n in take(buckets, -gap).items()}


def restate_reference(finding_id: int) -> str:
    return f"reconcile:{finding_id}"


def timeout_void_reference(hold_reference: str) -> str:
    return f"{hold_reference}:timeout"


def expiry_reference(program_id: int, contact_id: int, earned: Month) -> str:
    """One expiry posting per program, contact and bucket month (the month the points were earned).

    Once a bucket's month has expired nothing enters it again (the planner refuses credits into it and expires
    late-returned parts at once), so its points leave in one posting, whenever the sweep first finds them; a
    re-run finds the bucket empty and posts nothing. The `earned` segment keeps these apart from the older
    per-run references (`legacy_expiry_reference`): `expire:3:42:2026-03` meant "the March run", and must not
    stand in for the expiry of the bucket earned in March.
    """
    return f"expire:{program_id}:{contact_id}:earned:{month_label(earned)}"


def legacy_expiry_reference(program_id: int, contact_id: int, run: Month) -> str:
    """The reference expiry postings had until per-bucket references: one per contact and month the run ran in.

    Deployments keep these rows as they are. They cannot cause a second expiry: an expiry moves what remains in
    the bucket when it is posted, never an amount fixed in advance, so a bucket an old posting emptied has nothing
    left for a new one, and points that reached it afterwards (which the old reference wrongly blocked) are new.
    """
    return f"expire:{program_id}:{contact_id}:{month_label(run)}"


def expiry_cutoff(policy: ExpiryPolicy, today: Month) -> Month | None:
    """Buckets earned in this month or earlier are due on `today` (None: the program never expires)."""
    return None if policy.months is None else today - policy.months - 1


@dataclass(frozen=True)
class MissingCredit:
    """A reward grant the tasks engine recorded that has no posting: credited under the grant's own reference."""

    program_id: int
    contact_id: int
    reference: str
    amount: int


@dataclass
class ExpiryPage:
    """One page of an expiry run: where to continue and what it did."""

    last: int | None  # the contact id to continue after; None: nothing left to expire
    contacts: int = 0
    postings: int = 0
    points: int = 0
    refused: int = 0  # expiry postings the ledger refused (a contact deleted since the page was read)
