"""Reconciliation (仲裁): set-based checks of accounts, postings and programs; automatic fixes for known
finding classes; the review queue for the rest.

Checks read one consistent snapshot per statement and page by key (contact id, posting id), so a run
over millions of accounts is a loop of bounded statements. Fixes lock the accounts first (in the same
order postings lock them), check again under the lock, and only then restate.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import Conflict, NotFound
from domain.ledger.operations import (
    AUTO_FIXED,
    FindingClass,
    MissingCredit,
    classify_account,
    repair_buckets,
    restate_reference,
    timeout_void_reference,
)
from domain.ledger.postings import Kind, Month, Request, month_label
from store.ledger.postings import apply
from store.ledger.receipts import Receipt, Submission


@dataclass(frozen=True)
class Finding:
    id: int
    program_id: int
    contact_id: int
    class_: str
    subject: str
    detail: dict[str, Any]
    status: str
    fix: str | None
    fixed_by: str | None
    note: str | None
    created_at: datetime
    resolved_at: datetime | None


@dataclass
class PageResult:
    last: int | None  # the key to continue after; None: nothing left
    checked: int = 0
    found: int = 0
    fixed: int = 0


PROGRAMS = "(CAST(:programs AS bigint[]) IS NULL OR {col} = ANY(CAST(:programs AS bigint[])))"

ACCOUNT_PAGE = f"""
    SELECT max(contact_id) AS last, count(*) AS n FROM (
        SELECT DISTINCT contact_id FROM ledger_accounts
        WHERE contact_id > :after AND {PROGRAMS.format(col='program_id')} ORDER BY contact_id LIMIT :limit) x
"""
# balance row vs journal (entries + rolled-up months) vs buckets, for accounts in a contact range (or listed).
ACCOUNT_STATE = """
    WITH acc AS (
        SELECT contact_id, program_id, balance FROM ledger_accounts WHERE {where}
    ), journal AS (
        SELECT e.contact_id, e.program_id, sum(e.amount) AS n FROM ledger_entries e
        JOIN acc USING (contact_id, program_id) WHERE e.account = 'user' GROUP BY 1, 2
    ), rolled AS (
        SELECT r.contact_id, r.program_id, sum(r.credited - r.debited) AS n FROM ledger_rollups r
        JOIN acc USING (contact_id, program_id) WHERE r.account = 'user' GROUP BY 1, 2
    ), bucket AS (
        SELECT b.contact_id, b.program_id, sum(b.remaining) AS n FROM ledger_buckets b
        JOIN acc USING (contact_id, program_id) GROUP BY 1, 2
    )
    SELECT * FROM (
        SELECT acc.contact_id, acc.program_id, acc.balance,
               (coalesce(journal.n, 0) + coalesce(rolled.n, 0))::bigint AS journal,
               coalesce(bucket.n, 0)::bigint AS buckets
        FROM acc LEFT JOIN journal USING (contact_id, program_id) LEFT JOIN rolled USING (contact_id, program_id)
                 LEFT JOIN bucket USING (contact_id, program_id)
    ) s WHERE NOT (balance = journal AND journal = buckets)
    ORDER BY contact_id, program_id
"""
IN_RANGE = f"contact_id > :after AND contact_id <= :upto AND {PROGRAMS.format(col='program_id')}"
LISTED = "(contact_id, program_id) IN (SELECT * FROM unnest(CAST(:cs AS bigint[]), CAST(:ps AS bigint[])))"

FILE_FINDINGS = """
    INSERT INTO ledger_findings (program_id, contact_id, class, subject, detail, status, fix, resolved_at)
    SELECT k.p, k.c, k.k, k.s, k.d, k.st, k.f, CASE WHEN k.st = 'fixed' THEN now() END
    FROM unnest(CAST(:p AS bigint[]), CAST(:c AS bigint[]), CAST(:k AS text[]), CAST(:s AS text[]),
                CAST(:d AS jsonb[]), CAST(:st AS text[]), CAST(:f AS text[])) AS k(p, c, k, s, d, st, f)
    ON CONFLICT (class, program_id, contact_id, subject) WHERE status = 'open' DO NOTHING
    RETURNING id, program_id, contact_id, class
