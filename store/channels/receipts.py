"""Applying providers' delivery reports (verified by the channel adapters' callback verifiers) and Nudge's own
open and click tracking: replay refusal, the lookup of each report's attempt, then one set-based move
(store/channels/records.py `apply`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from domain.channels.deliveries import RECEIPT_STATES, DeliveryState
from domain.errors import Conflict
from store.channels import records, webhooks


class Replayed(Conflict):
    title = "Callback replayed"


@dataclass(frozen=True)
class Report:
    channel: str
    status: str  # a receipt status: sent, delivered, opened, clicked, deferred, failed, bounced, complained
    at: datetime
    provider_message_id: str | None = None
    error: str | None = None
    event_id: str | None = None


@dataclass(frozen=True)
class Applied:
    reports: int
    matched: int
    unknown: int  # reports about messages Nudge has no record of yet: kept a day in case their send is being recorded
    due: int      # plans made due now (a failure to fall back from)


async def apply_callback(session: AsyncSession, provider: str, reports: Sequence[Report], now: datetime) -> Applied:
    """Apply one verified callback's reports in the caller's transaction. A callback carrying an event id already
    applied is refused (`Replayed`) and, with the caller's rollback, changes nothing."""
    ids = [r.event_id for r in reports if r.event_id]
    if ids:
        fresh = await webhooks.first_seen(session, provider, ids)
        if len(fresh) < len(set(ids)):
            raise Replayed(f"this {provider} callback was applied before (event "
                           f"{sorted(set(ids) - fresh)[0]!r}); nothing changed")
    found = await records.lookup(session, [(r.channel, r.provider_message_id) for r in reports
                                           if r.provider_message_id])
    changes, early = [], []
    for r in reports:
        where = found.get((r.channel, r.provider_message_id or ""))
        state = RECEIPT_STATES.get(r.status)
        if state is None:
            continue
        if where is None:
            if r.provider_message_id:
                early.append(r)
            continue
        changes.append(records.Change(*where, state=state, at=r.at, error=r.error,
                                      error_class="non_retryable" if state is DeliveryState.FAILED else None))
    # A fast provider can report before the batch that sent the message has recorded its id: park the report, and
    # `records.record_results` applies it when the id arrives.
    await records.park_early(session, [(r.channel, r.provider_message_id or "", r.status, r.at, r.error)
                                       for r in early])
    due = await records.apply(session, changes, now)
    return Applied(len(reports), len(changes), len(reports) - len(changes), due)


async def track(session: AsyncSession, contact_id: int, message_key: str, state: DeliveryState,
                now: datetime) -> bool:
    """An open (pixel) or a click (redirect) of the message sent under `message_key`; whether it was known."""
    key, _, number = message_key.partition("#")
    attempt = int(number) if number.isdigit() else 1
    if not await records.exists(session, contact_id, key, attempt):
        return False
    await records.apply(session, [records.Change(contact_id, key, attempt, state, now)], now)
    return True
