"""A run's snapshot is checked variant by variant: a variable only variant b's template uses counts only among variant
b's recipients (the launch, before the variants are assigned, counts it among everyone)."""

from __future__ import annotations

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.campaigns import runs, variables
from store.db import transaction


async def test_a_runs_check_counts_each_variants_parts_among_its_own_recipients(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with transaction(sessions) as s:
        ids = list((await s.scalars(text(
            "INSERT INTO contacts (user_id) SELECT 'var-run-' || i FROM generate_series(1, 40) i RETURNING id"))).all())
    r = await api.post("/v1/campaigns", json={
        "name": "per variant", "subject": "s", "body": "b", "audience": {"contact_ids": ids},
        "variants": [{"name": "a"}, {"name": "b", "body": "Your plan: {{ contact.plan }}"}]})
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    r = await api.post(f"/v1/campaigns/{cid}/launch")  # the launch counts all 40: the variants are not assigned yet
    assert r.status_code == 422 and "variants[b].email.text uses contact.plan, which 40 of the 40" in r.text, r.text

    async with transaction(sessions) as s:
        run = await runs.start_run(s, cid)
        await runs.snapshot_audience(s, run.id)
    async with sessions() as s:
        in_b = list((await s.scalars(text(
            "SELECT contact_id FROM deliveries WHERE run_id = :r AND variant = 'b' ORDER BY contact_id"),
            {"r": run.id})).all())
        assert 0 < len(in_b) < len(ids)
        reason = await variables.check_run(s, run.id)
    shown = ", ".join(map(str, in_b[:5])) + (", …" if len(in_b) > 5 else "")
    assert reason is not None and reason.startswith(
        f"variants[b].email.text uses contact.plan, which {len(in_b)} of the {len(in_b)} recipients of variant b do "
        f"not have (contact{'s' if len(in_b) > 1 else ''} {shown})."), reason

    # Variant b's recipients get the trait; variant a's still lack it, and its template does not use it.
    async with transaction(sessions) as s:
        await s.execute(text("UPDATE contacts SET traits = '{\"plan\": \"pro\"}' WHERE id = ANY(:ids)"), {"ids": in_b})
    async with sessions() as s:
        assert await variables.check_run(s, run.id) is None
