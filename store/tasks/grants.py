"""Reward grants: the outbox between the progress engine and the ledger, the reward-issuance saga's steps, manual
claims and the lapse of unclaimed rewards.

A grant's reference `reward:{task}:{contact}:{period}:{n}` is its unique key and the ledger posting's reference,
so a step retried after a crash posts nothing twice (seed 004: bind every grant to an order id, compensate
offline). Batches are claimed by the dispatcher (`batch` = the issuance workflow's id, from the batch's first and
last grant ids); every step below moves grants of one batch from one status to the next, so each is idempotent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import DomainError
from domain.ledger.operations import MissingCredit
from domain.ledger.postings import Kind, Request
from domain.promotions.coupons import display
from domain.tasks.lifecycle import GrantStatus, check_claim
from domain.tasks.progress import ProgressStatus
from store.ledger.postings import apply, existing
from store.ledger.receipts import Receipt, Submission
from store.ledger.screening import screen_credit
from store.promotions.coupons import issue_coupon, take_back


@dataclass(frozen=True)
class Grant:
    id: int
    task_id: int
    contact_id: int
    period_key: str
    n: int
    reference: str
    program_id: int
    amount: int
    status: GrantStatus
    claim_deadline: datetime | None
    batch: str | None
    failure: str | None
    created_at: datetime
    reward_type: str = "points"
    coupon_template_id: int | None = None
    coupon_codes: tuple[str, ...] = ()  # as shown to the contact (XXXX-XXXX-XXXX-C)

    @property
    def coupon_references(self) -> list[str]:
        """The references its coupons are issued under: `{reference}#{i}`, one per coupon."""
        return [coupon_reference(self.reference, i) for i in range(self.amount)]


def coupon_reference(reference: str, i: int) -> str:
    return f"{reference}#{i}"


@dataclass(frozen=True)
class GrantBatch:
    workflow_id: str
    first: int
    last: int
    size: int
    task_id: int | None  # when every grant of the batch is of one task


def grant_of(row: Any) -> Grant:
    m = row._mapping
    return Grant(m["id"], m["task_id"], m["contact_id"], m["period_key"], m["n"], m["reference"], m["program_id"],
                 m["amount"], GrantStatus(m["status"]), m["claim_deadline"], m["batch"], m["failure"],
                 m["created_at"], m["reward_type"], m["coupon_template_id"],
                 tuple(display(c) for c in m["coupon_codes"] or ()))


def batch_id(first: int, last: int) -> str:
    return f"reward-issuance:{first}-{last}"


async def claim_batches(session: AsyncSession, *, batch_size: int, max_batches: int, now: datetime,
                        restart_after: timedelta = timedelta(seconds=30),
                        task_id: int | None = None) -> list[GrantBatch]:
    """Batches for the dispatcher to start: new pending grants cut into batches (locked, so two dispatchers
    never cut the same grant twice), and batches cut earlier whose workflow has not picked them up after
    `restart_after` (the dispatcher crashed between cutting and starting; starting again is a no-op if it runs)."""
    rows = (await session.execute(text("""
        SELECT id, task_id FROM task_grants WHERE status = 'pending' AND batch IS NULL
          AND (CAST(:t AS bigint) IS NULL OR task_id = :t)
        ORDER BY id LIMIT :n FOR UPDATE SKIP LOCKED
    """), {"n": batch_size * max_batches, "t": task_id})).all()
    batches: list[GrantBatch] = []
    for i in range(0, len(rows), batch_size):
        chunk = rows[i:i + batch_size]
        tasks = {r.task_id for r in chunk}
        batches.append(GrantBatch(batch_id(chunk[0].id, chunk[-1].id), chunk[0].id, chunk[-1].id, len(chunk),
                                  next(iter(tasks)) if len(tasks) == 1 else None))
    if batches:
        await session.execute(text("""
            UPDATE task_grants g SET batch = k.b, updated_at = :now
            FROM unnest(CAST(:ids AS bigint[]), CAST(:bs AS text[])) AS k(id, b) WHERE g.id = k.id
        """), {"ids": [r.id for r in rows],
               "bs": [b.workflow_id for b in batches for _ in range(b.size)], "now": now})
    stale = (await session.execute(text("""
        SELECT batch, min(id) AS first, max(id) AS last, count(*) AS size,
               CASE WHEN count(DISTINCT task_id) = 1 THEN min(task_id) END AS task_id
        FROM task_grants WHERE status = 'pending' AND batch IS NOT NULL AND updated_at < :before
          AND (CAST(:t AS bigint) IS NULL OR task_id = :t)
        GROUP BY batch ORDER BY min(id) LIMIT :n
    """), {"before": now - restart_after, "n": max_batches, "t": task_id})).all()
    return batches + [GrantBatch(r.batch, r.first, r.last, r.size, r.task_id) for r in stale]


async def begin(session: AsyncSession, batch: str, now: datetime) -> list[Grant]:
    """Saga step 1: the batch's grants are being issued (pending → issuing); returns those issuing."""
    rows = await session.execute(text("""
        UPDATE task_grants SET status = 'issuing', updated_at = :now
        WHERE batch = :b AND status IN ('pending', 'issuing') RETURNING *
    """), {"b": batch, "now": now})
    return sorted((grant_of(r) for r in rows), key=lambda g: g.id)


