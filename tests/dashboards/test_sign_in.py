"""Dashboard sign-in: a session in an HttpOnly cookie instead of the key, CSRF tokens on every form, and an API that
ignores the cookie. Over plain HTTP against the real app (a client keeps cookies as a browser does), and once in
Chromium."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from http.cookies import SimpleCookie

import httpx
from playwright.async_api import Browser
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.keys import Scope, hash_secret, issue_session
from store import keys
from store.db import transaction

SignIn = Callable[[httpx.AsyncClient, str], Awaitable[httpx.Response]]  # the `dashboard_sign_in` fixture
SESSION = "nudge_session"


async def _new_key(sessions: async_sessionmaker[AsyncSession], scope: Scope = Scope.READ) -> str:
    async with transaction(sessions) as s:
        return (await keys.create_key(s, "dashboard sign-in test", [scope])).token


def _set_cookie(response: httpx.Response, name: str) -> str:
    """The Set-Cookie header that sets `name`."""
    found = [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}=")]
    assert len(found) == 1, response.headers.get_list("set-cookie")
    return found[0]


def _csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert found is not None, page.text
    return found[1]


async def _signed_in(api_url: str, token: str) -> bool:
    """Whether a bare session cookie opens a dashboard page."""
    async with httpx.AsyncClient(base_url=api_url, cookies={SESSION: token}) as client:
        r = await client.get("/dashboards/campaigns")
    assert r.status_code in (200, 303), r.text
    return r.status_code == 200


async def test_the_session_cookie_is_not_the_key_and_stays_in_the_dashboards(
        api_url: str, sessions: async_sessionmaker[AsyncSession], dashboard_sign_in: SignIn) -> None:
    key = await _new_key(sessions)
    async with httpx.AsyncClient(base_url=api_url) as browser:
        r = await dashboard_sign_in(browser, key)
        assert r.status_code == 303 and r.headers["location"] == "/dashboards/campaigns", r.text
        header = _set_cookie(r, SESSION)
        token = SimpleCookie(header)[SESSION].value
        assert key not in header and key.split("_", 2)[2] not in header and len(token) == 43  # nk_<prefix>_<secret>
        attributes = {a.strip().split("=")[0].lower(): a.strip() for a in header.split(";")[1:]}
        assert attributes["path"] == "Path=/dashboards" and "httponly" in attributes
        assert attributes["samesite"].lower() == "samesite=lax" and "secure" not in attributes  # plain HTTP here
        assert attributes["max-age"] == f"Max-Age={12 * 3600}"
        page = await browser.get("/dashboards/campaigns")
        assert page.status_code == 200 and "Sign out" in page.text
        assert key not in page.text and token not in page.text  # the page carries a token derived from it, only
    async with transaction(sessions) as s:
        stored = (await s.execute(text("SELECT token_hash FROM dashboard_sessions WHERE token_hash = :h"),
                                  {"h": hash_secret(token)})).scalar_one()
        assert stored != token


async def test_over_https_the_cookies_are_secure(api_url: str, sessions: async_sessionmaker[AsyncSession]) -> None:
    """Behind a TLS proxy (X-Forwarded-Proto, trusted from 127.0.0.1 as uvicorn does by default) both cookies say
    Secure; a client that honours that would not send them over plain HTTP, so they are passed by hand here."""
    key = await _new_key(sessions)
    https = {"X-Forwarded-Proto": "https"}
    async with httpx.AsyncClient(base_url=api_url) as client:
        form = await client.get("/dashboards/login", headers=https)
        form_cookie = _set_cookie(form, "nudge_form")
        assert "; secure" in form_cookie.lower()
        cookie = f"nudge_form={SimpleCookie(form_cookie)['nudge_form'].value}"
        r = await client.post("/dashboards/login", data={"key": key, "csrf": _csrf(form)},
                              headers=https | {"Cookie": cookie})
        assert r.status_code == 303, r.text
        assert "; secure" in _set_cookie(r, SESSION).lower()


async def test_the_api_does_not_accept_the_dashboard_cookie(
        api_url: str, admin_key: str, dashboard_sign_in: SignIn) -> None:
    async with httpx.AsyncClient(base_url=api_url) as browser:
        r = await dashboard_sign_in(browser, admin_key)
        token = SimpleCookie(_set_cookie(r, SESSION))[SESSION].value
    async with httpx.AsyncClient(base_url=api_url) as client:
        for cookie in (f"{SESSION}={token}", f"nudge_key={admin_key}"):  # the session, and what older versions kept
            for method, path, body in (("GET", "/v1/contacts", None), ("POST", "/v1/contacts", {"user_id": "c"}),
                                       ("POST", "/v1/track", {"userId": "u", "event": "e"})):
                answer = await client.request(method, path, json=body, headers={"Cookie": cookie})
                assert answer.status_code == 401, (cookie, path, answer.text)
                assert answer.headers["content-type"] == "application/problem+json"
        assert (await client.get("/v1/contacts", headers={"Authorization": f"Bearer {admin_key}"})).status_code == 200


async def test_a_forged_malformed_expired_or_revoked_session_is_refused(
        api_url: str, sessions: async_sessionmaker[AsyncSession], dashboard_sign_in: SignIn) -> None:
    for forged in (issue_session(), "x" * 43, "", "nk_ab_cd", issue_session()[:-1] + "\\000"):
        assert not await _signed_in(api_url, forged), forged

    key = await _new_key(sessions)
    tokens = []
    for _ in range(2):  # two browsers signed in with the same key
        async with httpx.AsyncClient(base_url=api_url) as browser:
            tokens.append(SimpleCookie(_set_cookie(await dashboard_sign_in(browser, key), SESSION))[SESSION].value)
    expired, revoked = tokens
    assert await _signed_in(api_url, expired) and await _signed_in(api_url, revoked)
    async with transaction(sessions) as s:
        await s.execute(text("UPDATE dashboard_sessions SET expires_at = now() - interval '1 second' "
                             "WHERE token_hash = :h"), {"h": hash_secret(expired)})
    assert not await _signed_in(api_url, expired)
    assert await _signed_in(api_url, revoked)

    async with transaction(sessions) as s:
        assert await keys.revoke_key(s, key.split("_")[1])
    assert not await _signed_in(api_url, revoked)
    async with transaction(sessions) as s:  # the revocation deleted the key's sessions (the expired one included)
        left = (await s.execute(text("SELECT count(*) FROM dashboard_sessions WHERE token_hash IN (:a, :b)"),
                                {"a": hash_secret(expired), "b": hash_secret(revoked)})).scalar_one()
    assert left == 0


async def test_signing_in_again_ends_the_previous_session(
        api_url: str, read_key: str, dashboard_sign_in: SignIn) -> None:
    async with httpx.AsyncClient(base_url=api_url) as browser:
        first = SimpleCookie(_set_cookie(await dashboard_sign_in(browser, read_key), SESSION))[SESSION].value
        second = SimpleCookie(_set_cookie(await dashboard_sign_in(browser, read_key), SESSION))[SESSION].value
    assert first != second
    assert not await _signed_in(api_url, first) and await _signed_in(api_url, second)


def _altered(token: str) -> str:
    """The token with its last character changed (to another one: a token may end in any of them)."""
    return token[:-1] + ("1" if token.endswith("0") else "0")


async def test_a_post_without_its_csrf_token_is_refused(
        api_url: str, read_key: str, sessions: async_sessionmaker[AsyncSession], dashboard_sign_in: SignIn) -> None:
    async with httpx.AsyncClient(base_url=api_url) as browser:
        form = await browser.get("/dashboards/login")
        for sent in ({"key": read_key}, {"key": read_key, "csrf": ""}, {"key": read_key, "csrf": "0" * 64},
                     {"key": read_key, "csrf": _altered(_csrf(form))}):
            r = await browser.post("/dashboards/login", data=sent)
            assert r.status_code == 403 and SESSION not in r.headers.get("set-cookie", ""), (sent, r.text)
            assert "did not come from this dashboard" in r.text
        # A token from another browser's form does not fit this browser's form cookie.
        async with httpx.AsyncClient(base_url=api_url) as other:
            theirs = _csrf(await other.get("/dashboards/login"))
        assert (await browser.post("/dashboards/login", data={"key": read_key, "csrf": theirs})).status_code == 403

        r = await dashboard_sign_in(browser, read_key)
        token = SimpleCookie(_set_cookie(r, SESSION))[SESSION].value
        for sent in ({}, {"csrf": ""}, {"csrf": _csrf(form)}):  # none, empty, the sign-in form's
            r = await browser.post("/dashboards/logout", data=sent)
            assert r.status_code == 403 and "still signed in" in r.text, (sent, r.text)
        assert await _signed_in(api_url, token)


async def test_sign_out_ends_the_session(api_url: str, read_key: str, dashboard_sign_in: SignIn) -> None:
    async with httpx.AsyncClient(base_url=api_url) as browser:
        token = SimpleCookie(_set_cookie(await dashboard_sign_in(browser, read_key), SESSION))[SESSION].value
        page = await browser.get("/dashboards/campaigns")
        r = await browser.post("/dashboards/logout", data={"csrf": _csrf(page)})
        assert r.status_code == 303 and r.headers["location"] == "/dashboards/login"
        assert _set_cookie(r, SESSION).startswith(f'{SESSION}=""; ')  # the browser forgets it
        assert (await browser.get("/dashboards/campaigns")).headers["location"] == "/dashboards/login"
    assert not await _signed_in(api_url, token)  # and the server does too: the same cookie opens nothing


async def test_in_chromium_sign_in_keeps_no_key_and_sign_out_signs_out(
        browser: Browser, api_url: str, read_key: str) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(f"{api_url}/dashboards/login")
    await page.fill("input[name=key]", read_key)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/dashboards/campaigns")
    cookies = {c["name"]: c for c in await context.cookies()}
    session = cookies[SESSION]
    assert session["httpOnly"] and session["sameSite"] == "Lax" and session["path"] == "/dashboards"
    assert all(read_key not in c["value"] for c in cookies.values())
    assert await page.evaluate("document.cookie") == ""  # nothing a script on the page can read

    await page.click("form.sign-out button")
    await page.wait_for_url("**/dashboards/login")
    assert SESSION not in {c["name"] for c in await context.cookies()}
    await page.goto(f"{api_url}/dashboards/campaigns")
    assert page.url.endswith("/dashboards/login")
    await context.close()
