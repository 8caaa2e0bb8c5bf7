"""Coupon rewards from a journey's grant node on the real runtime (events through the ingest API, JourneyWorkflow on
the time-skipping server): one coupon of the template per contact, issued by Promotions under the effect's key,
exactly once whether the move is rolled back or granted again; a coupon Promotions refuses fails that contact's
grant alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from store.db import transaction
from store.journeys import rewards, runtime
from tests.workflows.journeys.conftest import Journeys, tag
from workflows.journeys.runtime import JourneyWorkflow


async def _template(j: Journeys, **fields: Any) -> int:
    r = await j.api.post("/v1/coupon-templates", json={"name": f"journey-coupon-{tag()}", "valid_days": 30, **fields})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def _coupons(j: Journeys, template: int) -> list[Any]:
    async with j.sessions() as s:
        return list(await s.execute(text("""
            SELECT contact_id, reference, code, state FROM coupons WHERE template_id = :t ORDER BY reference
        """), {"t": template}))


def _graph(t: str, template: int) -> dict[str, Any]:
    return {"nodes": [
        {"id": "start", "type": "trigger", "event": f"lapsed_{t}", "next": "hour"},
        {"id": "hour", "type": "wait", "seconds": 3600, "next": "gift"},
        {"id": "gift", "type": "grant", "coupon_template_id": template, "next": "done"},
        {"id": "done", "type": "exit"}]}


async def test_a_grant_node_issues_one_coupon_per_contact_exactly_once(journeys: Journeys) -> None:
    t = tag()
    template = await _template(journeys)
    jid, handle = await journeys.run(_graph(t, template))
    users = [f"coupon-{i}-{t}" for i in range(2)]
    for user in users:
        await journeys.track(user, f"lapsed_{t}")

    async def sleeping() -> bool:
        return [r.status for r in await journeys.states(jid)] == ["sleeping", "sleeping"]

    await journeys.until(handle, sleeping)
    # A move whose transaction never commits (a worker killed before the commit) leaves no coupon behind.
    async with journeys.sessions() as s:
        assert (await runtime.advance_due(s, jid, datetime.now(UTC) + timedelta(hours=2))).grants == 2
        await s.rollback()
    assert await _coupons(journeys, template) == []

    await journeys.env.sleep(timedelta(hours=1, minutes=1))

    async def exited() -> bool:
        return [r.status for r in await journeys.states(jid)] == ["exited", "exited"]

    await journeys.until(handle, exited)
    contacts = sorted([await journeys.contact(u) for u in users])
    keys = sorted(f"journey:{jid}:1:{c}:1:gift" for c in contacts)
    issued = await _coupons(journeys, template)
    assert {(c.contact_id, c.reference, c.state) for c in issued} == {
        (c, f"journey:{jid}:1:{c}:1:gift", "issued") for c in contacts}
    # Granting again under the same keys (a replayed move) returns the coupons issued the first time.
    async with transaction(journeys.sessions) as s:
        again = await rewards.grant(s, jid, [
            rewards.Reward(int(k.split(":")[3]), k, "gift", coupon_template_id=template) for k in keys],
            datetime.now(UTC))
    assert again == [None, None]
    assert await _coupons(journeys, template) == issued
    counts = (await journeys.api.get(f"/v1/journeys/{jid}")).json()["counts"]
    assert counts["gift"] == {"entered": 2} and counts["done"]["exited"] == 2
    await handle.signal(JourneyWorkflow.archive)


async def test_a_coupon_promotions_refuses_fails_that_contacts_grant_alone(journeys: Journeys) -> None:
    t = tag()
    template = await _template(journeys, stock=1)
    jid, handle = await journeys.run(_graph(t, template))
    for i in range(2):
        await journeys.track(f"scarce-{i}-{t}", f"lapsed_{t}")

    async def sleeping() -> bool:
        return len(await journeys.states(jid)) == 2

    await journeys.until(handle, sleeping)
    await journeys.env.sleep(timedelta(hours=1, minutes=1))

    async def exited() -> bool:
        return [r.status for r in await journeys.states(jid)] == ["exited", "exited"]

    await journeys.until(handle, exited)  # the refused contact moved on too
    assert len(await _coupons(journeys, template)) == 1
    counts = (await journeys.api.get(f"/v1/journeys/{jid}")).json()["counts"]
    assert counts["gift"] == {"entered": 2, "grant_refused": 1}
    await handle.signal(JourneyWorkflow.archive)
