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

import psycopg
from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import DomainError, NotFound
from domain.ledger import postings as ledger
from domain.ledger.postings import USER, Kind, Month, Request
from store.db import driver
from store.ledger.credits import post_credits
from store.ledger.receipts import Outcome, Receipt, Submission, receipt_json, replay


class RaceLost(Exception):
    """Another transaction inserted the same reference after this batch looked; retry the batch."""


# One statement: create or lock the accounts (in order) and the holds being settled, find replayed
# references and reserve posting ids. Locked rows are returned at their latest version.
READ_AND_LOCK = """
    WITH locked AS (
        -- One ordered pass creates missing accounts and locks existing ones, so two batches never take
        -- account locks in different orders (a create and a lock in separate passes could).
        INSERT INTO ledger_accounts AS a (contact_id, program_id)
        SELECT k.c, k.p FROM unnest(%(contacts)s::bigint[], %(programs)s::bigint[]) AS k(c, p)
        JOIN contacts ON contacts.id = k.c
        ORDER BY k.c, k.p
        ON CONFLICT (contact_id, program_id) DO UPDATE SET balance = a.balance
        RETURNING a.contact_id, a.program_id, a.balance
    ), held AS (
        SELECT h.contact_id, h.program_id, h.reference, h.taken, h.status, h.expires_at FROM ledger_holds h
        JOIN unnest(%(hold_contacts)s::bigint[], %(hold_programs)s::bigint[], %(hold_refs)s::text[]) AS k(c, p, r)
          ON h.contact_id = k.c AND h.program_id = k.p AND h.reference = k.r
        ORDER BY h.contact_id, h.program_id, h.reference
        FOR UPDATE OF h
    )
    SELECT 'a' AS t, jsonb_build_array(contact_id, program_id, balance) AS v FROM locked
    UNION ALL SELECT 'h', jsonb_build_array(contact_id, program_id, reference, taken, status, expires_at) FROM held
    UNION ALL SELECT 'p', to_jsonb(p) FROM ledger_postings p
        JOIN unnest(%(post_programs)s::bigint[], %(refs)s::text[]) AS k(program_id, reference)
          ON p.program_id = k.program_id AND p.reference = k.reference
    UNION ALL SELECT 'i', to_jsonb(nextval(pg_get_serial_sequence('ledger_postings', 'id')))
        FROM generate_series(1, %(n)s)
    UNION ALL SELECT 'g', jsonb_build_array(id, expiry_months) FROM ledger_programs
        WHERE id = ANY(%(post_programs)s::bigint[])
"""
# A separate statement, so it runs after the accounts are locked and sees their latest buckets.
READ_BUCKETS = """
    SELECT b.contact_id, b.program_id, b.month, b.remaining FROM ledger_buckets b
    JOIN unnest(%(contacts)s::bigint[], %(programs)s::bigint[]) AS k(c, p)
      ON b.contact_id = k.c AND b.program_id = k.p
    WHERE b.remaining > 0
"""


async def existing(session: AsyncSession,
                   keys: Sequence[tuple[int, str]]) -> dict[tuple[int, str], tuple[str, Receipt]]:
    """Receipts (with their fingerprints) of references already posted."""
    if not keys:
        return {}
    cur = (await driver(session)).cursor()
    await cur.execute("""
        SELECT to_jsonb(p) FROM ledger_postings p
        JOIN unnest(%(programs)s::bigint[], %(refs)s::text[]) AS k(program_id, reference)
          ON p.program_id = k.program_id AND p.reference = k.reference
    """, {"programs": [k[0] for k in keys], "refs": [k[1] for k in keys]})
    return {(v["program_id"], v["reference"]): (v["fingerprint"], receipt_json(v)) for (v,) in await cur.fetchall()}


@dataclass
class _Hold:
    taken: dict[Month, int]
    status: str
    expires_at: datetime


@dataclass
class _State:
    found: dict[tuple[int, str], tuple[str, Receipt]]
    balances: dict[tuple[int, int], int]
    buckets: dict[tuple[int, int], dict[Month, int]]
    holds: dict[tuple[int, int, str], _Hold]
    ids: list[int]
    policies: dict[int, ledger.ExpiryPolicy]


