"""Coupons: issuance to a contact (idempotent by a business reference — a claim, a task reward, a points purchase),
bulk generation of unassigned codes (COPY through a staging table), revocation, expiry, and the reservation of
coupons by orders (issued → reserved → redeemed, or released back to issued).

`issue_coupon(session, template_id, contact_id, reference)` is the service other domains call (incentive tasks
grant coupons with `reward:{task}:{contact}:{period}:{n}`): the same reference returns the same coupon.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import Conflict, DomainError, NotFound
from domain.promotions.coupons import display, make_code, normalize, validity
from domain.promotions.model import OfferedCoupon
from store.db import driver
from store.promotions import inventory
from store.promotions.promotions import get_template

MAX_BULK = 100_000


class CouponLimitReached(DomainError):
    status = 409
    title = "Coupon limit reached"


@dataclass(frozen=True)
class Coupon:
    id: int
    template_id: int
    code: str
    contact_id: int | None
    state: str
    reference: str | None
    order_id: str | None
    valid_from: datetime | None
    valid_until: datetime | None
    issued_at: datetime

    @property
    def display_code(self) -> str:
        return display(self.code)


_COLUMNS = "id, template_id, code, contact_id, state, reference, order_id, valid_from, valid_until, issued_at"


async def issue_coupon(session: AsyncSession, template_id: int, contact_id: int, reference: str, *,
                       now: datetime | None = None) -> Coupon:
    """Issue one coupon of a template to a contact, once per `reference` (the same reference again returns the
    coupon issued the first time). Refused if the template's stock or per-contact limit is used up."""
    now = now or datetime.now(UTC)
    existing = await _by_reference(session, template_id, reference)
    if existing is not None:
        return existing
    template = await get_template(session, template_id)
    if template.status != "active":
        raise Conflict(f"coupon template {template_id} is {template.status}")
    if template.per_contact_limit is not None:
        # Count under a lock per template and contact: two issues racing for a contact's last allowance take turns
        # (the second counts the first's coupon once it commits). The first may have been this very reference.
        await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('coupon_limit:' || :t || ':' || :c))"),
                              {"t": template_id, "c": contact_id})
        existing = await _by_reference(session, template_id, reference)
        if existing is not None:
            return existing
        held = await session.scalar(text(
            "SELECT count(*) FROM coupons WHERE contact_id = :c AND template_id = :t AND state <> 'revoked'"),
            {"c": contact_id, "t": template_id})
        if (held or 0) >= template.per_contact_limit:
            raise CouponLimitReached(f"contact {contact_id} already holds {held} coupon(s) of template {template_id} "
                                     f"(limit {template.per_contact_limit})")
    start, end = validity(issued_at=now, valid_from=template.valid_from, valid_until=template.valid_until,
                          valid_days=template.valid_days)
    if end is not None and end <= now:
        raise Conflict(f"coupon template {template_id} is no longer valid")
    holder = _issue_holder(template_id, reference)
    try:
        await inventory.reserve(session, holder, inventory.template_subject(template_id), 1, expires_at=now)
    except inventory.OutOfStock as exc:
        raise inventory.OutOfStock(f"coupon template {template_id} has no coupons left to issue") from exc
    await inventory.commit(session, holder)
    row = (await session.execute(text(f"""
        INSERT INTO coupons (template_id, code, contact_id, reference, valid_from, valid_until, issued_at)
        VALUES (:t, :code, :c, :r, :f, :u, :now)
        ON CONFLICT (template_id, reference) DO NOTHING RETURNING {_COLUMNS}
    """), {"t": template_id, "code": make_code(secrets.token_bytes(8)), "c": contact_id, "r": reference,
           "f": start, "u": end, "now": now})).one_or_none()
    if row is None:  # a concurrent issue with the same reference won
        found = await _by_reference(session, template_id, reference)
        assert found is not None
        return found
    return Coupon(*row)


async def _by_reference(session: AsyncSession, template_id: int, reference: str) -> Coupon | None:
    row = (await session.execute(text(f"SELECT {_COLUMNS} FROM coupons WHERE template_id = :t AND reference = :r"),
                                 {"t": template_id, "r": reference})).one_or_none()
    return Coupon(*row) if row else None


async def get_coupon(session: AsyncSession, code: str) -> Coupon:
    row = (await session.execute(text(f"SELECT {_COLUMNS} FROM coupons WHERE code = :c"),
                                 {"c": normalize(code)})).one_or_none()
    if row is None:
        raise NotFound("no coupon has this code")
    return Coupon(*row)


