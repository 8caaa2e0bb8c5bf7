"""The tasks dashboard page shows a task's participants, completions, rewards, budget burn and the alert of a task
its exhausted budget paused, as the tables say."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.store.tasks.conftest import active_task, drain, program, tag, track

SignIn = Callable[[httpx.AsyncClient, str], Awaitable[httpx.Response]]


async def test_the_tasks_page_shows_participants_completions_budget_and_the_pause_alert(
        api: httpx.AsyncClient, ingest: httpx.AsyncClient, api_url: str, admin_key: str, dashboard_sign_in: SignIn,
        sessions: async_sessionmaker[AsyncSession]) -> None:
    share = f"share_{tag()}"
    name = f"Share {tag()}"
    task = await active_task(api, name=name, user_action=share, reward_count=10, budget=30,
                             program_id=await program(api), period={"kind": "once"})
    for i in range(4):
        await track(ingest, f"u-{tag()}-{i}", [(share, {}, datetime.now(UTC))])
    await drain(sessions)
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as browser:
        assert (await browser.get("/dashboards/tasks")).status_code in (303, 307)
        await dashboard_sign_in(browser, admin_key)
        page = await browser.get("/dashboards/tasks")
    assert page.status_code == 200
    html = re.sub(r"\s+", " ", page.text)
    assert re.search(rf'<td>{task["id"]}</td><td>{name}</td><td>paused</td> <td class="num">4</td>'
                     r'<td class="num">4</td>', html), html  # the fourth completion found the budget spent
    assert re.search(r'<td class="num">30 / 30 \(100%\)</td> <td class="num">30</td> <td>exhausted</td>', html), html
    assert f"Task #{task['id']} {name} (paused): budget exhausted" in html