async def _read(conn: psycopg.AsyncConnection[Any], batch: Sequence[Submission]) -> _State:
    """Replays, locked balances (creating accounts), locked holds, posting ids and the programs' expiry policies;
    then the spenders' buckets."""
    requests = [s.request for s in batch]
    pairs = list(zip(batch, requests, strict=True))
    accounts = sorted({(r.contact_id, s.program_id) for s, r in pairs})
    spenders = sorted({(r.contact_id, s.program_id) for s, r in pairs if r.kind not in (Kind.CREDIT, Kind.COMMIT)})
    hold_keys = sorted({(r.contact_id, s.program_id, r.hold_reference or "") for s, r in pairs
                        if r.kind in (Kind.COMMIT, Kind.VOID)})
    cur = conn.cursor()
    await cur.execute(READ_AND_LOCK, {
        "contacts": [a[0] for a in accounts], "programs": [a[1] for a in accounts],
        "hold_contacts": [h[0] for h in hold_keys], "hold_programs": [h[1] for h in hold_keys],
        "hold_refs": [h[2] for h in hold_keys], "post_programs": [s.program_id for s in batch],
        "refs": [r.reference for r in requests], "n": len(batch)})
    state = _State({}, {}, {}, {}, [], {})
    for tag, v in await cur.fetchall():
        if tag == "g":
            state.policies[v[0]] = ledger.ExpiryPolicy(v[1])
        elif tag == "a":
            state.balances[(v[0], v[1])] = v[2]
        elif tag == "h":
            state.holds[(v[0], v[1], v[2])] = _Hold({int(m): int(n) for m, n in v[3].items()}, v[4],
                                                    datetime.fromisoformat(v[5]))
        elif tag == "p":
            state.found[(v["program_id"], v["reference"])] = (v["fingerprint"], receipt_json(v))
        else:
            state.ids.append(v)
    if spenders:
        await cur.execute(READ_BUCKETS, {"contacts": [a[0] for a in spenders], "programs": [a[1] for a in spenders]})
        for c, p, month, remaining in await cur.fetchall():
            state.buckets.setdefault((c, p), {})[month] = remaining
    return state


def raise_refused(outcomes: Sequence[Outcome]) -> None:
    """For callers whose batch must post whole (erasure, identity merges): raise the first refusal, so the
    caller's transaction rolls back rather than leave points behind silently."""
    for outcome in outcomes:
        if isinstance(outcome, DomainError):
            raise outcome


async def apply(session: AsyncSession, batch: Sequence[Submission], *, now: datetime, shard: int = 0) -> list[Outcome]:
    """Post a batch in the caller's transaction. Outcomes line up with `batch`."""
    return await apply_on(await driver(session), batch, now=now, shard=shard)


async def apply_on(conn: psycopg.AsyncConnection[Any], batch: Sequence[Submission], *, now: datetime,
                   shard: int = 0) -> list[Outcome]:
    """Post a batch on a psycopg connection: a batch of credits into this month is one statement (it may run in
    autocommit); any other batch is planned, in two statements inside the caller's transaction (or in a
    transaction of its own when the connection is in autocommit)."""
    outcomes: list[Outcome | None] = [None] * len(batch)
    first: dict[tuple[int, str], int] = {}
    for i, sub in enumerate(batch):
        try:
            sub.request.validate()
        except DomainError as exc:
            outcomes[i] = exc
            continue
        first.setdefault((sub.program_id, sub.request.reference), i)
    unique = [batch[i] for i in first.values()]
    today = ledger.month_of(now)
    if unique and all(_this_months_credit(s.request, today) for s in unique):
        for i, outcome in zip(first.values(), await post_credits(conn, unique, now=now, shard=shard), strict=True):
            outcomes[i] = outcome
    elif unique and conn.autocommit:  # the writer's credit connection: the planned path needs its locks held
        async with conn.transaction():
            await _apply_planned(conn, batch, first, outcomes, now=now, shard=shard)
    elif unique:
        await _apply_planned(conn, batch, first, outcomes, now=now, shard=shard)

    # Duplicates inside the batch answer like replays of their first occurrence.
    for i, sub in enumerate(batch):
        if outcomes[i] is None:
            j = first[(sub.program_id, sub.request.reference)]
            earlier = outcomes[j]
            if isinstance(earlier, Receipt):
                outcomes[i] = replay((batch[j].request.fingerprint(), replace(earlier, replayed=True)), sub.request)
            else:
                outcomes[i] = earlier
    return [o for o in outcomes if o is not None]


def _this_months_credit(request: Request, today: Month) -> bool:
    """A credit into this month: the one case the expiry rules always accept (this month has begun and its points
    have not expired), so the credit function, which knows no policy, may post it. A credit into any other month
    is planned, where its month is checked against the program's policy after a replay of its reference is
    answered (a credit posted while its month was open still replays once the month has closed)."""
    return request.kind is Kind.CREDIT and request.earned_month in (None, today)