async def list_coupons(session: AsyncSession, *, template_id: int | None, contact_id: int | None,
                       state: str | None, after: int | None, limit: int) -> list[Coupon]:
    rows = await session.execute(text(f"""
        SELECT {_COLUMNS} FROM coupons
        WHERE (CAST(:t AS bigint) IS NULL OR template_id = :t) AND (CAST(:c AS bigint) IS NULL OR contact_id = :c)
          AND (CAST(:s AS text) IS NULL OR state = :s) AND (CAST(:a AS bigint) IS NULL OR id > :a)
        ORDER BY id LIMIT :limit
    """), {"t": template_id, "c": contact_id, "s": state, "a": after, "limit": limit})
    return [Coupon(*r) for r in rows]


async def generate_codes(session: AsyncSession, template_id: int, count: int, *, batch: str,
                         now: datetime | None = None) -> list[str]:
    """`count` new unassigned codes of a template (bearer coupons: whoever offers one may use it once), written
    with COPY into a staging table and merged in one statement; idempotent by `batch` (the same batch again
    returns the codes it generated)."""
    if not 1 <= count <= MAX_BULK:
        raise DomainError(f"count: must be between 1 and {MAX_BULK}")
    now = now or datetime.now(UTC)
    template = await get_template(session, template_id)
    prefix = f"bulk:{batch}:"
    done = (await session.scalars(text("""
        SELECT code FROM coupons WHERE template_id = :t AND starts_with(reference, :p) ORDER BY id
    """), {"t": template_id, "p": prefix})).all()
    if done:
        return list(done)
    holder = f"issue:{template_id}:{prefix}"
    try:
        await inventory.reserve(session, holder, inventory.template_subject(template_id), count, expires_at=now)
    except inventory.OutOfStock as exc:
        raise inventory.OutOfStock(f"coupon template {template_id} has fewer than {count} coupons left") from exc
    await inventory.commit(session, holder)
    start, end = validity(issued_at=now, valid_from=template.valid_from, valid_until=template.valid_until,
                          valid_days=template.valid_days)
    conn = await driver(session)
    await conn.execute("CREATE TEMP TABLE IF NOT EXISTS coupon_codes_staging (n bigint, code text) ON COMMIT DROP")
    codes: list[str] = []
    made = 0
    while made < count:  # a collision of 60 random bits is vanishingly rare; the loop only refills those
        fresh = [make_code(secrets.token_bytes(8)) for _ in range(count - made)]
        async with conn.cursor() as cur:
            await cur.execute("TRUNCATE coupon_codes_staging")
            async with cur.copy("COPY coupon_codes_staging (n, code) FROM STDIN") as copy:
                for i, code in enumerate(fresh, start=made):
                    await copy.write_row((i, code))
            await cur.execute("""
                INSERT INTO coupons (template_id, code, reference, valid_from, valid_until, issued_at)
                SELECT %(t)s, code, %(p)s || n, %(f)s, %(u)s, %(now)s FROM coupon_codes_staging ORDER BY n
                ON CONFLICT DO NOTHING RETURNING code
            """, {"t": template_id, "p": prefix, "f": start, "u": end, "now": now})
            inserted = [r[0] for r in await cur.fetchall()]
        codes += inserted
        made += len(inserted)
    return codes


async def revoke(session: AsyncSession, code: str) -> Coupon:
    """Revoke an issued or reserved coupon (a reserved one's order then fails to confirm)."""
    coupon = await get_coupon(session, code)
    if coupon.state not in ("issued", "reserved"):
        raise Conflict(f"a coupon that is {coupon.state} cannot be revoked")
    await session.execute(text("UPDATE coupons SET state = 'revoked', updated_at = now() WHERE id = :i"),
                          {"i": coupon.id})
    return await get_coupon(session, code)


async def revoke_by_reference(session: AsyncSession, template_id: int, references: Sequence[str]) -> dict[str, str]:
    """Revoke the coupons issued under these references (a compensation: a task reward taken back), set-based and
    idempotent. Issued or reserved coupons become revoked; the others keep their state (a redeemed coupon was
    used and cannot be taken back; expired or already revoked ones need nothing). Returns reference → state
    after, for the references that have a coupon."""
    rows = (await session.execute(text("""
        WITH r AS (
            UPDATE coupons SET state = 'revoked', updated_at = now()
            WHERE template_id = :t AND reference = ANY(:r) AND state IN ('issued', 'reserved')
            RETURNING reference, state
        )
        SELECT reference, state FROM r
        UNION ALL
        SELECT reference, state FROM coupons
        WHERE template_id = :t AND reference = ANY(:r) AND state NOT IN ('issued', 'reserved')
    """), {"t": template_id, "r": list(references)})).all()
    return {r.reference: r.state for r in rows}


