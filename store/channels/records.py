"""Delivery records: a step to deliver through a fallback chain (`delivery_plans`), its channel attempts
(`delivery_attempts`) and the set-based moves between them.

`claim` is the heart: it locks the plans that are due (a new step, an ended receipt window, a failure, an ended
quiet period, a retry), asks domain/channels/fallback.py what each needs, screens the sends (address, suppression,
preferences, quiet hours, frequency cap) and records each send as a `queued` attempt before anything reaches a
provider, leasing the plan for `policy.lease`. The caller sends, then `record_results`. A worker that dies
in between leaves a queued attempt whose lease runs out: the sweeper sends that same attempt again, under the same
idempotency key — the one message a crash can repeat. `register_claimed` registers and claims new steps, one write per
plan (inserted already leased), in the caller's transaction: `DeliveryService.send`'s and a journey's move.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.channels.deliveries import FAILURE, ORDER, RANK, RECEIPT_STATES, SUCCESS, DeliveryState, suppresses
from domain.channels.fallback import Attempt, Done, Send, Wait, decide, message_key
from domain.channels.policy import DeliveryPolicy
from domain.channels.preferences import subscribed
from domain.channels.quiet import next_allowed
from domain.zones import zone
from store.channels import caps, preferences, suppressions
from store.channels.addresses import address_hash, reach
from store.channels.arrays import bools, ints, texts, times

ORDER_NAMES = [s.value for s in ORDER]
SENT_OR_LATER = frozenset({DeliveryState.SENT}) | SUCCESS
OPENED_OR_CLICKED = frozenset({DeliveryState.OPENED, DeliveryState.CLICKED})
CLICKED = frozenset({DeliveryState.CLICKED})

# Every statement of a round joins a batch (unnest of arrays) to the tables by primary key. Left to itself the planner
# guesses a filtered join over a freshly grown table small, and loops over a materialised sequential scan: quadratic
# in the table's size (a 1 s UPDATE at 5k plans, 5 s at 15k, in `nudge bench journey`). Index lookups are what a
# batch of keys needs whatever the statistics say; `SET LOCAL` keeps this to the round's own transaction.
BY_KEY = """SELECT set_config('enable_seqscan', 'off', true), set_config('enable_hashjoin', 'off', true),
                   set_config('enable_mergejoin', 'off', true)"""


async def by_key(session: AsyncSession) -> None:
    """Plan the rest of the transaction as key lookups (see BY_KEY); for the delivery service's own transactions."""
    await session.execute(text(BY_KEY))


@dataclass(frozen=True)
class Step:
    """One step of one contact to deliver. `content` holds the rendered message per channel of the chain:
    `{"email": {"subject": ..., "text": ..., "html": ...}, "sms": {"text": ...}, "wechat": {"data": {...}}}`."""

    contact_id: int
    key: str
    chain: list[str]
    content: dict[str, dict[str, Any]]
    topic: str | None = None
    transactional: bool = False


@dataclass(frozen=True)
class Job:
    """One message to hand to a channel now."""

    contact_id: int
    key: str
    number: int
    channel: str
    address: str
    content: dict[str, Any]
    topic: str | None
    tries: int
    fallback: bool = False  # the chain has a channel after this one

    @property
    def message_key(self) -> str:
        return message_key(self.key, self.number)


@dataclass(frozen=True)
class Outcome:
    job: Job
    accepted: bool
    provider_message_id: str | None = None
    error: str | None = None
    error_class: str | None = None  # retryable | non_retryable | unreachable


@dataclass
class Claimed:
    jobs: list[Job] = field(default_factory=list)
    done: int = 0
    deferred: int = 0
    suppressed: int = 0

    def merge(self, other: Claimed) -> None:
        self.jobs += other.jobs
        self.done, self.deferred = self.done + other.done, self.deferred + other.deferred
        self.suppressed += other.suppressed