async def _apply_planned(conn: psycopg.AsyncConnection[Any], batch: Sequence[Submission],
                         first: dict[tuple[int, str], int], outcomes: list[Outcome | None], *, now: datetime,
                         shard: int) -> None:
    """Read and lock what the batch touches, plan each posting with the domain rules, write it all at once."""
    state = await _read(conn, [batch[i] for i in first.values()])
    today = ledger.month_of(now)
    ids = iter(state.ids)
    balances, buckets = state.balances, state.buckets
    postings: list[dict[str, Any]] = []
    bucket_delta: dict[tuple[int, int, Month], int] = {}
    system_delta: dict[tuple[int, str], int] = {}
    new_holds: list[dict[str, Any]] = []
    settled: list[dict[str, Any]] = []
    for pkey, i in first.items():
        sub, req = batch[i], batch[i].request
        if pkey in state.found:
            outcomes[i] = replay(state.found[pkey], req)
            continue
        key = (req.contact_id, sub.program_id)
        if key not in balances:
            outcomes[i] = NotFound(f"contact {req.contact_id} does not exist")
            continue
        hold = None
        if req.kind in (Kind.COMMIT, Kind.VOID):
            found_hold = state.holds.get((*key, req.hold_reference or ""))
            if found_hold is not None and found_hold.status == "pending":
                if req.kind is Kind.COMMIT and found_hold.expires_at <= now:
                    outcomes[i] = ledger.HoldNotPending(f"hold {req.hold_reference!r} timed out; it will be voided")
                    continue
                hold = found_hold.taken
        policy = state.policies.get(sub.program_id)
        if policy is None:
            outcomes[i] = NotFound(f"points program {sub.program_id} does not exist")
            continue
        try:
            result = ledger.plan(req, buckets.get(key, {}), today, hold, policy=policy)
            if result.entries:
                ledger.check_balanced(result.entries)
            if result.buckets:
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
            state.holds[(*key, req.hold_reference or "")].status = "settled"
        receipt = Receipt(
            id=next(ids), program_id=sub.program_id, reference=req.reference, kind=req.kind.value,
            contact_id=req.contact_id, amount=sum(e.amount for e in result.entries if e.amount > 0),
            balance_after=balances[key], entries=tuple((e.account, e.amount) for e in result.entries),
            hold_reference=req.hold_reference, memo=req.memo, created_at=now)
        outcomes[i] = receipt
        postings.append({"receipt": receipt, "fingerprint": req.fingerprint()})

    if postings:
        await _write(conn, postings, bucket_delta, system_delta, balances, new_holds, settled, now, shard)


INSERT_POSTINGS = """
    INSERT INTO ledger_postings (id, program_id, reference, kind, contact_id, amount, fingerprint, balance_after,
                                 entries, hold_reference, memo, created_at)
    OVERRIDING SYSTEM VALUE
    SELECT k.*, %(now)s FROM unnest(%(id)s::bigint[], %(program_id)s::bigint[], %(reference)s::text[],
        %(kind)s::text[], %(contact_id)s::bigint[], %(amount)s::bigint[], %(fingerprint)s::text[],
        %(balance_after)s::bigint[], %(entries)s::jsonb[], %(hold_reference)s::text[], %(memo)s::text[]) AS k
    ON CONFLICT (program_id, reference) DO NOTHING
    RETURNING id
"""
INSERT_ENTRIES = """
    INSERT INTO ledger_entries (contact_id, posting_id, account, program_id, amount, created_at)
    SELECT k.*, %(now)s FROM unnest(%(c)s::bigint[], %(pid)s::bigint[], %(a)s::text[], %(p)s::bigint[],
                                    %(n)s::bigint[]) AS k
"""
UPDATE_BALANCES = """
    UPDATE ledger_accounts a SET balance = k.b, updated_at = %(now)s
    FROM unnest(%(c)s::bigint[], %(p)s::bigint[], %(b)s::bigint[]) AS k(c, p, b)
    WHERE a.contact_id = k.c AND a.program_id = k.p
"""
# The CHECK applies to the row proposed for insertion, so gifts are upserts and takes are updates.
GIVE_BUCKETS = """
    INSERT INTO ledger_buckets AS b (contact_id, program_id, month, remaining)
    SELECT * FROM unnest(%(c)s::bigint[], %(p)s::bigint[], %(m)s::integer[], %(d)s::bigint[])
    ON CONFLICT (contact_id, program_id, month) DO UPDATE SET remaining = b.remaining + excluded.remaining
"""
TAKE_BUCKETS = """
    UPDATE ledger_buckets b SET remaining = b.remaining + k.d
    FROM unnest(%(c)s::bigint[], %(p)s::bigint[], %(m)s::integer[], %(d)s::bigint[]) AS k(c, p, m, d)
    WHERE b.contact_id = k.c AND b.program_id = k.p AND b.month = k.m
"""
ADD_SYSTEM = """
    INSERT INTO ledger_system_balances AS s (program_id, account, shard, balance)
    SELECT k.p, k.a, %(shard)s, k.d FROM unnest(%(p)s::bigint[], %(a)s::text[], %(d)s::bigint[]) AS k(p, a, d)
    ON CONFLICT (program_id, account, shard) DO UPDATE SET balance = s.balance + excluded.balance
"""
INSERT_HOLDS = """
    INSERT INTO ledger_holds (contact_id, program_id, reference, amount, taken, expires_at)
    SELECT * FROM unnest(%(c)s::bigint[], %(p)s::bigint[], %(r)s::text[], %(a)s::bigint[], %(t)s::jsonb[],
                         %(e)s::timestamptz[])
"""
SETTLE_HOLDS = """
    UPDATE ledger_holds h SET status = k.s, settled_by = k.by
    FROM unnest(%(c)s::bigint[], %(p)s::bigint[], %(r)s::text[], %(s)s::text[], %(by)s::text[]) AS k(c, p, r, s, by)
    WHERE h.contact_id = k.c AND h.program_id = k.p AND h.reference = k.r AND h.status = 'pending'
"""