async def issuing(session: AsyncSession, batch: str) -> list[Grant]:
    rows = await session.execute(text("SELECT * FROM task_grants WHERE batch = :b AND status = 'issuing' ORDER BY id"),
                                 {"b": batch})
    return [grant_of(r) for r in rows]


def _credit(g: Grant) -> Request:
    return Request(g.reference, Kind.CREDIT, g.contact_id, g.amount, memo=f"task {g.task_id} reward")


async def post_rewards(session: AsyncSession, batch: str, *, now: datetime) -> dict[str, int]:
    """Saga step 2: credit the batch's rewards through the ledger's posting service, in one call, each under its
    reference (a replay answers with the original receipt). The ledger's risk controls screen each credit first:
    a held one stays `held` until its review is decided; a refused one fails (its budget released). Coupon grants
    post nothing (their coupons are issued by `issue_coupons`)."""
    grants = [g for g in await issuing(session, batch) if g.reward_type == "points"]
    to_post: list[Grant] = []
    held: list[int] = []
    failed: dict[int, str] = {}
    for g in grants:
        try:
            review = await screen_credit(session, g.program_id, _credit(g), device=None, ip=None, now=now)
        except DomainError as exc:
            failed[g.id] = str(exc)
            continue
        if review is None:
            to_post.append(g)
        else:
            held.append(g.id)
    outcomes = await apply(session, [Submission(g.program_id, _credit(g)) for g in to_post], now=now)
    for g, outcome in zip(to_post, outcomes, strict=True):
        if not isinstance(outcome, Receipt):
            failed[g.id] = str(outcome)
    await session.execute(text("UPDATE task_grants SET status = 'held', updated_at = :now WHERE id = ANY(:ids)"),
                          {"ids": held, "now": now})
    await _fail(session, failed, now)
    return {"posted": len(to_post) - sum(1 for g in to_post if g.id in failed), "held": len(held),
            "failed": len(failed)}


async def _fail(session: AsyncSession, failed: dict[int, str], now: datetime) -> None:
    """Fail grants (from issuing or held) and give their amounts back to their tasks' budgets, once."""
    if not failed:
        return
    await session.execute(text("""
        WITH f AS (
            UPDATE task_grants g SET status = 'failed', failure = k.why, updated_at = :now
            FROM unnest(CAST(:ids AS bigint[]), CAST(:why AS text[])) AS k(id, why)
            WHERE g.id = k.id AND g.status IN ('issuing', 'held', 'claimable', 'pending')
            RETURNING g.task_id, g.amount
        ), t AS (SELECT task_id, sum(amount) AS amount FROM f GROUP BY task_id)
        UPDATE tasks SET reserved = tasks.reserved - t.amount, updated_at = :now FROM t
        WHERE tasks.id = t.task_id AND tasks.budget IS NOT NULL
    """), {"ids": list(failed), "why": list(failed.values()), "now": now})