"""


async def _file(session: AsyncSession, rows: list[dict[str, Any]]) -> list[Any]:
    """File findings (an open one already on file is not filed again); returns the new ones."""
    if not rows:
        return []
    result = await session.execute(text(FILE_FINDINGS), {
        "p": [r["program_id"] for r in rows], "c": [r["contact_id"] for r in rows],
        "k": [str(r["class"]) for r in rows], "s": [r.get("subject", "") for r in rows],
        "d": [json.dumps(r["detail"]) for r in rows],
        "st": ["fixed" if r["class"] in AUTO_FIXED else "open" for r in rows], "f": [r.get("fix") for r in rows]})
    return list(result)


async def check_accounts(session: AsyncSession, *, after: int, limit: int, programs: Sequence[int] | None,
                         today: Month) -> PageResult:
    """Check the accounts of the next `limit` contacts after `after`; restate drifted projections."""
    page = (await session.execute(text(ACCOUNT_PAGE), {"after": after, "limit": limit,
                                                       "programs": programs})).one()
    if not page.n:
        return PageResult(last=None)
    result = PageResult(last=page.last, checked=page.n)
    suspects = (await session.execute(text(ACCOUNT_STATE.format(where=IN_RANGE)),
                                      {"after": after, "upto": page.last, "programs": programs})).all()
    if not suspects:
        return result
    # Lock, then look again: a suspect may only have been a snapshot of a posting in flight elsewhere.
    keys = {"cs": [r.contact_id for r in suspects], "ps": [r.program_id for r in suspects]}
    await session.execute(text(f"SELECT 1 FROM ledger_accounts WHERE {LISTED} "
                               "ORDER BY contact_id, program_id FOR UPDATE"), keys)
    confirmed = (await session.execute(text(ACCOUNT_STATE.format(where=LISTED)), keys)).all()
    findings = []
    for row in confirmed:
        kind = classify_account(row.balance, row.journal, row.buckets)
        if kind is None:
            continue
        findings.append({"program_id": row.program_id, "contact_id": row.contact_id, "class": kind,
                         "subject": "account", "row": row,
                         "detail": {"balance": row.balance, "journal": row.journal, "buckets": row.buckets}})
    result.found = len(findings)
    filed = await _file(session, findings)
    by_key = {(f["contact_id"], f["program_id"], str(f["class"])): f for f in findings}
    for new in filed:
        finding = by_key[(new.contact_id, new.program_id, new._mapping["class"])]
        if finding["class"] in AUTO_FIXED:
            await _restate(session, new.id, finding, today)
            result.fixed += 1
    return result


async def _restate(session: AsyncSession, finding_id: int, finding: dict[str, Any], today: Month) -> None:
    """Make the drifted projection agree with the journal, and journal the restatement as a posting."""
    row = finding["row"]
    c, p = row.contact_id, row.program_id
    if finding["class"] is FindingClass.BALANCE_DRIFT:
        await session.execute(text("UPDATE ledger_accounts SET balance = :b, updated_at = now() "
                                   "WHERE contact_id = :c AND program_id = :p"), {"b": row.journal, "c": c, "p": p})
        fix = f"balance restated from {row.balance} to {row.journal} (the journal)"
        amount = row.journal - row.balance
    else:
        buckets = {r.month: r.remaining for r in await session.execute(text(
            "SELECT month, remaining FROM ledger_buckets WHERE contact_id = :c AND program_id = :p AND remaining > 0"),
            {"c": c, "p": p})}
        delta = repair_buckets(buckets, row.journal, today)
        await session.execute(text("""
            INSERT INTO ledger_buckets AS b (contact_id, program_id, month, remaining)
            SELECT :c, :p, k.m, k.d FROM unnest(CAST(:m AS integer[]), CAST(:d AS bigint[])) AS k(m, d)
            ON CONFLICT (contact_id, program_id, month) DO UPDATE SET remaining = b.remaining + excluded.remaining
        """), {"c": c, "p": p, "m": list(delta), "d": list(delta.values())})
        fix = "buckets restated to the journal: " + ", ".join(
            f"{month_label(m)} {d:+d}" for m, d in sorted(delta.items()))
        amount = row.journal - row.buckets
    reference = restate_reference(finding_id)
    await session.execute(text("""
        INSERT INTO ledger_postings (program_id, reference, kind, contact_id, amount, fingerprint, balance_after,
                                     entries, memo)
        VALUES (:p, :r, 'restate', :c, :a, 'restate', :b, '[]', :m) ON CONFLICT DO NOTHING
    """), {"p": p, "r": reference, "c": c, "a": amount, "b": row.journal, "m": fix})
    await session.execute(text("UPDATE ledger_findings SET fix = :f, fixed_by = :r WHERE id = :i"),
                          {"f": fix, "r": reference, "i": finding_id})


POSTING_PAGE = f"""
    SELECT max(id) AS last, count(*) AS n FROM (
        SELECT id FROM ledger_postings WHERE id > :after AND {PROGRAMS.format(col='program_id')}
        ORDER BY id LIMIT :limit) x