def _columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {name: [r[name] for r in rows] for name in rows[0]} if rows else {}


async def _write(conn: psycopg.AsyncConnection[Any], postings: list[dict[str, Any]],
                 bucket_delta: dict[tuple[int, int, Month], int], system_delta: dict[tuple[int, str], int],
                 balances: dict[tuple[int, int], int], new_holds: list[dict[str, Any]],
                 settled: list[dict[str, Any]], now: datetime, shard: int) -> None:
    """One round trip for every write of the batch."""
    receipts: list[Receipt] = [p["receipt"] for p in postings]
    statements: list[tuple[str, dict[str, Any]]] = [(INSERT_POSTINGS, {
        "id": [r.id for r in receipts], "program_id": [r.program_id for r in receipts],
        "reference": [r.reference for r in receipts], "kind": [r.kind for r in receipts],
        "contact_id": [r.contact_id for r in receipts], "amount": [r.amount for r in receipts],
        "fingerprint": [p["fingerprint"] for p in postings], "balance_after": [r.balance_after for r in receipts],
        "entries": [json.dumps([list(e) for e in r.entries]) for r in receipts],
        "hold_reference": [r.hold_reference for r in receipts], "memo": [r.memo for r in receipts], "now": now,
    })]
    # Only the user side is an entry row (partitioned with the contact's other rows); the system side is the
    # sharded system balance plus the posting's own `entries`, which reconciliation checks sum to zero.
    entries = [(r.contact_id, r.id, account, r.program_id, amount)
               for r in receipts for account, amount in r.entries if account == USER]
    if entries:
        statements.append((INSERT_ENTRIES, {"c": [e[0] for e in entries], "pid": [e[1] for e in entries],
                                            "a": [e[2] for e in entries], "p": [e[3] for e in entries],
                                            "n": [e[4] for e in entries], "now": now}))
    touched = sorted({(r.contact_id, r.program_id) for r in receipts if any(a == USER for a, _ in r.entries)})
    if touched:
        statements.append((UPDATE_BALANCES, {"c": [t[0] for t in touched], "p": [t[1] for t in touched],
                                             "b": [balances[t] for t in touched], "now": now}))
    for sql, sign in ((GIVE_BUCKETS, 1), (TAKE_BUCKETS, -1)):
        changed = sorted((k, d) for k, d in bucket_delta.items() if d * sign > 0)
        if changed:
            statements.append((sql, {"c": [k[0] for k, _ in changed], "p": [k[1] for k, _ in changed],
                                     "m": [k[2] for k, _ in changed], "d": [d for _, d in changed]}))
    system = sorted((k, d) for k, d in system_delta.items() if d)
    if system:
        statements.append((ADD_SYSTEM, {"p": [k[0] for k, _ in system], "a": [k[1] for k, _ in system],
                                        "d": [d for _, d in system], "shard": shard}))
    if new_holds:
        statements.append((INSERT_HOLDS, _columns(new_holds)))
    if settled:
        statements.append((SETTLE_HOLDS, _columns(settled)))
    # Every write in one statement. Each row appears in one CTE only (bucket deltas are netted per month),
    # because the CTEs of one statement cannot see each other's changes.
    parts, params = [], {}
    for n, (query, values) in enumerate(statements):
        for name in sorted(values, key=len, reverse=True):
            query = query.replace(f"%({name})s", f"%({name}_{n})s")
            params[f"{name}_{n}"] = values[name]
        parts.append(f"w{n} AS ({query.strip()})")
    sql = "WITH " + ", ".join(parts) + " SELECT count(*) FROM w0"
    cur = conn.cursor()
    await cur.execute(sql, params)
    row = await cur.fetchone()
    inserted = row[0] if row else 0
    if inserted != len(postings):
        raise RaceLost("a concurrent transaction posted one of these references first")
