"""`revoke_by_reference` (the compensation other domains call, e.g. a task reward taken back): issued and reserved
coupons of the references become revoked, once; redeemed, expired and already revoked ones keep their state; the
answer says each reference's state after, so the caller can tell a coupon it could not take back."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.db import transaction
from store.promotions.coupons import issue_coupon, revoke_by_reference
from store.promotions.promotions import create_template


async def test_revoke_by_reference_is_idempotent_and_leaves_redeemed_coupons(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    tag = uuid.uuid4().hex[:8]
    refs = [f"reward:test-{tag}#{i}" for i in range(3)]
    async with transaction(sessions) as s:
        template = await create_template(s, name=f"t-{tag}", public_code=None, valid_from=None, valid_until=None,
                                         valid_days=30, per_contact_limit=None, stock=None)
        for ref in refs:
            await issue_coupon(s, template.id, 1, ref)
        await s.execute(text("UPDATE coupons SET state = 'redeemed' WHERE template_id = :t AND reference = :r"),
                        {"t": template.id, "r": refs[2]})
    async with transaction(sessions) as s:
        first = await revoke_by_reference(s, template.id, [*refs, f"reward:none-{tag}#0"])
    assert first == {refs[0]: "revoked", refs[1]: "revoked", refs[2]: "redeemed"}
    async with transaction(sessions) as s:
        assert await revoke_by_reference(s, template.id, refs) == first  # again: nothing changes
        states = dict((await s.execute(text("SELECT reference, state FROM coupons WHERE template_id = :t"),
                                       {"t": template.id})).all())
    assert states == first