"""
# Every posting's entries sum to zero, and the user's entry rows say what its receipt says. Months whose
# detail was archived have no entry rows left; the archive's own verification covered them.
POSTING_STATE = f"""
    SELECT * FROM (
        SELECT p.id, p.program_id, p.contact_id, p.reference,
               (SELECT coalesce(sum((x->>1)::bigint), 0)::bigint FROM jsonb_array_elements(p.entries) x) AS total,
               (SELECT coalesce(sum((x->>1)::bigint), 0)::bigint FROM jsonb_array_elements(p.entries) x
                 WHERE x->>0 = 'user') AS receipt_user,
               (SELECT coalesce(sum(e.amount), 0)::bigint FROM ledger_entries e
                 WHERE e.contact_id = p.contact_id AND e.posting_id = p.id AND e.account = 'user') AS rows_user
        FROM ledger_postings p
        WHERE p.id > :after AND p.id <= :upto AND p.kind <> 'restate' AND {PROGRAMS.format(col='p.program_id')}
          AND NOT EXISTS (SELECT 1 FROM ledger_archives a WHERE a.program_id = p.program_id
                          AND a.month = (extract(year FROM p.created_at AT TIME ZONE 'UTC') * 12
                                         + extract(month FROM p.created_at AT TIME ZONE 'UTC') - 1)::int)
    ) s WHERE total <> 0 OR receipt_user <> rows_user
"""


async def check_postings(session: AsyncSession, *, after: int, limit: int,
                         programs: Sequence[int] | None) -> PageResult:
    page = (await session.execute(text(POSTING_PAGE), {"after": after, "limit": limit, "programs": programs})).one()
    if not page.n:
        return PageResult(last=None)
    rows = (await session.execute(text(POSTING_STATE), {"after": after, "upto": page.last,
                                                        "programs": programs})).all()
    findings = [{"program_id": r.program_id, "contact_id": r.contact_id, "subject": f"posting:{r.id}",
                 "class": FindingClass.UNBALANCED_POSTING if r.total else FindingClass.ENTRY_MISMATCH,
                 "detail": {"posting_id": r.id, "reference": r.reference, "sum": r.total,
                            "receipt_user": r.receipt_user, "entry_rows_user": r.rows_user}} for r in rows]
    await _file(session, findings)
    return PageResult(last=page.last, checked=page.n, found=len(findings))


PROGRAM_STATE = f"""
    SELECT p.id, coalesce(u.n, 0)::bigint AS users, coalesce(s.n, 0)::bigint AS system FROM ledger_programs p
    LEFT JOIN (SELECT program_id, sum(balance) AS n FROM ledger_accounts GROUP BY 1) u ON u.program_id = p.id
    LEFT JOIN (SELECT program_id, sum(balance) AS n FROM ledger_system_balances GROUP BY 1) s ON s.program_id = p.id
    WHERE {PROGRAMS.format(col='p.id')} AND coalesce(u.n, 0) + coalesce(s.n, 0) <> 0