async def finish(session: AsyncSession, batch: str, now: datetime) -> int:
    """Saga's last step: the batch's rewards are issued."""
    result = await session.execute(text("""
        UPDATE task_grants SET status = 'issued', updated_at = :now WHERE batch = :b AND status = 'issuing'
    """), {"b": batch, "now": now})
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def issue_coupons(session: AsyncSession, batch: str, *, now: datetime) -> dict[str, int]:
    """Saga step 3 (external benefits): issue the coupons of the batch's coupon grants, `amount` each, under
    `{reference}#{i}` (Promotions' `issue_coupon` returns the coupon of a reference it has seen, so a retried or
    re-run step issues nothing twice), and keep their codes on the grant. A grant Promotions refuses (template
    paused, out of stock, the contact's limit) fails alone — its coupons issued so far revoked, its budget
    released — inside a savepoint, so the rest of the batch is issued."""
    grants = [g for g in await issuing(session, batch) if g.reward_type == "coupon"]
    failed: dict[int, str] = {}
    codes: dict[int, list[str]] = {}
    for g in grants:
        assert g.coupon_template_id is not None
        try:
            async with session.begin_nested():
                codes[g.id] = [(await issue_coupon(session, g.coupon_template_id, g.contact_id, ref, now=now)).code
                               for ref in g.coupon_references]
        except DomainError as exc:
            failed[g.id] = f"coupon not issued: {exc}"
            await take_back(session, g.coupon_template_id, g.coupon_references)
    if codes:
        await session.execute(text("""
            UPDATE task_grants g SET coupon_codes = string_to_array(k.codes, ','), updated_at = :now
            FROM unnest(CAST(:ids AS bigint[]), CAST(:codes AS text[])) AS k(id, codes) WHERE g.id = k.id
        """), {"ids": list(codes), "codes": [",".join(c) for c in codes.values()], "now": now})
    await _fail(session, failed, now)
    return {"issued": sum(len(c) for c in codes.values()), "failed": len(failed)}


async def revoke_coupons(session: AsyncSession, batch: str, *, now: datetime) -> int:
    """Compensation: revoke the coupons the batch's coupon grants issued, their units back in the template's stock
    (`coupons.take_back`: idempotent, by reference, set-based per template). A coupon already redeemed cannot be
    taken back: its grant stays issued with the failure text `coupon redeemed before the compensation` (like a
    reversal the ledger refuses), for a person to look at; an expired or already revoked coupon needs nothing.
    Returns the coupons revoked or already revoked."""
    grants = [g for g in await issuing(session, batch) if g.reward_type == "coupon"]
    by_template: dict[int, list[Grant]] = {}
    for g in grants:
        assert g.coupon_template_id is not None
        by_template.setdefault(g.coupon_template_id, []).append(g)
    kept: dict[int, str] = {}
    taken = 0
    for template_id, gs in by_template.items():
        states = await take_back(session, template_id, [r for g in gs for r in g.coupon_references])
        taken += sum(1 for s in states.values() if s == "revoked")
        for g in gs:
            if any(states.get(r) == "redeemed" for r in g.coupon_references):
                kept[g.id] = "coupon redeemed before the compensation: not taken back"
    if kept:
        await session.execute(text("""
            UPDATE task_grants g SET status = 'issued', failure = k.why, updated_at = :now
            FROM unnest(CAST(:ids AS bigint[]), CAST(:why AS text[])) AS k(id, why) WHERE g.id = k.id
        """), {"ids": list(kept), "why": list(kept.values()), "now": now})
    return taken


def reversal_reference(reference: str) -> str:
    return f"{reference}:reverse"


