"""Contact merge: when identity resolution finds that two contacts are one person, the merged-away contact is
folded into the survivor, one step per domain, in the caller's transaction (the ingest batch that found out).

The order matters: contacts first (the lock on both rows makes concurrent merges and erasures of them queue),
then events, then points (the posting service only touches accounts of contacts that exist), and the
merged-away row last. Segments and campaigns have no step: see their `merges` modules for why.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from store.campaigns import merges as campaigns
from store.channels import merges as channels
from store.contacts import merges as contacts
from store.events import merges as events
from store.journeys import merges as journeys
from store.ledger import merges as ledger
from store.promotions import merges as promotions
from store.segments import merges as segments
from store.tasks import merges as tasks

# Every domain's merge declarations; tests/store/test_cascades.py checks that they cover every contact table.
STEPS = (contacts, events, ledger, tasks, promotions, channels, segments, campaigns, journeys)


async def merge_contacts(session: AsyncSession, pairs: Sequence[tuple[int, int]]) -> None:
    """Fold each (merged-away, survivor) pair's first contact into the second: identities, profile, forwards,
    events and their aggregates, points balances. No statement at all for no pairs (the common case)."""
    if not pairs:
        return
    await contacts.absorb(session, pairs)
    await events.move(session, pairs)
    await ledger.move_points(session, pairs, now=datetime.now(UTC))  # one indexed probe unless a loser has points
    await tasks.move(session, pairs)  # progress and streaks follow the person
    await promotions.move(session, pairs)  # coupons and per-customer usage follow the person
    await channels.move(session, pairs)  # preferences, cap counts and the inbox follow the person
    await journeys.move(session, pairs)  # a journey only the merged-away contact was in follows the person
    await contacts.drop(session, pairs)
