"""The credit fast path: a batch of credits in one call of `ledger_post_credits` (migration 0005).

Credits are most of a points ledger's traffic (every reward) and their plan needs no state: the user's
bucket of the earned month grows, the issuance account shrinks. So the whole batch — replays, account
upserts in lock order, postings, entries, buckets, system shard — runs server-side in one round trip,
on whatever connection the caller holds (inside a transaction, or in autocommit as the writer does).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg

from domain.errors import NotFound
from domain.ledger import SystemAccount, month_of

CALL = """
    SELECT * FROM ledger_post_credits(%s::bigint[], %s::text[], %s::bigint[], %s::bigint[], %s::integer[],
                                      %s::text[], %s::text[], %s::timestamptz, %s::smallint)
"""


async def post_credits(conn: psycopg.AsyncConnection[Any], batch: Sequence[Any], *, now: datetime,
                       shard: int) -> list[Any]:
    """Outcomes (Receipt or DomainError) for validated credits with distinct references, in batch order."""
    from store.ledger_postings import Receipt, receipt_json, replay

    today = month_of(now)
    requests = [s.request for s in batch]
    cur = conn.cursor()
    await cur.execute(CALL, (
        [s.program_id for s in batch], [r.reference for r in requests], [r.contact_id for r in requests],
        [r.amount for r in requests], [today if r.earned_month is None else r.earned_month for r in requests],
        [r.fingerprint() for r in requests], [r.memo for r in requests], now, shard))
    outcomes: list[Any] = [None] * len(batch)
    for ord_, posting_id, balance_after, found in await cur.fetchall():
        i = ord_ - 1
        sub, req = batch[i], requests[i]
        if found is not None:
            outcomes[i] = replay((found["fingerprint"], receipt_json(found)), req)
        else:
            outcomes[i] = Receipt(
                id=posting_id, program_id=sub.program_id, reference=req.reference, kind="credit",
                contact_id=req.contact_id, amount=req.amount, balance_after=balance_after,
                entries=((SystemAccount.ISSUANCE.value, -req.amount), ("user", req.amount)), hold_reference=None,
                memo=req.memo, created_at=now)
    return [o if o is not None else NotFound(f"contact {requests[i].contact_id} does not exist")
            for i, o in enumerate(outcomes)]