"""


async def check_programs(session: AsyncSession, programs: Sequence[int] | None) -> PageResult:
    """User balances and system balances of a program sum to zero (every point came from somewhere)."""
    rows = (await session.execute(text(PROGRAM_STATE), {"programs": programs})).all()
    await _file(session, [{"program_id": r.id, "contact_id": 0, "subject": "program",
                           "class": FindingClass.PROGRAM_UNBALANCED,
                           "detail": {"users": r.users, "system": r.system}} for r in rows])
    return PageResult(last=None, found=len(rows))


async def void_timed_out_holds(session: AsyncSession, *, now: datetime, limit: int,
                               programs: Sequence[int] | None) -> PageResult:
    """Void pending holds past their timeout, releasing exactly the buckets they took."""
    rows = (await session.execute(text(f"""
        SELECT contact_id, program_id, reference, amount, expires_at FROM ledger_holds
        WHERE status = 'pending' AND expires_at <= :now AND {PROGRAMS.format(col='program_id')}
        ORDER BY expires_at LIMIT :limit
    """), {"now": now, "limit": limit, "programs": programs})).all()
    if not rows:
        return PageResult(last=None)
    subs = [Submission(r.program_id, Request(timeout_void_reference(r.reference), Kind.VOID, r.contact_id,
                                             hold_reference=r.reference, memo="hold timed out"))
            for r in rows]
    outcomes = await apply(session, subs, now=now)
    voided = [(r, o) for r, o in zip(rows, outcomes, strict=True) if isinstance(o, Receipt) and not o.replayed]
    await _file(session, [{"program_id": r.program_id, "contact_id": r.contact_id, "subject": f"hold:{r.reference}",
                           "class": FindingClass.HOLD_TIMED_OUT, "fix": f"voided by {o.reference}",
                           "detail": {"hold": r.reference, "amount": r.amount,
                                      "expired_at": r.expires_at.isoformat()}} for r, o in voided])
    await session.execute(text("""
        UPDATE ledger_findings f SET fixed_by = k.r FROM unnest(CAST(:s AS text[]), CAST(:r AS text[])) AS k(s, r)
        WHERE f.class = 'hold_timed_out' AND f.subject = k.s AND f.fixed_by IS NULL
    """), {"s": [f"hold:{r.reference}" for r, _ in voided], "r": [o.reference for _, o in voided]})
    return PageResult(last=len(rows), checked=len(rows), found=len(voided), fixed=len(voided))


class GrantSource(Protocol):
    """What the tasks engine will plug in: the reward grants it recorded, checked against the postings.

    `missing_credits`: grants with no posting under their reference (credited by reconciliation).
    `unexplained_postings`: `reward:` credits with no grant (program, contact, reference; sent to review).
    """

    async def missing_credits(self, session: AsyncSession, programs: Sequence[int] | None,
                              limit: int) -> list[MissingCredit]: ...

    async def unexplained_postings(self, session: AsyncSession, programs: Sequence[int] | None,
                                   limit: int) -> list[tuple[int, int, str]]: ...


class NoGrants:
    """Until the tasks engine records grants, there is nothing to check them against."""

    async def missing_credits(self, session: AsyncSession, programs: Sequence[int] | None,
                              limit: int) -> list[MissingCredit]:
        return []

    async def unexplained_postings(self, session: AsyncSession, programs: Sequence[int] | None,
                                   limit: int) -> list[tuple[int, int, str]]:
        return []


async def credit_missing(session: AsyncSession, missing: Sequence[MissingCredit], *, now: datetime) -> PageResult:
    """补偿: credit grants the tasks engine recorded but the ledger never posted, under the grant's reference."""
    if not missing:
        return PageResult(last=None)
    outcomes = await apply(session, [Submission(m.program_id, Request(m.reference, Kind.CREDIT, m.contact_id,
                                                                      m.amount, memo="reconciliation: missing grant"))
                                     for m in missing], now=now)
    credited = [m for m, o in zip(missing, outcomes, strict=True) if isinstance(o, Receipt) and not o.replayed]
    await _file(session, [{"program_id": m.program_id, "contact_id": m.contact_id, "subject": f"grant:{m.reference}",
                           "class": FindingClass.GRANT_WITHOUT_POSTING, "fix": f"credited {m.amount}",
                           "detail": {"reference": m.reference, "amount": m.amount}} for m in credited])
    return PageResult(last=None, checked=len(missing), found=len(credited), fixed=len(credited))


