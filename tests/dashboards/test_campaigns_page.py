"""The campaigns dashboard in real headless Chromium: sign-in, the table and the bundled chart."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractContextManager

import httpx
from playwright.async_api import Browser

from core.settings import Settings
from nudge.embedded import free_port


async def _completed_campaign(api: httpx.AsyncClient) -> dict:
    ids = []
    for i in range(3):
        r = await api.post("/v1/contacts", json={"user_id": f"dash-{i}", "email": f"dash-{i}@example.com"})
        ids.append(r.json()["id"])
    ids.append(int(ids[-1]))  # duplicates collapse
    r = await api.post("/v1/contacts", json={"user_id": "dash-noemail"})
    ids.append(r.json()["id"])  # no address: counted as failed
    campaign = (await api.post("/v1/campaigns", json={"name": "Dashboard demo", "subject": "Hi", "body": "Hello",
                                                      "audience": {"contact_ids": ids}})).json()
    await api.post(f"/v1/campaigns/{campaign['id']}/launch")
    for _ in range(300):
        body = (await api.get(f"/v1/campaigns/{campaign['id']}")).json()
        if body["status"] == "completed":
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(body)


async def test_signed_out_visitor_is_sent_to_sign_in_and_a_bad_key_is_refused(browser: Browser, api_url: str) -> None:
    page = await browser.new_page()
    await page.goto(f"{api_url}/dashboards/campaigns")
    assert page.url.endswith("/dashboards/login")
    await page.fill("input[name=key]", "nk_wrong_key")
    await page.click("button[type=submit]")
    assert "unknown" in (await page.text_content("[role=alert]") or "")
    await page.close()


async def test_campaigns_dashboard_shows_counts_and_draws_the_chart(
    browser: Browser, api_url: str, api: httpx.AsyncClient, read_key: str, worker: None,
) -> None:
    campaign = await _completed_campaign(api)
    assert (campaign["run"]["sent"], campaign["run"]["failed"]) == (3, 1)

    page = await browser.new_page()
    blocked: list[str] = []
    page.on("request", lambda req: None if req.url.startswith(api_url) else blocked.append(req.url))
    await page.goto(f"{api_url}/dashboards/login")
    await page.fill("input[name=key]", read_key)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/dashboards/campaigns")

    row = page.locator(f"tr[data-campaign='{campaign['id']}']")
    assert await row.locator("td.sent").text_content() == "3"
    assert await row.locator("td.failed").text_content() == "1"
    assert await row.locator("td.accepted").text_content() == "75.0%"
    # What the SMTP server accepted is not what reached an inbox: no delivery receipts exist yet.
    assert await page.locator("#accepted-header").text_content() == "Accepted by mail server"
    assert "deliver" not in (await page.locator("#campaigns thead").text_content() or "").lower()

    # The chart library is served by Nudge itself and has drawn this campaign's bars.
    chart = await page.evaluate("""() => ({
        loaded: typeof window.Chart === 'function',
        labels: window.nudgeChart.data.labels,
        sent: window.nudgeChart.data.datasets[0].data,
        painted: (() => { const c = document.getElementById('deliveries-chart');
                          const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                          let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; })(),
    })""")
    assert chart["loaded"]
    label = f"#{campaign['id']} Dashboard demo"
    assert label in chart["labels"]
    assert chart["sent"][chart["labels"].index(label)] == 3
    assert chart["painted"] > 1000
    assert blocked == [], f"the page fetched from outside Nudge: {blocked}"
    await page.close()


async def test_campaign_page_shows_variants_channels_lift_and_the_run(
    browser: Browser, api: httpx.AsyncClient, read_key: str, worker: None, settings: Settings,
    serve_api: Callable[[Settings], AbstractContextManager[str]],
) -> None:
    ids = []
    for i in range(12):
        r = await api.post("/v1/contacts", json={"user_id": f"page-{i}", "email": f"page-{i}@example.com"})
        ids.append(r.json()["id"])
    campaign = (await api.post("/v1/campaigns", json={
        "name": "Page A/B", "subject": "Hi", "body": "Hello", "holdout_percent": 25, "conversion_event": "order_paid",
        "variants": [{"name": "a"}, {"name": "b", "subject": "Hey"}], "audience": {"contact_ids": ids}})).json()
    await api.post(f"/v1/campaigns/{campaign['id']}/launch")
    for _ in range(300):
        body = (await api.get(f"/v1/campaigns/{campaign['id']}")).json()
        if body["status"] == "completed":
            break
        await asyncio.sleep(0.1)
    run = body["run"]

    with serve_api(settings.model_copy(update={"temporal_ui_url": "http://ui.test:8233", "api_port": free_port()})
                   ) as api_url:
        await _check_campaign_page(browser, api_url, read_key, campaign, run)


async def _check_campaign_page(browser: Browser, api_url: str, read_key: str, campaign: dict, run: dict) -> None:
    page = await browser.new_page()
    await page.goto(f"{api_url}/dashboards/login")
    await page.fill("input[name=key]", read_key)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/dashboards/campaigns")
    await page.click(f"tr[data-campaign='{campaign['id']}'] a")
    await page.wait_for_url(f"**/dashboards/campaigns/{campaign['id']}")

    assert await page.locator("#campaign-status").text_content() == "completed"
    assert await page.locator("#kpi-sent").text_content() == str(run["sent"])
    for v in run["variants"]:
        row = page.locator(f"tr[data-variant='{v['variant']}']")
        assert await row.locator("td.total").text_content() == str(v["total"])
    link = await page.locator("#temporal-link").get_attribute("href")
    assert link == f"http://ui.test:8233/namespaces/default/workflows/campaign:{campaign['id']}:run:1"
    assert await page.locator("tr[data-channel='email']").count() == 1
    assert "running" in (await page.locator("#transitions").text_content() or "")

    missing = await page.goto(f"{api_url}/dashboards/campaigns/987654321")
    assert missing is not None and missing.status == 404
    await page.close()
