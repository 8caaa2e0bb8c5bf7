"""Points follow an identity merge: when an anonymous contact is merged into a known one, each points account
of the merged-away contact is emptied into the surviving contact's, bucket by bucket (earned months kept, so
nothing expires earlier or later than it would have).

The ledger's step of a contact merge (`store.merges`), in the merge's transaction, before the merged-away
contact row goes (the posting service only touches accounts of existing contacts). It costs one indexed
lookup when the merged contacts have no ledger accounts, which is nearly always; plain events never merge
and never get here.

Per program, through the posting service: pending holds are voided first (`store.ledger.holds`, as erasure
does; references `{hold}:merge`), then two postings move what remains — `merge:{program}:{from}:{into}:out`
(user → transfer, `merge_out`) and `...:in` (transfer → user, `merge_in`), which net to zero on the program's
`transfer` account. A move already posted is not posted again, so a replayed merge moves nothing twice.
Only spendable points arrive: parts past their expiry (the sweep had not run yet) leave the merged-away account
for the program's expiry account in the same `merge_out` posting (domain/ledger/postings.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.ledger.postings import Kind, Month, Request
from store.ledger.holds import hold_voids
from store.ledger.postings import apply, existing, raise_refused
from store.ledger.receipts import Receipt, Submission

MERGE_MEMO = "identity merge"
# What a merge does to each ledger table holding a contact id (tests/store/test_cascades.py reads this).
# The books are history: rows posted for the merged-away id stay under it, and only what is spendable moves.
TABLES = {
    "ledger_accounts": "the merged-away account stays, emptied by a merge_out posting; the survivor's gets merge_in",
    "ledger_buckets": "moved month for month (earned months kept) by those two postings; parts already past their "
                      "expiry go to the expiry account instead",
    "ledger_holds": "pending holds voided first (`{hold}:merge`), so nothing reserved is stranded",
    "ledger_postings": "history stays under the merged-away id; the void and move postings are added",
    "ledger_entries": "history stays under the merged-away id; the postings add their own entries",
    "ledger_rollups": "history (archived months) stays under the merged-away id",
    "ledger_findings": "reconciliation findings stay with the account they were found on",
    "ledger_redemptions": "orders stay with the id that placed them; a pending one's hold was voided above, so its "
                          "saga fails its commit and compensates",
    "ledger_reviews": "stay under the merged-away id (rare: credits to an anonymous visitor held for review); "
                      "releasing one afterwards is refused as the contact is gone, rejecting it works",
    "ledger_risk_events": "velocity counts stay with the subjects they were recorded for",
    "ledger_blocklist": "a block on the merged-away id stays (it names an id nobody holds any more)",
}


def merge_reference(program_id: int, from_contact: int, into_contact: int) -> str:
    return f"merge:{program_id}:{from_contact}:{into_contact}"


async def move_points(session: AsyncSession, pairs: Sequence[tuple[int, int]], *, now: datetime) -> list[Receipt]:
    """Move every points balance of each (merged-away, surviving) pair's first contact to the second.
    Returns the receipts of the moves posted now (none for a replay)."""
    into = dict(pairs)
    accounts = (await session.execute(text(
        "SELECT contact_id, program_id FROM ledger_accounts WHERE contact_id = ANY(:c)"
        " ORDER BY contact_id, program_id"), {"c": list(into)})).all()
    if not accounts:
        return []
    arrivals = {(a.contact_id, a.program_id): (a.program_id, merge_reference(a.program_id, a.contact_id,
                                                                            into[a.contact_id]) + ":in")
                for a in accounts}
    moved = await existing(session, list(arrivals.values()))
    todo = [account for account, key in arrivals.items() if key not in moved]
    if not todo:
        return []
    voids = await hold_voids(session, todo, cause="merge", memo=MERGE_MEMO)
    if voids:
        raise_refused(await apply(session, voids, now=now))
    buckets = await _locked_buckets(session, todo)
    batch: list[Submission] = []
    for contact, program in todo:
        parts = tuple(sorted(buckets.get((contact, program), {}).items()))
        if not parts:
            continue  # an empty account: nothing is stranded
        reference = merge_reference(program, contact, into[contact])
        batch += [Submission(program, Request(f"{reference}:out", Kind.MERGE_OUT, contact, parts=parts,
                                              memo=f"{MERGE_MEMO}: into contact {into[contact]}")),
                  Submission(program, Request(f"{reference}:in", Kind.MERGE_IN, into[contact], parts=parts,
                                              memo=f"{MERGE_MEMO}: from contact {contact}"))]
    if not batch:
        return []
    outcomes = await apply(session, batch, now=now)
    raise_refused(outcomes)  # a refused move fails the merge (and its ingest batch, which the client retries)
    return [o for o in outcomes if isinstance(o, Receipt)]


async def _locked_buckets(session: AsyncSession, accounts: list[tuple[int, int]]
                          ) -> dict[tuple[int, int], dict[Month, int]]:
    """The accounts' remaining buckets, read under the account locks (in the order postings take them), so
    the move posts exactly what is there."""
    keys = {"c": [a[0] for a in accounts], "p": [a[1] for a in accounts]}
    await session.execute(text("""
        SELECT 1 FROM ledger_accounts a JOIN unnest(CAST(:c AS bigint[]), CAST(:p AS bigint[])) AS k(c, p)
          ON a.contact_id = k.c AND a.program_id = k.p
        ORDER BY a.contact_id, a.program_id FOR UPDATE OF a
    """), keys)
    rows = await session.execute(text("""
        SELECT b.contact_id, b.program_id, b.month, b.remaining FROM ledger_buckets b
        JOIN unnest(CAST(:c AS bigint[]), CAST(:p AS bigint[])) AS k(c, p) ON b.contact_id = k.c AND b.program_id = k.p
        WHERE b.remaining > 0
    """), keys)
    found: dict[tuple[int, int], dict[Month, int]] = {}
    for r in rows:
        found.setdefault((r.contact_id, r.program_id), {})[r.month] = int(r.remaining)
    return found

