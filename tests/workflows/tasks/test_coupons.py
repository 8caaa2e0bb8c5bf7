"""Coupon rewards (reward_type "coupon") on real Temporal and Postgres: a coupon task grants its coupons exactly
once (a replayed batch, a step that ran before a crash), a later failure revokes them (a redeemed one stays), the
codes show in the grants page, the task centre and the toast, reconciliation does not miss a ledger posting for
them, and the definition is validated (422/404 naming the field)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from store.db import transaction
from store.tasks import grants
from tests.store.tasks.conftest import active_task, contact_id, drain, grants_of, program, tag, track
from workflows.schedules import kind
from workflows.tasks.issuance import TASK_QUEUE, IssuanceInput, RewardIssuanceWorkflow


async def _template(api: httpx.AsyncClient, **fields: object) -> int:
    r = await api.post("/v1/coupon-templates", json={"name": f"coupon-{tag()}", "valid_days": 30, **fields})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def _coupon_batch(api: httpx.AsyncClient, ingest: httpx.AsyncClient,
                        sessions: async_sessionmaker[AsyncSession], *, users: int = 2,
                        reward_count: int = 2, stock: int | None = None) -> tuple[dict, int, str, list[int]]:
    template = await _template(api, stock=stock)
    act = f"act_{tag()}"
    task = await active_task(api, user_action=act, reward_type="coupon", coupon_template_id=template,
                             reward_count=reward_count, budget=100, period={"kind": "once"})
    names = [f"u-{tag()}" for _ in range(users)]
    for user in names:
        await track(ingest, user, [(act, {}, datetime.now(UTC))])

    async def earned() -> bool:
        return len(await grants_of(sessions, task["id"])) == users
    await drain(sessions, until=earned)
    async with transaction(sessions) as s:
        (batch,) = await grants.claim_batches(s, batch_size=100, max_batches=1, now=datetime.now(UTC),
                                              task_id=task["id"])
    return task, template, batch.workflow_id, [await contact_id(api, u) for u in names]


async def _run(client: Client, batch: str, fail_at: list[str] | None = None) -> str:
    return await client.execute_workflow(
        RewardIssuanceWorkflow.run, IssuanceInput(batch, fail_at=fail_at or []), id=batch, task_queue=TASK_QUEUE,
        search_attributes=kind("reward-issuance"), static_summary="test batch")


async def _coupons(sessions: async_sessionmaker[AsyncSession], template: int) -> list:
    async with sessions() as s:
        return list(await s.execute(text("SELECT * FROM coupons WHERE template_id = :t ORDER BY reference"),
                                    {"t": template}))


async def test_a_coupon_task_grants_its_coupons_exactly_once(
        worker: None, temporal_client: Client, api: httpx.AsyncClient, ingest: httpx.AsyncClient,
        sessions: async_sessionmaker[AsyncSession]) -> None:
    task, template, batch, contacts = await _coupon_batch(api, ingest, sessions)
    assert (await api.get(f"/v1/tasks/{task['id']}")).json()["reserved"] == 4  # the budget counts coupons
    # A worker ran the steps up to the coupons and died before Temporal heard back; then the step runs again.
    async with transaction(sessions) as s:
        await grants.begin(s, batch, datetime.now(UTC))
        await grants.post_rewards(s, batch, now=datetime.now(UTC))
        await grants.issue_coupons(s, batch, now=datetime.now(UTC))
    assert await _run(temporal_client, batch) == "issued"
    coupons = await _coupons(sessions, template)
    found = await grants_of(sessions, task["id"])
    assert len(coupons) == 4 and {c.state for c in coupons} == {"issued"}
    assert sorted(c.reference for c in coupons) == sorted(f"{g.reference}#{i}" for g in found for i in range(2))
    assert {g.status for g in found} == {"issued"} and all(len(g.coupon_codes) == 2 for g in found)
    async with sessions() as s:  # no points: nothing posted to any ledger
        assert await s.scalar(text("SELECT count(*) FROM ledger_postings WHERE reference = ANY(:r)"),
                              {"r": [g.reference for g in found]}) == 0
    # The batch replayed (the dispatcher starting it again after a crash): no coupon twice.
    again = await temporal_client.start_workflow(
        RewardIssuanceWorkflow.run, IssuanceInput(batch), id=f"{batch}-again-{tag()}", task_queue=TASK_QUEUE,
        search_attributes=kind("reward-issuance"), static_summary="test batch")
    assert await again.result() == "issued"
    async with transaction(sessions) as s:  # and the step itself retried over the issued grants' references
        for g in found:
            await s.execute(text("UPDATE task_grants SET status = 'issuing' WHERE id = :i"), {"i": g.id})
        await grants.issue_coupons(s, batch, now=datetime.now(UTC))
        await grants.finish(s, batch, datetime.now(UTC))
    assert len(await _coupons(sessions, template)) == 4
    assert [g.coupon_codes for g in await grants_of(sessions, task["id"])] == [g.coupon_codes for g in found]

    # The grants page and the task centre show the codes; the toast names the coupon and its codes.
    page = (await api.get(f"/v1/tasks/{task['id']}/grants")).json()
    assert all(g["reward_type"] == "coupon" and len(g["coupon_codes"]) == 2 for g in page)
    centre = (await api.get(f"/v1/contacts/{contacts[0]}/tasks")).json()
    item = next(t for t in centre["tasks"] if t["task_id"] == task["id"])
    assert len(item["rewards"]) == 1 and len(item["rewards"][0]["coupon_codes"]) == 2
    async with sessions() as s:
        toast = (await s.execute(text("SELECT title, body FROM inbox_messages WHERE contact_id = :c"),
                                 {"c": contacts[0]})).all()
    assert any("2 coupons" in t.title and item["rewards"][0]["coupon_codes"][0] in t.body for t in toast)


async def test_a_later_failure_revokes_the_coupons_and_keeps_a_redeemed_one(
        worker: None, temporal_client: Client, api: httpx.AsyncClient, ingest: httpx.AsyncClient,
        sessions: async_sessionmaker[AsyncSession]) -> None:
    task, template, batch, _ = await _coupon_batch(api, ingest, sessions, reward_count=1, stock=5)
    async with transaction(sessions) as s:  # the coupons were issued, and one was used at once
        await grants.begin(s, batch, datetime.now(UTC))
        await grants.issue_coupons(s, batch, now=datetime.now(UTC))
        first = (await grants.issuing(s, batch))[0]
        await s.execute(text("UPDATE coupons SET state = 'redeemed' WHERE template_id = :t AND reference = :r"),
                        {"t": template, "r": f"{first.reference}#0"})
    assert await _run(temporal_client, batch, ["finish_issuance"]) == "compensated"
    states = {c.reference: c.state for c in await _coupons(sessions, template)}
    assert sorted(states.values()) == ["redeemed", "revoked"]
    by_id = {g.id: g for g in await grants_of(sessions, task["id"])}
    kept = by_id.pop(first.id)
    assert kept.status == "issued" and "redeemed" in kept.failure  # cannot be taken back: left for a person
    assert [g.status for g in by_id.values()] == ["failed"]
    assert (await api.get(f"/v1/tasks/{task['id']}")).json()["reserved"] == 1  # the redeemed one stays spent
    # The revoked coupon's unit is back in the template's stock; the redeemed one's is spent.
    assert (await api.get(f"/v1/coupon-templates/{template}")).json()["stock_left"] == 4


async def test_a_coupon_promotions_refuses_fails_that_grant_alone(
        worker: None, temporal_client: Client, api: httpx.AsyncClient, ingest: httpx.AsyncClient,
        sessions: async_sessionmaker[AsyncSession]) -> None:
    task, template, batch, _ = await _coupon_batch(api, ingest, sessions, reward_count=1, stock=1)
    assert await _run(temporal_client, batch) == "issued"
    found = await grants_of(sessions, task["id"])
    assert sorted(g.status for g in found) == ["failed", "issued"]
    assert "no coupons left" in next(g for g in found if g.status == "failed").failure
    assert len(await _coupons(sessions, template)) == 1
    assert (await api.get(f"/v1/tasks/{task['id']}")).json()["reserved"] == 1  # the failed one's coupon released


async def test_coupon_grants_are_not_missing_ledger_postings(
        worker: None, temporal_client: Client, api: httpx.AsyncClient, ingest: httpx.AsyncClient,
        sessions: async_sessionmaker[AsyncSession]) -> None:
    task, _, batch, _ = await _coupon_batch(api, ingest, sessions, users=1, reward_count=1)
    assert await _run(temporal_client, batch) == "issued"
    async with transaction(sessions) as s:
        missing = await grants.TaskGrants().missing_credits(s, None, 100_000)
    assert not {m.reference for m in missing} & {g.reference for g in await grants_of(sessions, task["id"])}


async def test_coupon_task_validation_names_the_field(api: httpx.AsyncClient,
                                                      sessions: async_sessionmaker[AsyncSession]) -> None:
    base = {"name": f"task-{tag()}", "user_action": "x", "reward_count": 1, "reward_type": "coupon"}
    r = await api.post("/v1/tasks", json=base)
    assert r.status_code == 422 and r.json()["detail"].startswith("coupon_template_id:"), r.text
    r = await api.post("/v1/tasks", json=base | {"coupon_template_id": 2**40})
    assert r.status_code == 404 and "coupon_template_id" in r.json()["detail"], r.text
    template = await _template(api)
    async with transaction(sessions) as s:
        await s.execute(text("UPDATE coupon_templates SET status = 'archived' WHERE id = :t"), {"t": template})
    r = await api.post("/v1/tasks", json=base | {"coupon_template_id": template})
    assert r.status_code == 422 and r.json()["detail"].startswith("coupon_template_id:"), r.text
    live = await _template(api)
    r = await api.post("/v1/tasks", json=base | {"coupon_template_id": live, "reward_count": 101})
    assert r.status_code == 422 and r.json()["detail"].startswith("reward_count:"), r.text
    r = await api.post("/v1/tasks", json=base | {"coupon_template_id": live, "program_id": await program(api)})
    assert r.status_code == 422 and r.json()["detail"].startswith("program_id:"), r.text
    r = await api.post("/v1/tasks", json={"name": "points", "user_action": "x", "reward_count": 1})
    assert r.status_code == 422 and r.json()["detail"].startswith("program_id:"), r.text
    r = await api.post("/v1/tasks", json=base | {"coupon_template_id": live})
    assert r.status_code == 201 and r.json()["definition"]["program_id"] is None, r.text
