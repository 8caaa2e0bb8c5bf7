"""Applying postings: a batch of requests in the caller's transaction, set-based, exactly once per reference.

Each request's outcome is a value (a `Receipt` or the `DomainError` that refused it), so one refused
posting never fails its neighbours. Rows are locked user accounts first, in (contact, program) order,
then system balance shards in (program, account) order, so concurrent batches cannot deadlock.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain import ledger
from domain.errors import DomainError, NotFound
from domain.ledger import USER, Kind, Month, Request


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


class RaceLost(Exception):
    """Another transaction inserted the same reference after this batch looked; retry the batch."""


def _receipt(row: Any, replayed: bool) -> Receipt:
    entries = row.entries if isinstance(row.entries, list) else json.loads(row.entries)
    return Receipt(id=row.id, program_id=row.program_id, reference=row.reference, kind=row.kind,
                   contact_id=row.contact_id, amount=row.amount, balance_after=row.balance_after,
                   entries=tuple((a, int(n)) for a, n in entries), hold_reference=row.hold_reference,
                   memo=row.memo, created_at=row.created_at, replayed=replayed)


async def existing(session: AsyncSession, keys: Sequence[tuple[int, str]]) -> dict[tuple[int, str], tuple[str, Receipt]]:
    """Receipts (with their fingerprints) of references already posted."""
    if not keys:
        return {}
    rows = await session.execute(text("""
        SELECT p.* FROM ledger_postings p
        JOIN unnest(CAST(:programs AS bigint[]), CAST(:refs AS text[])) AS k(program_id, reference)
          ON p.program_id = k.program_id AND p.reference = k.reference
    """), {"programs": [k[0] for k in keys], "refs": [k[1] for k in keys]})
    return {(r.program_id, r.reference): (r.fingerprint, _receipt(r, True)) for r in rows}


def _replay(found: tuple[str, Receipt], request: Request) -> Outcome:
    fingerprint, receipt = found
    if fingerprint != request.fingerprint():
        return ledger.ReferenceConflict(
            f"reference {request.reference!r} was already posted as a {receipt.kind} of {receipt.amount} "
            f"for contact {receipt.contact_id}; use a new reference for a different posting")
    return receipt


async def _lock_accounts(session: AsyncSession, keys: list[tuple[int, int]]) -> dict[tuple[int, int], int]:
    """Create missing accounts (for existing contacts only) and lock all of them, in order."""
    params = {"contacts": [k[0] for k in keys], "programs": [k[1] for k in keys]}
    await session.execute(text("""
        INSERT INTO ledger_accounts (contact_id, program_id)
        SELECT k.c, k.p FROM unnest(CAST(:contacts AS bigint[]), CAST(:programs AS bigint[])) AS k(c, p)
        JOIN contacts ON contacts.id = k.c
        ORDER BY k.c, k.p
        ON CONFLICT (contact_id, program_id) DO NOTHING
    """), params)
    rows = await session.execute(text("""
        SELECT a.contact_id, a.program_id, a.balance FROM ledger_accounts a
        JOIN unnest(CAST(:contacts AS bigint[]), CAST(:programs AS bigint[])) AS k(c, p)
          ON a.contact_id = k.c AND a.program_id = k.p
        ORDER BY a.contact_id, a.program_id
        FOR UPDATE OF a
    """), params)
    return {(r.contact_id, r.program_id): r.balance for r in rows}


async def _buckets(session: AsyncSession, keys: list[tuple[int, int]]) -> dict[tuple[int, int], dict[Month, int]]:
    out: dict[tuple[int, int], dict[Month, int]] = {k: {} for k in keys}
    if not keys:
        return out
    rows = await session.execute(text("""
        SELECT b.contact_id, b.program_id, b.month, b.remaining FROM ledger_buckets b
        JOIN unnest(CAST(:contacts AS bigint[]), CAST(:programs AS bigint[])) AS k(c, p)
          ON b.contact_id = k.c AND b.program_id = k.p
        WHERE b.remaining > 0
    """), {"contacts": [k[0] for k in keys], "programs": [k[1] for k in keys]})
    for r in rows:
        out[(r.contact_id, r.program_id)][r.month] = r.remaining
    return out


@dataclass
class _Hold:
    taken: dict[Month, int]
    status: str
    expires_at: datetime


async def _holds(session: AsyncSession, keys: list[tuple[int, int, str]]) -> dict[tuple[int, int, str], _Hold]:
    if not keys:
        return {}
    rows = await session.execute(text("""
        SELECT h.contact_id, h.program_id, h.reference, h.taken, h.status, h.expires_at FROM ledger_holds h
        JOIN unnest(CAST(:contacts AS bigint[]), CAST(:programs AS bigint[]), CAST(:refs AS text[])) AS k(c, p, r)
          ON h.contact_id = k.c AND h.program_id = k.p AND h.reference = k.r
        ORDER BY h.contact_id, h.program_id, h.reference
        FOR UPDATE OF h
    """), {"contacts": [k[0] for k in keys], "programs": [k[1] for k in keys], "refs": [k[2] for k in keys]})
    return {(r.contact_id, r.program_id, r.reference):
            _Hold({int(m): int(a) for m, a in r.taken.items()}, r.status, r.expires_at) for r in rows}


async def apply(session: AsyncSession, batch: Sequence[Submission], *, now: datetime, shard: int = 0) -> list[Outcome]:
    """Post a batch in the caller's transaction. Outcomes line up with `batch`."""
    outcomes: list[Outcome | None] = [None] * len(batch)
    first: dict[tuple[int, str], int] = {}
    for i, sub in enumerate(batch):
        try:
            sub.request.validate()
        except DomainError as exc:
            outcomes[i] = exc
            continue
        first.setdefault((sub.program_id, sub.request.reference), i)

    found = await existing(session, list(first))
    todo: list[int] = []
    for key, i in first.items():
        if key in found:
            outcomes[i] = _replay(found[key], batch[i].request)
        else:
            todo.append(i)

    account_keys = sorted({(batch[i].request.contact_id, batch[i].program_id) for i in todo})
    balances = await _lock_accounts(session, account_keys) if account_keys else {}
    needs_buckets = sorted({(batch[i].request.contact_id, batch[i].program_id) for i in todo
                            if batch[i].request.kind not in (Kind.CREDIT, Kind.COMMIT)} & set(balances))
    buckets = await _buckets(session, needs_buckets)
    hold_keys = sorted({(batch[i].request.contact_id, batch[i].program_id, batch[i].request.hold_reference or "")
                        for i in todo if batch[i].request.kind in (Kind.COMMIT, Kind.VOID)})
    holds = await _holds(session, hold_keys)

    today = ledger.month_of(now)
    postings: list[dict[str, Any]] = []
    bucket_delta: dict[tuple[int, int, Month], int] = {}
    system_delta: dict[tuple[int, str], int] = {}
    new_holds: list[dict[str, Any]] = []
    settled: list[dict[str, Any]] = []
    for i in todo:
        sub, req = batch[i], batch[i].request
        key = (req.contact_id, sub.program_id)
        if key not in balances:
            outcomes[i] = NotFound(f"contact {req.contact_id} does not exist")
            continue
        hold = None
        if req.kind in (Kind.COMMIT, Kind.VOID):
            found_hold = holds.get((*key, req.hold_reference or ""))
            if found_hold is not None and found_hold.status == "pending":
                if req.kind is Kind.COMMIT and found_hold.expires_at <= now:
                    outcomes[i] = ledger.HoldNotPending(f"hold {req.hold_reference!r} timed out; it will be voided")
                    continue
                hold = found_hold.taken
        try:
            result = ledger.plan(req, buckets.get(key, {}), today, hold)
            if result.entries:
                ledger.check_balanced(result.entries)
            buckets[key] = ledger.add(buckets.get(key, {}), result.buckets)
        except DomainError as exc:
            outcomes[i] = exc
            continue
        balances[key] += result.user_delta
        for month, delta in result.buckets.items():
            bucket_delta[(*key, month)] = bucket_delta.get((*key, month), 0) + delta
        for entry in result.entries:
            if entry.account != USER:
                skey = (sub.program_id, entry.account)
                system_delta[skey] = system_delta.get(skey, 0) + entry.amount
        if req.kind is Kind.HOLD:
            new_holds.append({"c": req.contact_id, "p": sub.program_id, "r": req.reference, "a": req.amount,
                              "t": json.dumps({str(m): a for m, a in result.taken.items()}),
                              "e": now + timedelta(seconds=req.hold_seconds or 900)})
        elif hold is not None:
            settled.append({"c": req.contact_id, "p": sub.program_id, "r": req.hold_reference,
                            "s": "committed" if req.kind is Kind.COMMIT else "voided", "by": req.reference})
            holds[(*key, req.hold_reference or "")].status = "settled"
        moved = max((e.amount for e in result.entries), default=0)
        postings.append({"i": i, "program_id": sub.program_id, "reference": req.reference, "kind": req.kind.value,
                         "contact_id": req.contact_id, "amount": moved, "fingerprint": req.fingerprint(),
                         "balance_after": balances[key], "hold_reference": req.hold_reference, "memo": req.memo,
                         "entries": [[e.account, e.amount] for e in result.entries]})

    if postings:
        await _write(session, postings, bucket_delta, system_delta, balances, now, shard)
        if new_holds:
            await session.execute(text("""
                INSERT INTO ledger_holds (contact_id, program_id, reference, amount, taken, expires_at)
                VALUES (:c, :p, :r, :a, CAST(:t AS jsonb), :e)
            """), new_holds)
        if settled:
            await session.execute(text("""
                UPDATE ledger_holds SET status = :s, settled_by = :by
                WHERE contact_id = :c AND program_id = :p AND reference = :r AND status = 'pending'
            """), settled)
        for i, receipt in _receipts(postings, now).items():
            outcomes[i] = receipt

    # Duplicates inside the batch answer like replays of their first occurrence.
    for i, sub in enumerate(batch):
        if outcomes[i] is None:
            j = first[(sub.program_id, sub.request.reference)]
            earlier = outcomes[j]
            if isinstance(earlier, Receipt):
                outcomes[i] = _replay((batch[j].request.fingerprint(), replace(earlier, replayed=True)), sub.request)
            else:
                outcomes[i] = earlier
    return [o for o in outcomes if o is not None]