async def reverse_postings(session: AsyncSession, batch: str, *, now: datetime) -> int:
    """Compensation: take back what the batch credited, each with its own reference `{reference}:reverse` (an
    adjustment; a replay answers with the original). A grant never posted has nothing to take back."""
    grants = [g for g in await issuing(session, batch) if g.reward_type == "points"]
    posted = await existing(session, [(g.program_id, g.reference) for g in grants])
    todo = [g for g in grants if (g.program_id, g.reference) in posted]
    outcomes = await apply(session, [Submission(g.program_id, Request(
        reversal_reference(g.reference), Kind.ADJUST, g.contact_id, -g.amount, memo="reward issuance compensated"))
        for g in todo], now=now)
    refused = {g.id: f"reversal refused: {o}" for g, o in zip(todo, outcomes, strict=True)
               if not isinstance(o, Receipt)}
    if refused:  # the points were already spent: the grant stays issued, and the finding is the failure text
        await session.execute(text("""
            UPDATE task_grants g SET status = 'issued', failure = k.why, updated_at = :now
            FROM unnest(CAST(:ids AS bigint[]), CAST(:why AS text[])) AS k(id, why) WHERE g.id = k.id
        """), {"ids": list(refused), "why": list(refused.values()), "now": now})
    return len(todo) - len(refused)


async def release_budget(session: AsyncSession, batch: str, reason: str, *, now: datetime) -> int:
    """Compensation: the batch's unissued grants fail and their budget is released (once: by status). Grants the
    saga had not begun yet (it was cancelled first) fail too: nothing else will start their batch again."""
    rows = await session.execute(text(
        "SELECT * FROM task_grants WHERE batch = :b AND status IN ('pending', 'issuing')"), {"b": batch})
    grants = [grant_of(r) for r in rows]
    await _fail(session, {g.id: reason for g in grants}, now)
    return len(grants)


async def settle_held(session: AsyncSession, *, now: datetime, limit: int = 1000) -> int:
    """Grants held by the ledger's risk review: released (posted under the grant's reference) → issued;
    rejected → failed, budget released."""
    rows = (await session.execute(text("""
        SELECT g.id, r.status FROM task_grants g
        JOIN ledger_reviews r ON r.program_id = g.program_id AND r.reference = g.reference
        WHERE g.status = 'held' AND r.status <> 'pending' ORDER BY g.id LIMIT :n
    """), {"n": limit})).all()
    await session.execute(text("UPDATE task_grants SET status = 'issued', updated_at = :now WHERE id = ANY(:ids)"),
                          {"ids": [r.id for r in rows if r.status == "released"], "now": now})
    await _fail(session, {r.id: "rejected by risk review" for r in rows if r.status != "released"}, now)
    return len(rows)


async def claim(session: AsyncSession, task_id: int, contact_id: int, *, now: datetime) -> list[Grant]:
    """A manual claim: the contact's claimable rewards of the task inside their window become pending (the
    dispatcher issues them). Refused with the reason when there is nothing to claim or the window closed."""
    rows = (await session.execute(text("""
        SELECT * FROM task_grants WHERE task_id = :t AND contact_id = :c
        ORDER BY (status = 'claimable') DESC, id DESC FOR UPDATE
    """), {"t": task_id, "c": contact_id})).all()
    grants = [grant_of(r) for r in rows]
    open_ = [g for g in grants if g.status is GrantStatus.CLAIMABLE and g.claim_deadline and g.claim_deadline >= now]
    if not open_:
        first = grants[0] if grants else None
        check_claim(first.status if first else None,
                    expired=bool(first and first.claim_deadline and first.claim_deadline < now))
    claimed = await session.execute(text("""
        UPDATE task_grants SET status = 'pending', updated_at = :now WHERE id = ANY(:ids) RETURNING *
    """), {"ids": [g.id for g in open_], "now": now})
    out = [grant_of(r) for r in claimed]
    await _mark_progress(session, out, ProgressStatus.CLAIMED, now)
    return sorted(out, key=lambda g: g.id)