async def register(session: AsyncSession, steps: Sequence[Step], now: datetime) -> int:
    """Record steps to deliver, due now; a step already recorded (a retried activity) is left alone. New rows."""
    return len(await _insert_plans(session, steps, "pending", now))


async def _insert_plans(session: AsyncSession, steps: Sequence[Step], status: str,
                        wake_at: datetime) -> list[tuple[int, str]]:
    """Insert the steps' plans in `status`, due at `wake_at`, one statement; a plan already recorded is left alone.
    Returns the (contact, key) of the plans inserted."""
    if not steps:
        return []
    rows = await session.execute(text("""
        INSERT INTO delivery_plans (contact_id, key, chain, content, topic, transactional, status, wake_at)
        SELECT c, k, ARRAY(SELECT jsonb_array_elements_text(ch)), co, t, tr, :status, :wake
        FROM unnest(CAST(:c AS bigint[]), CAST(:k AS text[]), CAST(:ch AS jsonb[]), CAST(:co AS jsonb[]),
                    CAST(:t AS text[]), CAST(:tr AS boolean[])) AS s(c, k, ch, co, t, tr)
        ON CONFLICT DO NOTHING
        RETURNING contact_id, key
    """), {"status": status, "wake": wake_at, "c": ints(s.contact_id for s in steps), "k": texts(s.key for s in steps),
           "ch": texts(orjson.dumps(s.chain).decode() for s in steps),
           "co": texts(orjson.dumps(s.content).decode() for s in steps), "t": texts(s.topic for s in steps),
           "tr": bools(s.transactional for s in steps)})
    return [(r.contact_id, r.key) for r in rows]


async def claim(session: AsyncSession, policy: DeliveryPolicy, now: datetime, *,
                only: Sequence[tuple[int, str]] | None = None, limit: int = 500) -> Claimed:
    """Lock up to `limit` due plans (of `only`, if given), decide and screen them, record the sends as queued
    attempts and return them. Plans another transaction holds are skipped: it is deciding them."""
    params: dict[str, Any] = {"now": now, "n": limit}
    where = "wake_at <= :now"
    if only is not None:
        where += " AND (contact_id, key) IN (SELECT * FROM unnest(CAST(:oc AS bigint[]), CAST(:ok AS text[])))"
        params |= {"oc": ints(o[0] for o in only), "ok": texts(o[1] for o in only)}
    plans = {(r.contact_id, r.key): r for r in await session.execute(text(f"""
        SELECT contact_id, key, chain, content, topic, transactional FROM delivery_plans
        WHERE {where} ORDER BY wake_at LIMIT :n FOR UPDATE SKIP LOCKED
    """), params)}
    if not plans:
        return Claimed()
    attempts: dict[tuple[int, str], dict[int, Any]] = {pk: {} for pk in plans}
    for a in await session.execute(text("""
        SELECT a.contact_id, a.key, a.attempt, a.channel, a.status, a.receipt_due_at, a.retry_at, a.tries
        FROM delivery_attempts a JOIN unnest(CAST(:c AS bigint[]), CAST(:k AS text[])) AS p(c, k)
          ON a.contact_id = p.c AND a.key = p.k
    """), {"c": ints(pk[0] for pk in plans), "k": texts(pk[1] for pk in plans)}):
        attempts[(a.contact_id, a.key)][a.attempt] = a
    return await _decide(session, policy, now, plans, attempts)


async def register_claimed(session: AsyncSession, policy: DeliveryPolicy, steps: Sequence[Step],
                           now: datetime) -> Claimed:
    """`register` and `claim` in one for steps that are due now and new (a journey's move registers its sends with
    the state change): each plan is written once, already leased as `claim` leaves a plan whose send it hands
    out, and only a plan decided otherwise (quiet hours, a refused channel) is updated. A step already recorded
    is left alone and not claimed, as `register` leaves it."""
    if not steps:
        return Claimed()
    await by_key(session)  # the screening joins, as in the delivery service's own transactions
    by_pk = {(st.contact_id, st.key): st for st in steps}
    plans = {pk: by_pk[pk] for pk in await _insert_plans(session, list(by_pk.values()), "sending", now + policy.lease)}
    if not plans:
        return Claimed()
    return await _decide(session, policy, now, plans, {pk: {} for pk in plans}, leased=True)