async def file_unexplained(session: AsyncSession, postings: Sequence[tuple[int, int, str]]) -> int:
    """Reward credits no grant explains go to the review queue."""
    await _file(session, [{"program_id": p, "contact_id": c, "subject": f"posting:{r}",
                           "class": FindingClass.POSTING_WITHOUT_GRANT, "detail": {"reference": r}}
                          for p, c, r in postings])
    return len(postings)


async def check_grants(session: AsyncSession, grants: GrantSource, *, programs: Sequence[int] | None, limit: int,
                       now: datetime) -> PageResult:
    """Reward grants ↔ postings: credit the grants never posted, send reward credits no grant explains to review."""
    missing = await grants.missing_credits(session, programs, limit)
    result = await credit_missing(session, missing, now=now)
    unexplained = await grants.unexplained_postings(session, programs, limit)
    filed = await file_unexplained(session, unexplained)
    return PageResult(last=None, checked=result.checked + len(unexplained), found=result.found + filed,
                      fixed=result.fixed)


def _finding(row: Any) -> Finding:
    m = row._mapping
    return Finding(id=m["id"], program_id=m["program_id"], contact_id=m["contact_id"], class_=m["class"],
                   subject=m["subject"], detail=m["detail"], status=m["status"], fix=m["fix"],
                   fixed_by=m["fixed_by"], note=m["note"], created_at=m["created_at"], resolved_at=m["resolved_at"])


async def list_findings(session: AsyncSession, *, status: str | None, class_: str | None, program_id: int | None,
                        before: int | None, limit: int) -> list[Finding]:
    rows = await session.execute(text("""
        SELECT * FROM ledger_findings
        WHERE (CAST(:s AS text) IS NULL OR status = :s) AND (CAST(:k AS text) IS NULL OR class = :k)
          AND (CAST(:p AS bigint) IS NULL OR program_id = :p) AND (CAST(:b AS bigint) IS NULL OR id < :b)
        ORDER BY id DESC LIMIT :limit
    """), {"s": status, "k": class_, "p": program_id, "b": before, "limit": limit})
    return [_finding(r) for r in rows]


async def resolve_finding(session: AsyncSession, finding_id: int, note: str) -> Finding:
    """A person closes an open finding with a note saying what they did."""
    row = (await session.execute(text("""
        UPDATE ledger_findings SET status = 'resolved', note = :n, resolved_at = now()
        WHERE id = :i AND status = 'open' RETURNING *
    """), {"i": finding_id, "n": note})).one_or_none()
    if row is not None:
        return _finding(row)
    found = (await session.execute(text("SELECT status FROM ledger_findings WHERE id = :i"),
                                   {"i": finding_id})).one_or_none()
    if found is None:
        raise NotFound(f"finding {finding_id} does not exist")
    raise Conflict(f"finding {finding_id} is {found.status}, not open; only open findings are resolved")