async def _mark_progress(session: AsyncSession, grants: list[Grant], status: ProgressStatus, now: datetime) -> None:
    if grants:
        await session.execute(text("""
            UPDATE task_progress p SET status = :s, updated_at = :now
            FROM unnest(CAST(:c AS bigint[]), CAST(:t AS bigint[]), CAST(:k AS text[])) AS k(c, t, key)
            WHERE p.contact_id = k.c AND p.task_id = k.t AND p.period_key = k.key
        """), {"s": int(status), "now": now, "c": [g.contact_id for g in grants], "t": [g.task_id for g in grants],
               "k": [g.period_key for g in grants]})


async def lapse_expired(session: AsyncSession, *, now: datetime, task_id: int | None = None,
                        limit: int = 10_000) -> int:
    """Unclaimed rewards whose window closed lapse (set-based); their budget goes back to the task."""
    rows = (await session.execute(text("""
        SELECT * FROM task_grants WHERE status = 'claimable' AND claim_deadline < :now
          AND (CAST(:t AS bigint) IS NULL OR task_id = :t)
        ORDER BY id LIMIT :n FOR UPDATE SKIP LOCKED
    """), {"now": now, "t": task_id, "n": limit})).all()
    grants = [grant_of(r) for r in rows]
    if not grants:
        return 0
    await session.execute(text("""
        WITH f AS (
            UPDATE task_grants SET status = 'lapsed', failure = 'claim window closed', updated_at = :now
            WHERE id = ANY(:ids) RETURNING task_id, amount
        ), t AS (SELECT task_id, sum(amount) AS amount FROM f GROUP BY task_id)
        UPDATE tasks SET reserved = tasks.reserved - t.amount, updated_at = :now FROM t
        WHERE tasks.id = t.task_id AND tasks.budget IS NOT NULL
    """), {"ids": [g.id for g in grants], "now": now})
    await _mark_progress(session, grants, ProgressStatus.LAPSED, now)
    return len(grants)


async def list_grants(session: AsyncSession, *, task_id: int | None = None, contact_id: int | None = None,
                      status: str | None = None, after: int = 0, limit: int = 100) -> list[Grant]:
    rows = await session.execute(text("""
        SELECT * FROM task_grants
        WHERE id > :after AND (CAST(:t AS bigint) IS NULL OR task_id = :t)
          AND (CAST(:c AS bigint) IS NULL OR contact_id = :c) AND (CAST(:s AS text) IS NULL OR status = :s)
        ORDER BY id LIMIT :n
    """), {"after": after, "t": task_id, "c": contact_id, "s": status, "n": limit})
    return [grant_of(r) for r in rows]


class TaskGrants:
    """The ledger reconciliation's `GrantSource`: issued grants whose posting is missing (reconciliation credits
    them under the grant's reference) and `reward:` credits no grant explains (filed for review).

    Keyset-paged and bounded: each call reads at most `limit` grants (by id) and `limit` postings (by id) after
    its checkpoint (`task_grant_checks`, one row per program filter, moved in the caller's transaction), and wraps
    around at the end, so repeated runs sweep both tables however large they grow, and a table smaller than a page
    is checked whole on every run."""

    async def missing_credits(self, session: AsyncSession, programs: Sequence[int] | None,
                              limit: int) -> list[MissingCredit]:
        found: list[MissingCredit] = []

        async def page(after: int, upto: int | None, n: int) -> tuple[int, int | None]:
            rows = (await session.execute(text(GRANT_PAGE), {"after": after, "upto": upto, "n": n,
                                                             "p": _programs(programs)})).all()
            found.extend(MissingCredit(r.program_id, r.contact_id, r.reference, int(r.amount))
                         for r in rows if r.missing)
            return len(rows), rows[-1].id if rows else None

        await _sweep(session, "grants", programs, limit, page)
        return found

    async def unexplained_postings(self, session: AsyncSession, programs: Sequence[int] | None,
                                   limit: int) -> list[tuple[int, int, str]]:
        found: list[tuple[int, int, str]] = []

        async def page(after: int, upto: int | None, n: int) -> tuple[int, int | None]:
            rows = (await session.execute(text(POSTING_PAGE), {"after": after, "upto": upto, "n": n,
                                                               "p": _programs(programs)})).all()
            found.extend((r.program_id, r.contact_id, r.reference) for r in rows if r.unexplained)
            return len(rows), rows[-1].id if rows else None

        await _sweep(session, "postings", programs, limit, page)
        return found


