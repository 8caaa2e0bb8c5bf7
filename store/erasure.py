"""Right to erasure: everything that identifies a person goes; the aggregates and books they fed stay right.

One call, in the caller's transaction, after locking the contact row (so ingest, merges and a second
erasure of the same contact wait for it), then one step per domain, each in its package's `erasure` module
with the tables it covers:

- points ledger: pending holds are voided and what remains is forfeited to the program's `breakage`
  account by a posting with reference `erase:{program}:{contact}` (through the posting service, so
  balance, buckets, entries and system shards move together); accounts, entries, buckets, rollups,
  holds, postings and redemption orders stay, keyed by the now-anonymous contact id, so reconciliation
  still balances. Posting memos, review-queue memos, velocity counts (which hold device ids and IP
  addresses) and a contact blocklist entry go; a pending review is rejected.
- deliveries: rows stay (a completed campaign's counts are counted from them) with the provider's
  message id and error text removed; a delivery still queued becomes `failed` ("contact erased").
- segments: memberships, transitions, computed scores and the event rollup rows are deleted, so counts
  drop the contact at once.
- events and daily aggregates (their message ids kept for the dedupe window), then identities, merge forwards
  and the contact row itself, with the anonymous contacts merged into it.
- a `contact_erasures` row records when it happened and how many rows went, with no personal data.

Why the contacts row is deleted rather than kept as a scrubbed tombstone: every query that reads
contacts (lists, rule segments on both backends, campaign audiences, imports, identity resolution)
would need an `erased_at IS NULL` filter forever, and one forgotten filter sends a message to, or counts,
someone who asked to be forgotten. With the row gone, they are all correct by construction. What the
tombstone would have protected — ledger rows pointing at a contact — no longer needs a foreign key
(migration 0009 drops it): the posting paths only create accounts for contacts that exist, so the
anonymous account can never be credited again.

A contact with a redemption order in progress is refused (409): its saga still has to commit or void its
hold, and would retry forever against a contact that no longer exists. Orders finish within minutes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import Conflict
from store.campaigns import erasure as campaigns
from store.channels import erasure as channels
from store.contacts import erasure as contacts
from store.events import erasure as events
from store.journeys import erasure as journeys
from store.ledger import erasure as ledger
from store.promotions import erasure as promotions
from store.segments import erasure as segments
from store.tasks import erasure as tasks

# Every domain's erasure declarations; tests/store/test_cascades.py checks that they cover every contact table.
STEPS = (promotions, ledger, campaigns, channels, segments, tasks, journeys, events, contacts)


class ErasureMustWait(Conflict):
    title = "Erasure must wait"


@dataclass(frozen=True)
class Erasure:
    """What an erasure did: rows removed or scrubbed per table, and points forfeited per program."""

    contact_id: int
    removed: dict[str, int] = field(default_factory=dict)
    forfeited: dict[int, int] = field(default_factory=dict)


async def erase(session: AsyncSession, contact_id: int, *, now: datetime) -> Erasure | None:
    """Erase a contact; None if there is no such contact (nothing is changed)."""
    ids = await contacts.lock(session, contact_id)
    if ids is None:
        return None
    orders = await ledger.open_orders(session, contact_id)
    if orders:
        raise ErasureMustWait(
            f"contact {contact_id} has redemption order(s) in progress ({', '.join(map(repr, orders))}); "
            "erase after they complete or fail (GET /v1/redemptions/{order}), usually within minutes")
    # Promotions before the ledger: cancelling a pending order voids its points hold through the posting service.
    promoted = await promotions.erase(session, ids, now=now)
    # The ledger first: its forfeits go through the posting service, which needs the contact row.
    removed, forfeited = await ledger.erase(session, contact_id, now=now)
    removed |= promoted
    removed |= await campaigns.erase(session, ids)
    removed |= await channels.erase(session, ids)
    removed |= await segments.erase(session, ids)
    removed |= await tasks.erase(session, ids, now=now)
    removed |= await journeys.erase(session, ids)
    removed["contacts"] = len(ids)
    await events.erase(session, ids)
    await contacts.erase(session, ids)
    await contacts.record(session, contact_id, now=now,
                          removed=removed | {"points_forfeited": sum(forfeited.values())})
    return Erasure(contact_id, removed, forfeited)


async def erased_at(session: AsyncSession, contact_id: int) -> datetime | None:
    """When a contact was erased (None: never), so a 404 can say why."""
    return await contacts.erased_at(session, contact_id)