async def _decide(session: AsyncSession, policy: DeliveryPolicy, now: datetime, plans: Mapping[tuple[int, str], Any],
                  attempts: dict[tuple[int, str], dict[int, Any]], *, leased: bool = False) -> Claimed:
    """The body of `claim`: decide and screen the locked `plans` (rows or steps: contact_id, key, chain, content,
    topic, transactional) given their `attempts`, record the sends as queued attempts and settle the plans.
    `leased`: the plans are written leased already; only those decided otherwise are updated."""
    claimed = Claimed()
    contacts = sorted({c for c, _ in plans})
    reached = await reach(session, contacts)
    rules = await preferences.rules(session, contacts)
    hashed: dict[tuple[str, str], str] = {}  # (channel, address) → its hash, each hashed once

    def hash_of(channel: str, address: str) -> str:
        found = hashed.get((channel, address))
        if found is None:
            found = hashed[(channel, address)] = address_hash(channel, address)
        return found

    # The addresses the plans' chains can reach; a contact's other channels are no concern of this batch.
    listed = await suppressions.suppressed(session, {
        (ch, hash_of(ch, address)) for (c, _), plan in plans.items() if (r := reached.get(c)) is not None
        for ch in plan.chain if (address := r.addresses.get(ch))})

    writes: dict[tuple[int, str, int], dict[str, Any]] = {}  # attempt rows to upsert
    settle: dict[tuple[int, str], tuple[str, str | None, datetime | None, datetime | None]] = {}

    def views(pk: tuple[int, str]) -> list[Attempt]:
        return [Attempt(n, a["channel"] if isinstance(a, dict) else a.channel,
                        DeliveryState(a["status"] if isinstance(a, dict) else a.status),
                        a["receipt_due_at"] if isinstance(a, dict) else a.receipt_due_at,
                        a["retry_at"] if isinstance(a, dict) else a.retry_at)
                for n, a in attempts[pk].items()]

    def refuse(pk: tuple[int, str], send: Send, error_class: str, error: str) -> None:
        row = {"channel": send.channel, "status": DeliveryState.SUPPRESSED.value, "error_class": error_class,
               "error": error, "receipt_due_at": None, "retry_at": None, "tries": 0, "address_hash": None}
        attempts[pk][send.number] = row
        writes[(*pk, send.number)] = row
        claimed.suppressed += 1

    pending = list(plans)
    for _ in range(max(len(p.chain) for p in plans.values()) + 1):
        if not pending:
            break
        asks: list[tuple[tuple[int, str], Send, str, str]] = []
        again: list[tuple[int, str]] = []
        for pk in pending:
            plan = plans[pk]
            decision = decide(plan.chain, views(pk), now)
            if isinstance(decision, Done):
                settle[pk] = ("done", decision.outcome, None, None)
                claimed.done += 1
                continue
            if isinstance(decision, Wait):
                settle[pk] = ("waiting", None, decision.until, None)
                continue
            assert isinstance(decision, Send)
            contact = reached.get(pk[0])
            address = contact.addresses.get(decision.channel) if contact else None
            previous = attempts[pk].get(decision.number)
            if previous is not None:  # the same attempt again: its lease ran out or a retry is due
                if address is None:
                    refuse(pk, decision, "unreachable", f"no {decision.channel} address any more")
                    again.append(pk)
                    continue
                asks.append((pk, decision, address, "resend"))
                continue
            if not plan.transactional:
                allowed = next_allowed(now, zone(contact.timezone if contact else None, policy.default_zone),
                                       policy.quiet)
                if allowed > now:
                    settle[pk] = ("deferred", None, allowed, allowed)
                    claimed.deferred += 1
                    continue
            if address is None:
                refuse(pk, decision, "unreachable", f"contact has no {decision.channel} address")
                again.append(pk)
                continue
            reason = listed.get((decision.channel, hash_of(decision.channel, address)))
            if reason is not None:
                refuse(pk, decision, "suppressed", f"address suppressed ({reason})")
                again.append(pk)
                continue
            if not subscribed(rules.get(pk[0], {}), plan.topic, decision.channel, transactional=plan.transactional):
                refuse(pk, decision, "unsubscribed", f"contact opted out of {plan.topic or 'all topics'} "
                                                     f"on {decision.channel}")
                again.append(pk)
                continue
            asks.append((pk, decision, address, "new"))
        capped = [(pk[0], pk[1], send.channel) for pk, send, _, kind in asks
                  if kind == "new" and not plans[pk].transactional]
        verdicts = await caps.take(session, capped, policy.caps, now) if capped else {}
        for pk, send, address, _ in asks:
            cap = verdicts.get(pk)
            if cap is not None:
                refuse(pk, send, "cap", f"frequency cap reached: {cap}")
                again.append(pk)
                continue
            previous = attempts[pk].get(send.number)
            tries = (previous["tries"] if isinstance(previous, dict) else previous.tries) if previous else 0
            row = {"channel": send.channel, "status": DeliveryState.QUEUED.value, "error_class": None, "error": None,
                   "receipt_due_at": None, "retry_at": now + policy.lease, "tries": tries + 1,
                   "address_hash": hash_of(send.channel, address)}
            attempts[pk][send.number] = row
            writes[(*pk, send.number)] = row
            settle[pk] = ("sending", None, now + policy.lease, None)
            plan = plans[pk]
            claimed.jobs.append(Job(pk[0], pk[1], send.number, send.channel, address,
                                    dict(plan.content.get(send.channel) or {}), plan.topic, tries + 1,
                                    fallback=send.number < len(plan.chain)))
        pending = again
    await _write_attempts(session, writes, now)
    if leased:
        sending = ("sending", None, now + policy.lease, None)
        settle = {pk: state for pk, state in settle.items() if state != sending}
    await _settle(session, settle, now)
    return claimed


