"""The points economy dashboard in real headless Chromium: its figures equal what the ledger tables say (computed
here independently, from postings by kind rather than from system balances), the bundled chart is drawn, open
reconciliation findings are listed, and nothing is fetched from outside Nudge."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
from playwright.async_api import Browser, Page
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.ledger.postings import Kind, Request, month_label, month_of, month_start
from store.db import transaction
from store.ledger import accounts
from store.ledger.archive import archive_month
from store.ledger.reconcile import check_accounts, check_programs


def _in_month(month: int, day: int) -> datetime:
    start = month_start(month)
    return datetime(start.year, start.month, day, 12, tzinfo=UTC)


async def _post(sessions: async_sessionmaker[AsyncSession], program: int, request: Request, now: datetime) -> None:
    async with transaction(sessions) as s:
        await accounts.post(s, program, request, now=now)


async def _economy(api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], tmp_path: Path) -> dict:
    """A program whose points were credited over three months, spent, held, committed, expired, archived in part,
    and one account corrupted and reconciled."""
    now = datetime.now(UTC)
    this = month_of(now)
    other = await api.post("/v1/ledger/programs", json={"name": f"dash-other-{uuid.uuid4().hex[:8]}"})
    assert other.status_code == 201, other.text  # a second program, so the page offers a picker
    program = (await api.post("/v1/ledger/programs", json={
        "name": f"dash-points-{uuid.uuid4().hex[:8]}", "expiry_months": 1, "retention_months": 1})).json()["id"]
    a, b, c = [(await api.post("/v1/contacts", json={"user_id": f"pts-{uuid.uuid4().hex[:8]}"})).json()["id"]
               for _ in range(3)]
    await _post(sessions, program, Request("a-old", Kind.CREDIT, a, 100), _in_month(this - 2, 10))
    await _post(sessions, program, Request("a-last", Kind.CREDIT, a, 60), _in_month(this - 1, 10))
    await _post(sessions, program, Request("c-last", Kind.CREDIT, c, 40), _in_month(this - 1, 11))
    await _post(sessions, program, Request("a-spend", Kind.DEBIT, a, 30), _in_month(this - 1, 15))  # oldest first
    await _post(sessions, program, Request("b-now", Kind.CREDIT, b, 200), now)
    await _post(sessions, program, Request("b-hold", Kind.HOLD, b, 50, hold_seconds=3600), now)
    await _post(sessions, program, Request("b-hold-2", Kind.HOLD, b, 20, hold_seconds=3600), now)
    await _post(sessions, program, Request("b-commit", Kind.COMMIT, b, hold_reference="b-hold-2"), now)
    await _post(sessions, program, Request("a-expire", Kind.EXPIRE, a, months=(this - 2,)), now)  # 70 left of 100
    async with transaction(sessions) as s:
        # The oldest month passes the retention window: its entry rows go to Parquet and ledger_rollups.
        archived = await archive_month(s, program, this - 2, tmp_path)
        assert archived is not None and archived.total == 100
        # Balance and buckets corrupted alike: the journal disagrees with both, which needs a person.
        await s.execute(text("UPDATE ledger_accounts SET balance = balance + 7 WHERE contact_id = :c "
                             "AND program_id = :p"), {"c": c, "p": program})
        await s.execute(text("UPDATE ledger_buckets SET remaining = remaining + 7 WHERE contact_id = :c "
                             "AND program_id = :p AND month = :m"), {"c": c, "p": program, "m": this - 1})
    async with transaction(sessions) as s:
        await check_accounts(s, after=0, limit=100, programs=[program], today=this)
        await check_programs(s, [program])
    return {"program": program, "a": a, "b": b, "c": c, "this": this}


async def _from_tables(sessions: async_sessionmaker[AsyncSession], program: int, this: int) -> dict:
    """The dashboard's figures, computed from the ledger tables another way than the page does."""
    async with sessions() as s:
        p = {"p": program}
        by_kind = {r.kind: int(r.n) for r in await s.execute(text(
            "SELECT kind, sum(amount) AS n FROM ledger_postings WHERE program_id = :p GROUP BY kind"), p)}
        users = (await s.execute(text("SELECT sum(balance) AS liability, count(*) FILTER (WHERE balance > 0) AS n "
                                      "FROM ledger_accounts WHERE program_id = :p"), p)).one()
        held = await s.scalar(text("SELECT sum(amount) FROM ledger_holds "
                                   "WHERE program_id = :p AND status = 'pending'"), p)
        # expiry_months = 1: points earned last month expire at the end of this one.
        expiring = await s.scalar(text("SELECT sum(remaining) FROM ledger_buckets "
                                       "WHERE program_id = :p AND month = :m"),
                                  {"p": program, "m": this - 1})
        monthly = {(r.month, r.kind): int(r.n) for r in await s.execute(text("""
            SELECT (extract(year FROM created_at AT TIME ZONE 'UTC') * 12
                    + extract(month FROM created_at AT TIME ZONE 'UTC') - 1)::int
                   AS month, kind, sum(amount) AS n FROM ledger_postings WHERE program_id = :p GROUP BY 1, 2"""), p)}
        findings = list(await s.execute(text(
            "SELECT id, class, contact_id FROM ledger_findings WHERE program_id = :p AND status = 'open' "
            "ORDER BY id"), p))
    return {
        "issued": by_kind.get("credit", 0), "redeemed": by_kind.get("debit", 0) + by_kind.get("commit", 0),
        "expired": by_kind.get("expire", 0), "forfeited": by_kind.get("forfeit", 0),
        "liability": int(users.liability), "accounts": int(users.n), "held": int(held), "expiring": int(expiring),
        "monthly": monthly, "findings": findings,
    }


