"""The deliveries dashboard over real HTTP: sign-in required, the funnel per channel, the fallback share and the
suppressions appear once steps went through their chains."""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.channels.delivery import service_for
from api.runtime import Runtime
from store.channels import suppressions
from store.db import transaction
from tests.conftest import DashboardSignIn
from tests.store.channels.conftest import make_person, step


async def test_deliveries_page_shows_the_funnel_fallback_share_and_suppressions(
        api_url: str, admin_key: str, dashboard_sign_in: DashboardSignIn,
        sessions: async_sessionmaker[AsyncSession], runtime: Runtime) -> None:
    person = await make_person(sessions)
    async with transaction(sessions) as s:
        await suppressions.add_address(s, "email", person.email, "complaint")
    service = service_for(sessions, runtime.channels, runtime.settings)
    await service.send([step(person, ["email", "inbox"])])  # email suppressed → the inbox
    async with httpx.AsyncClient(base_url=api_url, follow_redirects=False) as browser:
        assert (await browser.get("/dashboards/deliveries")).status_code == 303
        await dashboard_sign_in(browser, admin_key)
        page = await browser.get("/dashboards/deliveries")
    assert page.status_code == 200
    html = page.text
    assert 'id="funnel"' in html and "<td>inbox</td>" in html and 'id="kpi-fallback"' in html
    assert "<td>complaint</td>" in html and "<td>suppressed</td>" in html
    assert 'href="/dashboards/deliveries" class="on"' in html