async def _write_attempts(session: AsyncSession, writes: dict[tuple[int, str, int], dict[str, Any]],
                          now: datetime) -> None:
    if not writes:
        return
    keys = list(writes)
    rows = [writes[k] for k in keys]
    await session.execute(text("""
        INSERT INTO delivery_attempts (contact_id, key, attempt, channel, status, error_class, error, retry_at,
                                       tries, address_hash, queued_at, failed_at, updated_at)
        SELECT c, k, n, ch, s, ec, e, r, t, h, :now, CASE WHEN s = 'suppressed' THEN CAST(:now AS timestamptz) END,
               :now
        FROM unnest(CAST(:c AS bigint[]), CAST(:k AS text[]), CAST(:n AS smallint[]), CAST(:ch AS text[]),
                    CAST(:s AS text[]), CAST(:ec AS text[]), CAST(:e AS text[]), CAST(:r AS timestamptz[]),
                    CAST(:t AS smallint[]), CAST(:h AS text[])) AS w(c, k, n, ch, s, ec, e, r, t, h)
        ON CONFLICT (contact_id, key, attempt) DO UPDATE SET tries = excluded.tries, retry_at = excluded.retry_at,
            updated_at = excluded.updated_at
    """), {"now": now, "c": ints(k[0] for k in keys), "k": texts(k[1] for k in keys), "n": ints(k[2] for k in keys),
           "ch": texts(r["channel"] for r in rows), "s": texts(r["status"] for r in rows),
           "ec": texts(r["error_class"] for r in rows), "e": texts(r["error"] for r in rows),
           "r": times(r["retry_at"] for r in rows), "t": ints(r["tries"] for r in rows),
           "h": texts(r["address_hash"] for r in rows)})