async def take_back(session: AsyncSession, template_id: int, references: Sequence[str]) -> dict[str, str]:
    """Revoke the coupons issued under these references and return their units to the template's stock (a
    compensation: a purchase that did not complete). Idempotent: a revoked coupon's unit comes back once. A redeemed
    coupon was used and stays, its unit with it. Returns reference → state after, like `revoke_by_reference`."""
    states = await revoke_by_reference(session, template_id, references)
    for reference, state in states.items():
        if state == "revoked":
            await inventory.give_back(session, _issue_holder(template_id, reference))
    return states


def _issue_holder(template_id: int, reference: str) -> str:
    return f"issue:{template_id}:{reference}"


async def expire_due(session: AsyncSession, now: datetime, limit: int = 10_000) -> int:
    """Issued coupons past their validity become expired (reserved ones expire when their order lets go)."""
    result = await session.execute(text("""
        UPDATE coupons SET state = 'expired', updated_at = now()
        WHERE id IN (SELECT id FROM coupons WHERE state = 'issued' AND valid_until <= :now LIMIT :limit)
    """), {"now": now, "limit": limit})
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def lookup_codes(codes: Sequence[str], public: dict[str, tuple[int, datetime | None, datetime | None]]) -> list[str]:
    """The offered codes that need a database lookup (normalised): all but the shared public codes."""
    return [normalize(code) for code in codes if code.strip().upper() not in public]


def offered(codes: Sequence[str], public: dict[str, tuple[int, datetime | None, datetime | None]],
            rows: dict[str, Any]) -> list[OfferedCoupon]:
    """The offered codes as the pricing engine sees them, from the cache's public codes and the looked-up `rows`
    (by normalised code: objects with template_id, state, contact_id, valid_from, valid_until, order_id); an
    unknown code resolves to no template (the engine says `coupon_invalid`)."""
    out = []
    for code in codes:
        shared, n = code.strip().upper(), normalize(code)
        if shared in public:
            template_id, start, end = public[shared]
            out.append(OfferedCoupon(shared, template_id, valid_from=start, valid_until=end))
        elif n in rows:
            r = rows[n]
            out.append(OfferedCoupon(n, r.template_id, r.state, r.contact_id, r.valid_from, r.valid_until, r.order_id))
        else:
            out.append(OfferedCoupon(code))
    return out


async def reserve_for_order(session: AsyncSession, order_id: str, codes: Sequence[str]) -> None:
    """Hold the order's coupons (issued → reserved); a coupon taken meanwhile fails the order (409)."""
    if not codes:
        return
    taken = (await session.scalars(text("""
        UPDATE coupons SET state = 'reserved', order_id = :o, updated_at = now()
        WHERE code = ANY(:c) AND (state = 'issued' OR (state = 'reserved' AND order_id = :o)) RETURNING code
    """), {"o": order_id, "c": list(codes)})).all()
    missing = sorted(set(codes) - set(taken))
    if missing:
        raise Conflict(f"coupon(s) {', '.join(display(c) for c in missing)} are no longer available")


async def settle_for_order(session: AsyncSession, order_id: str, *, redeem: bool) -> int:
    """Redeem the order's reserved coupons (409 if one was revoked meanwhile: the order cannot have its discount),
    or release them back to issued (expired if past their validity)."""
    if redeem:
        gone = (await session.scalars(text("""
            SELECT code FROM coupons WHERE order_id = :o AND state NOT IN ('reserved', 'redeemed') ORDER BY code
        """), {"o": order_id})).all()
        if gone:
            raise Conflict(f"coupon(s) {', '.join(display(c) for c in gone)} of order {order_id!r} were revoked "
                           "or expired; cancel the order and quote again")
        result = await session.execute(text("""
            UPDATE coupons SET state = 'redeemed', updated_at = now() WHERE order_id = :o AND state = 'reserved'
        """), {"o": order_id})
    else:
        result = await session.execute(text("""
            UPDATE coupons SET state = CASE WHEN valid_until <= now() THEN 'expired' ELSE 'issued' END,
                order_id = NULL, updated_at = now()
            WHERE order_id = :o AND state = 'reserved'
        """), {"o": order_id})
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