def _programs(programs: Sequence[int] | None) -> list[int] | None:
    return sorted(programs) if programs is not None else None


# One page of grants by id (any status: the page bound is what is read), each flagged when it is issued and its
# posting is missing; one page of postings by id, each flagged when it is a `reward:` credit no grant explains and
# no open finding files yet.
GRANT_PAGE = """
    SELECT g.id, g.program_id, g.contact_id, g.reference, g.amount,
           (g.status = 'issued' AND g.failure IS NULL AND g.reward_type = 'points'
            AND NOT EXISTS (SELECT 1 FROM ledger_postings p WHERE p.program_id = g.program_id
                            AND p.reference = g.reference)) AS missing
    FROM task_grants g
    WHERE g.id > :after AND (CAST(:upto AS bigint) IS NULL OR g.id <= :upto)
      AND (CAST(:p AS bigint[]) IS NULL OR g.program_id = ANY(CAST(:p AS bigint[])))
    ORDER BY g.id LIMIT :n
"""
POSTING_PAGE = """
    SELECT p.id, p.program_id, p.contact_id, p.reference,
           (p.kind = 'credit' AND p.reference LIKE 'reward:%'
            -- A grant and its posting name the same contact (postings are immutable; a merge moves balances by
            -- new postings and leaves grants where they were): the contact's few grants, by index.
            AND NOT EXISTS (SELECT 1 FROM task_grants g WHERE g.contact_id = p.contact_id
                            AND g.reference = p.reference)
            AND NOT EXISTS (SELECT 1 FROM ledger_findings f WHERE f.class = 'posting_without_grant'
                            AND f.program_id = p.program_id AND f.subject = 'posting:' || p.reference)) AS unexplained
    FROM ledger_postings p
    WHERE p.id > :after AND (CAST(:upto AS bigint) IS NULL OR p.id <= :upto)
      AND (CAST(:p AS bigint[]) IS NULL OR p.program_id = ANY(CAST(:p AS bigint[])))
    ORDER BY p.id LIMIT :n
"""


async def _sweep(session: AsyncSession, table: str, programs: Sequence[int] | None, limit: int,
                 page: Any) -> None:
    """Read up to `limit` rows after the checkpoint, wrapping around to the start at the end of the table, and
    move the checkpoint (locked: two runs of the same scope take turns)."""
    scope = "all" if programs is None else "programs:" + ",".join(map(str, sorted(set(programs))))
    column = f"{table}_after"
    await session.execute(text("INSERT INTO task_grant_checks (scope) VALUES (:s) ON CONFLICT (scope) DO NOTHING"),
                          {"s": scope})
    after = int((await session.execute(text(f"SELECT {column} FROM task_grant_checks WHERE scope = :s FOR UPDATE"),
                                       {"s": scope})).scalar_one())
    read, last = await page(after, None, limit)
    if read == limit:
        checkpoint = last
    elif after == 0:
        checkpoint = 0  # the whole table fitted in the page
    else:  # the end: go round to the start, up to where this call began
        again, last = await page(0, after, limit - read)
        checkpoint = last if again == limit - read and last is not None and last < after else 0
    await session.execute(text(f"UPDATE task_grant_checks SET {column} = :c, updated_at = now() WHERE scope = :s"),
                          {"c": checkpoint or 0, "s": scope})