async def _settle(session: AsyncSession,
                  settle: dict[tuple[int, str], tuple[str, str | None, datetime | None, datetime | None]],
                  now: datetime) -> None:
    """Set each plan's status, outcome and next wake-up (NULL when done)."""
    if not settle:
        return
    keys = list(settle)
    await session.execute(text("""
        UPDATE delivery_plans p SET status = u.s, outcome = u.o, wake_at = u.w,
            deferred_until = coalesce(u.d, p.deferred_until),
            finished_at = CASE WHEN u.s = 'done' THEN CAST(:now AS timestamptz) END
        FROM unnest(CAST(:c AS bigint[]), CAST(:k AS text[]), CAST(:s AS text[]), CAST(:o AS text[]),
                    CAST(:w AS timestamptz[]), CAST(:d AS timestamptz[])) AS u(c, k, s, o, w, d)
        WHERE p.contact_id = u.c AND p.key = u.k
    """), {"now": now, "c": ints(k[0] for k in keys), "k": texts(k[1] for k in keys),
           "s": texts(settle[k][0] for k in keys), "o": texts(settle[k][1] for k in keys),
           "w": times(settle[k][2] for k in keys), "d": times(settle[k][3] for k in keys)})


@dataclass(frozen=True)
class Change:
    """A report about one attempt: from the provider's send result, a receipt, an open pixel or a click."""

    contact_id: int
    key: str
    attempt: int
    state: DeliveryState
    at: datetime
    provider_message_id: str | None = None
    error: str | None = None
    error_class: str | None = None
    receipt_due_at: datetime | None = None
    retry_at: datetime | None = None
    tries: int | None = None


async def record_results(session: AsyncSession, policy: DeliveryPolicy, outcomes: Sequence[Outcome],
                         now: datetime) -> int:
    """Record what the channels said about the jobs `claim` handed out; returns the plans to decide again now
    (a permanent failure falls back at once)."""
    changes = []
    ids = []
    for o in outcomes:
        j = o.job
        if o.accepted:
            state = DeliveryState.DELIVERED if j.channel in policy.delivered_on_accept else DeliveryState.SENT
            window = policy.window(j.channel)
            changes.append(Change(j.contact_id, j.key, j.number, state, now, o.provider_message_id,
                                  receipt_due_at=now + window if window is not None and state is DeliveryState.SENT
                                  else None))
            if o.provider_message_id:
                ids.append((j.channel, o.provider_message_id, j.contact_id, j.key, j.number))
        elif o.error_class == "throttled" or (o.error_class == "retryable" and j.tries < policy.max_tries):
            changes.append(Change(j.contact_id, j.key, j.number, DeliveryState.QUEUED, now, error=o.error,
                                  error_class=o.error_class, retry_at=now + policy.retry_after))
        else:
            error = o.error if o.error_class != "retryable" else f"gave up after {j.tries} tries: {o.error}"
            changes.append(Change(j.contact_id, j.key, j.number, DeliveryState.FAILED, now, error=error,
                                  error_class=o.error_class or "non_retryable"))
    if ids:
        await session.execute(text("""
            INSERT INTO delivery_provider_ids (channel, provider_message_id, contact_id, key, attempt)
            SELECT * FROM unnest(CAST(:ch AS text[]), CAST(:p AS text[]), CAST(:c AS bigint[]), CAST(:k AS text[]),
                                 CAST(:n AS smallint[]))
            ON CONFLICT DO NOTHING
        """), {"ch": texts(i[0] for i in ids), "p": texts(i[1] for i in ids), "c": ints(i[2] for i in ids),
               "k": texts(i[3] for i in ids), "n": ints(i[4] for i in ids)})
    due = await apply(session, changes, now)
    if ids:
        # Applied separately: one statement moves each attempt once, and an early report may be about the very
        # attempt this batch just recorded as sent.
        due += await apply(session, await _take_early(session, ids), now)
    return due