async def _signed_in_page(browser: Browser, api_url: str, read_key: str, blocked: list[str]) -> Page:
    page = await browser.new_page()
    page.on("request", lambda req: None if req.url.startswith(api_url) else blocked.append(req.url))
    await page.goto(f"{api_url}/dashboards/login")
    await page.fill("input[name=key]", read_key)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/dashboards/campaigns")
    return page


async def _number(page: Page, selector: str) -> int:
    return int((await page.text_content(selector) or "").replace(",", ""))


async def test_points_dashboard_matches_the_ledger_and_draws_the_chart(
    browser: Browser, api_url: str, api: httpx.AsyncClient, read_key: str,
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path,
) -> None:
    seed = await _economy(api, sessions, tmp_path)
    program, this = seed["program"], seed["this"]
    truth = await _from_tables(sessions, program, this)
    # The scenario by hand, so the independent computation is itself checked.
    assert (truth["issued"], truth["redeemed"], truth["expired"], truth["forfeited"]) == (400, 50, 70, 0)
    assert (truth["liability"], truth["held"], truth["expiring"], truth["accounts"]) == (60 + 130 + 47, 50, 107, 3)
    assert sorted(f._mapping["class"] for f in truth["findings"]) == ["journal_drift", "program_unbalanced"]

    blocked: list[str] = []
    page = await _signed_in_page(browser, api_url, read_key, blocked)
    response = await page.goto(f"{api_url}/dashboards/points?program={program}")
    assert response is not None and response.status == 200
    assert await page.locator("nav a.on").text_content() == "Points"
    assert await page.locator("#program option[selected]").get_attribute("value") == str(program)
    for tile, key in (("issued", "issued"), ("redeemed", "redeemed"), ("expired", "expired"),
                      ("forfeited", "forfeited"), ("liability", "liability"), ("held", "held"),
                      ("expiring", "expiring"), ("accounts", "accounts")):
        assert await _number(page, f"#kpi-{tile}") == truth[key], tile
    assert month_label(this) in (await page.text_content(".kpi:has(#kpi-expiring) .label") or "")

    # The chart: twelve months up to this one, the archived month included, drawn by the bundled library.
    chart = await page.evaluate("""() => ({
        loaded: typeof window.Chart === 'function',
        labels: window.nudgeChart.data.labels,
        sets: window.nudgeChart.data.datasets.map(d => [d.label, d.data]),
        painted: (() => { const c = document.getElementById('points-chart');
                          const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                          let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; })(),
    })""")
    assert chart["loaded"]
    assert chart["labels"] == [month_label(m) for m in range(this - 11, this + 1)]
    sets = dict(chart["sets"])
    monthly = truth["monthly"]
    for i, month in enumerate(range(this - 11, this + 1)):
        assert sets["Issued"][i] == monthly.get((month, "credit"), 0), month_label(month)
        assert sets["Redeemed"][i] == monthly.get((month, "debit"), 0) + monthly.get((month, "commit"), 0)
        assert sets["Expired"][i] == monthly.get((month, "expire"), 0)
    assert (sets["Issued"][-3:], sets["Redeemed"][-3:], sets["Expired"][-3:]) == (
        [100, 100, 200], [0, 30, 20], [0, 0, 70])
    assert chart["painted"] > 1000
    assert await page.locator("#chart-disagrees").count() == 0  # receipts sum to the system balances

    # Open findings, with their count and the API's review queue.
    assert await _number(page, "#findings-count") == len(truth["findings"]) == 2
    for finding in truth["findings"]:
        row = page.locator(f"tr[data-finding='{finding.id}']")
        assert await row.locator("td.class").text_content() == finding._mapping["class"].replace("_", " ")
    journal = next(f for f in truth["findings"] if f._mapping["class"] == "journal_drift")
    detail = await page.locator(f"tr[data-finding='{journal.id}'] td.detail").text_content() or ""
    assert str(seed["c"]) in (await page.locator(f"tr[data-finding='{journal.id}'] td.contact").text_content() or "")
    assert "balance 47" in detail and "journal 40" in detail
    call = await page.text_content("#findings-api") or ""
    assert call == f"GET /v1/ledger/findings?program_id={program}&status=open"
    path = call.removeprefix("GET ")
    assert (await page.request.get(f"{api_url}{path}")).status == 401  # the dashboard's session is no API key
    queue = await page.request.get(f"{api_url}{path}", headers={"Authorization": f"Bearer {read_key}"})
    assert sorted(f["id"] for f in (await queue.json())["findings"]) == [f.id for f in truth["findings"]]

    # Largest balances, largest first, with what expires at the end of this month.
    rows = page.locator("#largest tbody tr")
    assert [await rows.nth(i).get_attribute("data-contact") for i in range(await rows.count())] == \
        [str(seed["b"]), str(seed["a"]), str(seed["c"])]
    for contact, balance, expiring in ((seed["b"], 130, 0), (seed["a"], 60, 60), (seed["c"], 47, 47)):
        row = page.locator(f"#largest tr[data-contact='{contact}']")
        assert (await _number(page, f"#largest tr[data-contact='{contact}'] td.balance"),
                await _number(page, f"#largest tr[data-contact='{contact}'] td.expiring")) == (balance, expiring), \
            await row.text_content()

    # Without ?program= the first program is shown, and the picker switches.
    await page.goto(f"{api_url}/dashboards/points")
    first = await page.locator("#program option").first.get_attribute("value")
    assert await page.locator("#program option[selected]").get_attribute("value") == first
    await page.select_option("#program", str(program))
    await page.wait_for_url(f"**/dashboards/points?program={program}")
    assert await _number(page, "#kpi-issued") == 400

    assert blocked == [], f"the page fetched from outside Nudge: {blocked}"
    await page.close()


async def test_signed_out_visitors_sign_in_first_and_an_unknown_program_is_a_404_page(
    browser: Browser, api_url: str, read_key: str,
) -> None:
    page = await browser.new_page()
    await page.goto(f"{api_url}/dashboards/points?program=1")
    assert page.url.endswith("/dashboards/login")
    await page.close()

    blocked: list[str] = []
    page = await _signed_in_page(browser, api_url, read_key, blocked)
    for wanted in ("999999999", "not-a-number", "99999999999999999999999", "²"):
        response = await page.goto(f"{api_url}/dashboards/points?program={wanted}")
        assert response is not None and response.status == 404, wanted
        assert "Program not found" in (await page.text_content("#not-found") or "")
        assert wanted in (await page.text_content("#not-found") or "")
    assert blocked == []
    await page.close()
