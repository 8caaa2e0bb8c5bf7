"""The API documentation pages in real headless Chromium, with every request outside Nudge refused: Swagger UI
and ReDoc come from files shipped in the package, so they work without internet access."""

from __future__ import annotations

import httpx
from playwright.async_api import Browser, Page, Route


async def _offline_page(browser: Browser, api_url: str, path: str) -> tuple[list[str], Page]:
    page = await browser.new_page()
    outside: list[str] = []

    async def refuse_outside(route: Route) -> None:
        if route.request.url.startswith(api_url):
            await route.continue_()
        else:
            outside.append(route.request.url)
            await route.abort()

    await page.route("**/*", refuse_outside)
    await page.goto(f"{api_url}{path}")
    return outside, page


async def test_swagger_ui_lists_the_operations_offline(browser: Browser, api_url: str) -> None:
    outside, page = await _offline_page(browser, api_url, "/docs")
    await page.wait_for_selector(".opblock", timeout=30_000)
    paths = await page.locator(".opblock-summary-path").all_text_contents()
    assert "/v1/batch" in paths and "/v1/contacts" in paths and "/v1/ledger/postings" in paths, paths
    assert outside == []
    await page.close()


async def test_redoc_renders_the_reference_offline(browser: Browser, api_url: str) -> None:
    outside, page = await _offline_page(browser, api_url, "/redoc")
    await page.wait_for_selector("h1", timeout=30_000)
    assert "Nudge" in (await page.locator("h1").first.text_content() or "")
    assert outside == []
    await page.close()


async def test_docs_assets_are_the_vendored_files_with_their_licences(api_url: str) -> None:
    async with httpx.AsyncClient(base_url=api_url) as client:
        html = (await client.get("/docs")).text
        assert "cdn.jsdelivr.net" not in html and "/docs-assets/swagger-ui-bundle.js" in html
        assert "fonts.googleapis.com" not in (await client.get("/redoc")).text
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js",
                      "swagger-ui.LICENSE", "redoc.LICENSE"):
            assert (await client.get(f"/docs-assets/{asset}")).status_code == 200, asset