async def park_early(session: AsyncSession, reports: Sequence[tuple[str, str, str, datetime, str | None]]) -> None:
    """Keep reports about provider message ids not recorded yet: (channel, provider id, status, at, error)."""
    if not reports:
        return
    await session.execute(text("""
        INSERT INTO early_receipts (channel, provider_message_id, status, at, error)
        SELECT * FROM unnest(CAST(:ch AS text[]), CAST(:p AS text[]), CAST(:s AS text[]),
                             CAST(:at AS timestamptz[]), CAST(:e AS text[]))
        ON CONFLICT DO NOTHING
    """), {"ch": [r[0] for r in reports], "p": [r[1] for r in reports], "s": [r[2] for r in reports],
           "at": [r[3] for r in reports], "e": [r[4] for r in reports]})


async def _take_early(session: AsyncSession, ids: Sequence[tuple[str, str, int, str, int]]) -> list[Change]:
    """The parked reports about the provider ids just recorded, removed from the parking table, as changes."""
    rows = await session.execute(text("""
        DELETE FROM early_receipts e
        USING unnest(CAST(:ch AS text[]), CAST(:p AS text[]), CAST(:c AS bigint[]), CAST(:k AS text[]),
                     CAST(:n AS smallint[])) AS i(ch, p, c, k, n)
        WHERE e.channel = i.ch AND e.provider_message_id = i.p
        RETURNING i.c, i.k, i.n, e.status, e.at, e.error
    """), {"ch": texts(i[0] for i in ids), "p": texts(i[1] for i in ids), "c": ints(i[2] for i in ids),
           "k": texts(i[3] for i in ids), "n": ints(i[4] for i in ids)})
    found = [(r[0], r[1], r[2], RECEIPT_STATES[r[3]], r[4], r[5]) for r in rows if r[3] in RECEIPT_STATES]
    # The furthest report per attempt (states are ordered): one change per attempt.
    best: dict[tuple[int, str, int], tuple[DeliveryState, datetime, str | None]] = {}
    for c, k, n, state, at, error in found:
        if (c, k, n) not in best or RANK[best[(c, k, n)][0]] < RANK[state]:
            best[(c, k, n)] = (state, at, error)
    return [Change(c, k, n, state, at, error=error,
                   error_class="non_retryable" if state is DeliveryState.FAILED else None)
            for (c, k, n), (state, at, error) in best.items()]


