"""The contacts' step of a contact merge (`store.merges`): the survivor takes the merged-away contact's identities
and profile and leaves a forward; the merged-away row goes last (`drop`), after every other domain has moved."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from store.db import driver

# What a merge does to each contacts table holding a contact id (tests/store/test_cascades.py reads this).
TABLES = {
    "contacts": "both rows locked first; the survivor takes the merged-away traits it lacks, the earliest "
                "created_at and the latest last_seen_at; the merged-away row is deleted last",
    "identities": "moved to the survivor",
    "contact_merges": "a forward merged-away → survivor; forwards into the merged-away contact now point at the "
                      "survivor, so every forward is one hop",
    "contact_erasures": "untouched: it records contacts that no longer exist, which nothing can merge",
}
# (loser, survivor) pairs. The lock comes first, in id order, so concurrent merges and erasures queue on it.
# The profile and forward statements run before the events move (they once ran after it) with the same effect:
# they write only contact rows this lock already holds and forward rows that nobody writes without locking a
# contact of the pair first, and neither reads a table the events move writes.
ABSORB = (
    "SELECT id FROM contacts WHERE id = ANY(%(all)s) ORDER BY id FOR UPDATE",
    "UPDATE identities i SET contact_id = p.survivor FROM unnest(%(losers)s::bigint[], %(survivors)s::bigint[])"
    " AS p(loser, survivor) WHERE i.contact_id = p.loser",
    """UPDATE contacts s SET traits = l.traits || s.traits, email = coalesce(s.email, l.email),
        phone = coalesce(s.phone, l.phone), timezone = coalesce(s.timezone, l.timezone),
        created_at = least(s.created_at, l.created_at), updated_at = now(),
        last_seen_at = greatest(s.last_seen_at, l.last_seen_at)
    FROM unnest(%(losers)s::bigint[], %(survivors)s::bigint[]) AS p(loser, survivor)
    JOIN contacts l ON l.id = p.loser
    WHERE s.id = p.survivor""",
    "UPDATE contact_merges m SET merged_into = p.survivor FROM unnest(%(losers)s::bigint[],"
    " %(survivors)s::bigint[]) AS p(loser, survivor) WHERE m.merged_into = p.loser",
    "INSERT INTO contact_merges (contact_id, merged_into) SELECT * FROM unnest(%(losers)s::bigint[],"
    " %(survivors)s::bigint[]) ON CONFLICT (contact_id) DO UPDATE SET merged_into = excluded.merged_into",
)
DROP = "DELETE FROM contacts WHERE id = ANY(%(losers)s)"


async def absorb(session: AsyncSession, pairs: Sequence[tuple[int, int]]) -> None:
    """Lock both contacts of every pair; move identities, profile and forwards to the survivor."""
    pg = await driver(session)
    params = {"losers": [p[0] for p in pairs], "survivors": [p[1] for p in pairs],
              "all": sorted({c for p in pairs for c in p})}
    for statement in ABSORB:
        await pg.execute(statement, params)


async def drop(session: AsyncSession, pairs: Sequence[tuple[int, int]]) -> None:
    """Delete the merged-away rows (their identities moved in `absorb`, so the identities cascade is empty)."""
    await (await driver(session)).execute(DROP, {"losers": [p[0] for p in pairs]})