async def _write(session: AsyncSession, postings: list[dict[str, Any]], bucket_delta: dict[tuple[int, int, Month], int],
                 system_delta: dict[tuple[int, str], int], balances: dict[tuple[int, int], int], now: datetime,
                 shard: int) -> None:
    rows = await session.execute(text("""
        INSERT INTO ledger_postings (program_id, reference, kind, contact_id, amount, fingerprint, balance_after,
                                     entries, hold_reference, memo, created_at)
        SELECT * , CAST(:now AS timestamptz) FROM unnest(
            CAST(:program_id AS bigint[]), CAST(:reference AS text[]), CAST(:kind AS text[]),
            CAST(:contact_id AS bigint[]), CAST(:amount AS bigint[]), CAST(:fingerprint AS text[]),
            CAST(:balance_after AS bigint[]), CAST(:entries AS jsonb[]), CAST(:hold_reference AS text[]),
            CAST(:memo AS text[]))
        ON CONFLICT (program_id, reference) DO NOTHING
        RETURNING id, reference, program_id
    """), {
        **{col: [p[col] for p in postings] for col in (
            "program_id", "reference", "kind", "contact_id", "amount", "fingerprint", "balance_after",
            "hold_reference", "memo")},
        "entries": [json.dumps(p["entries"]) for p in postings], "now": now,
    })
    ids = {(r.program_id, r.reference): r.id for r in rows}
    if len(ids) != len(postings):
        raise RaceLost("a concurrent transaction posted one of these references first")
    entry_rows = [(p["contact_id"] if account == USER else 0, ids[(p["program_id"], p["reference"])], account,
                   p["program_id"], amount) for p in postings for account, amount in p["entries"]]
    if entry_rows:
        await session.execute(text("""
            INSERT INTO ledger_entries (contact_id, posting_id, account, program_id, amount, created_at)
            SELECT *, CAST(:now AS timestamptz) FROM unnest(CAST(:c AS bigint[]), CAST(:pid AS bigint[]),
                CAST(:a AS text[]), CAST(:p AS bigint[]), CAST(:n AS bigint[]))
        """), {"c": [e[0] for e in entry_rows], "pid": [e[1] for e in entry_rows], "a": [e[2] for e in entry_rows],
               "p": [e[3] for e in entry_rows], "n": [e[4] for e in entry_rows], "now": now})
    touched = sorted({(p["contact_id"], p["program_id"]) for p in postings if any(a == USER for a, _ in p["entries"])})
    if touched:
        await session.execute(text("""
            UPDATE ledger_accounts a SET balance = k.b, updated_at = :now
            FROM unnest(CAST(:c AS bigint[]), CAST(:p AS bigint[]), CAST(:b AS bigint[])) AS k(c, p, b)
            WHERE a.contact_id = k.c AND a.program_id = k.p
        """), {"c": [t[0] for t in touched], "p": [t[1] for t in touched], "b": [balances[t] for t in touched],
               "now": now})
    # The CHECK applies to the row proposed for insertion, so takes are updates and gifts are upserts.
    for sign in (1, -1):
        changed = sorted((k, d) for k, d in bucket_delta.items() if d * sign > 0)
        if not changed:
            continue
        params = {"c": [k[0] for k, _ in changed], "p": [k[1] for k, _ in changed], "m": [k[2] for k, _ in changed],
                  "d": [d for _, d in changed]}
        await session.execute(text("""
            INSERT INTO ledger_buckets AS b (contact_id, program_id, month, remaining)
            SELECT * FROM unnest(CAST(:c AS bigint[]), CAST(:p AS bigint[]), CAST(:m AS integer[]), CAST(:d AS bigint[]))
            ON CONFLICT (contact_id, program_id, month) DO UPDATE SET remaining = b.remaining + excluded.remaining
        """ if sign > 0 else """
            UPDATE ledger_buckets b SET remaining = b.remaining + k.d
            FROM unnest(CAST(:c AS bigint[]), CAST(:p AS bigint[]), CAST(:m AS integer[]), CAST(:d AS bigint[]))
                 AS k(c, p, m, d)
            WHERE b.contact_id = k.c AND b.program_id = k.p AND b.month = k.m
        """), params)
    system = sorted((k, d) for k, d in system_delta.items() if d)
    if system:
        await session.execute(text("""
            INSERT INTO ledger_system_balances AS s (program_id, account, shard, balance)
            SELECT k.p, k.a, CAST(:shard AS smallint), k.d
            FROM unnest(CAST(:p AS bigint[]), CAST(:a AS text[]), CAST(:d AS bigint[])) AS k(p, a, d)
            ON CONFLICT (program_id, account, shard) DO UPDATE SET balance = s.balance + excluded.balance
        """), {"p": [k[0] for k, _ in system], "a": [k[1] for k, _ in system], "d": [d for _, d in system],
               "shard": shard})
    for p in postings:
        p["id"] = ids[(p["program_id"], p["reference"])]


def _receipts(postings: list[dict[str, Any]], now: datetime) -> dict[int, Receipt]:
    return {p["i"]: Receipt(
        id=p["id"], program_id=p["program_id"], reference=p["reference"], kind=p["kind"], contact_id=p["contact_id"],
        amount=p["amount"], balance_after=p["balance_after"], entries=tuple((a, n) for a, n in p["entries"]),
        hold_reference=p["hold_reference"], memo=p["memo"], created_at=now) for p in postings}