async def apply(session: AsyncSession, changes: Sequence[Change], now: datetime) -> int:
    """Move attempts forward (never backwards: domain/channels/deliveries.py), feed bounces and complaints to the
    suppression list, and settle their plans: success ends a plan, failure (or a retry) makes it due. Returns how
    many plans became due now."""
    if not changes:
        return 0
    folded: dict[tuple[int, str, int], list[Change]] = {}
    for c in changes:
        folded.setdefault((c.contact_id, c.key, c.attempt), []).append(c)
    keys = list(folded)

    def first(group: list[Change], states: frozenset[DeliveryState]) -> datetime | None:
        return min((c.at for c in group if c.state in states), default=None)

    best = [_best(folded[k]) for k in keys]
    p = {"c": ints(k[0] for k in keys), "k": texts(k[1] for k in keys), "n": ints(k[2] for k in keys),
         "s": texts(b.state.value for b in best), "order": ORDER_NAMES,
         "pid": texts(next((c.provider_message_id for c in folded[k] if c.provider_message_id), None) for k in keys),
         "e": texts(next((c.error for c in folded[k] if c.error), None) for k in keys),
         "ec": texts(next((c.error_class for c in folded[k] if c.error_class), None) for k in keys),
         "due": times(b.receipt_due_at for b in best), "retry": times(b.retry_at for b in best),
         "sent": times(first(folded[k], SENT_OR_LATER) for k in keys),
         "deliv": times(first(folded[k], SUCCESS) for k in keys),
         "open": times(first(folded[k], OPENED_OR_CLICKED) for k in keys),
         "click": times(first(folded[k], CLICKED) for k in keys),
         "fail": times(first(folded[k], FAILURE) for k in keys), "now": now}
    reasons = {k: sorted(r for r in {suppresses(c.state) for c in folded[k]} if r) for k in keys}
    p |= {"feed": bools(bool(reasons[k]) for k in keys), "success": [x.value for x in SUCCESS],
          "failure": [x.value for x in FAILURE]}
    # One statement: the attempts move, then the plans whose latest attempt moved settle (`_FOLLOW`); back come how
    # many plans are due again now and the attempts whose reports feed the suppression list.
    due, fed = (await session.execute(text("""
        WITH u AS (
            SELECT * FROM unnest(CAST(:c AS bigint[]), CAST(:k AS text[]), CAST(:n AS smallint[]), CAST(:s AS text[]),
                                 CAST(:pid AS text[]), CAST(:e AS text[]), CAST(:ec AS text[]),
                                 CAST(:due AS timestamptz[]), CAST(:retry AS timestamptz[]),
                                 CAST(:sent AS timestamptz[]), CAST(:deliv AS timestamptz[]),
                                 CAST(:open AS timestamptz[]), CAST(:click AS timestamptz[]),
                                 CAST(:fail AS timestamptz[]), CAST(:feed AS boolean[]))
                AS u(c, k, n, s, pid, e, ec, due, retry, sent, deliv, open, click, fail, feed)
        ), moved AS (
            UPDATE delivery_attempts a SET
                status = CASE WHEN array_position(CAST(:order AS text[]), u.s)
                                   > array_position(CAST(:order AS text[]), a.status)
                              THEN u.s ELSE a.status END,
                provider_message_id = coalesce(a.provider_message_id, u.pid),
                error = CASE WHEN u.e IS NOT NULL THEN u.e ELSE a.error END,
                error_class = coalesce(u.ec, a.error_class),
                receipt_due_at = CASE WHEN a.status = 'queued' AND u.s <> 'queued' THEN u.due
                                      ELSE a.receipt_due_at END,
                retry_at = CASE WHEN u.s = 'queued' THEN u.retry WHEN a.status = 'queued' THEN NULL
                                ELSE a.retry_at END,
                sent_at = least(a.sent_at, u.sent), delivered_at = least(a.delivered_at, u.deliv),
                opened_at = least(a.opened_at, u.open), clicked_at = least(a.clicked_at, u.click),
                failed_at = least(a.failed_at, u.fail), updated_at = :now
            FROM u WHERE a.contact_id = u.c AND a.key = u.k AND a.attempt = u.n
            RETURNING a.contact_id, a.key, a.attempt, a.channel, a.status, a.address_hash, a.receipt_due_at,
                      a.retry_at, u.feed
        ), settled AS (""" + _FOLLOW + """)
        SELECT (SELECT count(*) FROM settled WHERE wake_at <= :now),
               (SELECT coalesce(jsonb_agg(jsonb_build_array(contact_id, key, attempt, channel, address_hash)), '[]')
                FROM moved WHERE feed AND address_hash IS NOT NULL)
    """), p)).one()
    await suppressions.add(session, [(channel, hashed, c, reason, f"{k} attempt {n}")
                                     for c, k, n, channel, hashed in fed for reason in reasons[(c, k, n)]])
    return int(due)


# Settle the plans whose latest attempt `moved` holds. A plan that ended as merely `sent` (a channel without receipts)
# reopens on a later failure report: an email bounce still falls back. (The attempts' snapshot is the statement's:
# `moved` changes no attempt number.)
_FOLLOW = """
    UPDATE delivery_plans p SET status = f.s, outcome = f.o, wake_at = f.w,
        finished_at = CASE WHEN f.s = 'done' THEN coalesce(p.finished_at, CAST(:now AS timestamptz)) END
    FROM (
        SELECT m.contact_id, m.key, m.attempt,
               CASE WHEN m.status = ANY(CAST(:success AS text[])) THEN 'done'
                    WHEN m.status = ANY(CAST(:failure AS text[])) THEN 'pending'
                    WHEN m.status = 'sent' AND m.receipt_due_at IS NULL THEN 'done'
                    WHEN m.status = 'sent' THEN 'waiting'
                    WHEN m.status = 'queued' AND m.retry_at IS NOT NULL THEN 'pending' END,
               CASE WHEN m.status = ANY(CAST(:success AS text[])) THEN 'delivered'
                    WHEN m.status = 'sent' AND m.receipt_due_at IS NULL THEN 'sent' END,
               CASE WHEN m.status = ANY(CAST(:failure AS text[])) THEN CAST(:now AS timestamptz)
                    WHEN m.status = 'sent' THEN m.receipt_due_at
                    WHEN m.status = 'queued' THEN m.retry_at END
        FROM moved m
    ) AS f(contact_id, key, attempt, s, o, w)
    WHERE f.s IS NOT NULL AND p.contact_id = f.contact_id AND p.key = f.key
      AND (p.finished_at IS NULL OR p.outcome = 'sent')
      AND f.attempt = (SELECT max(a.attempt) FROM delivery_attempts a WHERE a.contact_id = f.contact_id
                       AND a.key = f.key)
    RETURNING p.wake_at
"""


def _best(group: list[Change]) -> Change:
    """The report that wins (the latest state in the order; the first of equals)."""
    return max(group, key=lambda c: RANK[c.state])


async def lookup(session: AsyncSession, ids: Sequence[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, str, int]]:
    """(channel, provider message id) → (contact, delivery key, attempt)."""
    if not ids:
        return {}
    rows = await session.execute(text("""
        SELECT d.channel, d.provider_message_id, d.contact_id, d.key, d.attempt FROM delivery_provider_ids d
        JOIN unnest(CAST(:ch AS text[]), CAST(:p AS text[])) AS i(ch, p)
          ON d.channel = i.ch AND d.provider_message_id = i.p
    """), {"ch": [i[0] for i in ids], "p": [i[1] for i in ids]})
    return {(r.channel, r.provider_message_id): (r.contact_id, r.key, r.attempt) for r in rows}


@dataclass(frozen=True)
class AttemptRecord:
    key: str
    attempt: int
    channel: str
    status: str
    provider_message_id: str | None
    error_class: str | None
    error: str | None
    queued_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None
    opened_at: datetime | None
    clicked_at: datetime | None
    failed_at: datetime | None
    receipt_due_at: datetime | None
    plan_status: str
    outcome: str | None


async def attempts_of(session: AsyncSession, contact_id: int, *, key: str | None = None,
                      limit: int = 100) -> list[AttemptRecord]:
    rows = await session.execute(text("""
        SELECT a.key, a.attempt, a.channel, a.status, a.provider_message_id, a.error_class, a.error, a.queued_at,
               a.sent_at, a.delivered_at, a.opened_at, a.clicked_at, a.failed_at, a.receipt_due_at,
               p.status AS plan_status, p.outcome
        FROM delivery_attempts a JOIN delivery_plans p ON p.contact_id = a.contact_id AND p.key = a.key
        WHERE a.contact_id = :c AND (CAST(:k AS text) IS NULL OR a.key = :k)
        ORDER BY a.queued_at DESC, a.key, a.attempt LIMIT :n
    """), {"c": contact_id, "k": key, "n": limit})
    return [AttemptRecord(*r) for r in rows]


async def exists(session: AsyncSession, contact_id: int, key: str, attempt: int) -> bool:
    return (await session.scalar(text(
        "SELECT 1 FROM delivery_attempts WHERE contact_id = :c AND key = :k AND attempt = :n"),
        {"c": contact_id, "k": key, "n": attempt})) is not None
