"""Dashboard pages. A browser signs in with an API key (read scope is enough) and gets a session, never the key: a
random token in an HttpOnly cookie scoped to /dashboards, stored hashed with an expiry, ended at sign-out or when the
key is revoked (store/keys.py). The API does not read that cookie. Every form carries a token derived from a cookie
(the session's, or before sign-in a random one), which another site can neither read nor compute: a POST without
it is refused with a 403."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import runtime
from api.params import ID_MAX
from channels.mailbox import read_mailbox
from channels.simulators import PROVIDERS, read_inbox
from domain.errors import NotFound
from domain.keys import SESSION_FORMAT, Scope, allows, csrf_matches, csrf_token, issue_session
from domain.ledger.postings import month_label
from store import keys
from store.campaigns.dashboard import campaign_detail, campaign_summaries
from store.channels.dashboard import deliveries_dashboard
from store.journeys.dashboard import journeys_dashboard
from store.ledger.dashboard import points_dashboard
from store.promotions.dashboard import promotions_dashboard
from store.tasks.dashboard import tasks_dashboard

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["month"] = month_label
templates.env.filters["utc"] = lambda moment: moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
router = APIRouter(prefix="/dashboards", include_in_schema=False)

SESSION_COOKIE = "nudge_session"
FORM_COOKIE = "nudge_form"  # before sign-in there is no session: the sign-in form's token is derived from this one
OLD_KEY_COOKIE = "nudge_key"  # where earlier versions kept the raw key (Path=/): removed from browsers that have it
COOKIE_PATH = "/dashboards"
STALE_FORM = "This form did not come from this dashboard or has expired, so nothing was done; sign in again."


def mount_static(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")


async def _signed_in(request: Request) -> str | None:
    """The browser's session token if it names a live session of a key with the read scope, else None."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    async with runtime(request).sessions() as s:
        granted = await keys.session_scopes(s, token)
    return token if granted is not None and allows(granted, Scope.READ) else None


def _to_sign_in() -> RedirectResponse:
    return RedirectResponse("/dashboards/login", status_code=303)


def _page(request: Request, name: str, status_code: int = 200, *, session: str | None = None,
          **context: Any) -> HTMLResponse:
    """A page; signed-in pages pass their `session`, whose form token the sign-out form carries."""
    signed = {"signed_in": True, "csrf": csrf_token(session)} if session else {}
    return templates.TemplateResponse(request, name, {"nav": name.split(".")[0], **signed, **context},
                                      status_code=status_code)


def _set_cookie(request: Request, response: Response, name: str, value: str, max_age: int | None = None) -> None:
    """HttpOnly, SameSite=Lax, only under /dashboards, and Secure when Nudge is served over HTTPS (directly, or behind
    a proxy that says so in X-Forwarded-Proto, or with an https NUDGE_PUBLIC_URL)."""
    public = runtime(request).settings.public_url or ""
    secure = request.url.scheme == "https" or public.startswith("https://")
    response.set_cookie(name, value, max_age=max_age, path=COOKIE_PATH, secure=secure, httponly=True, samesite="lax")


def _sign_in_page(request: Request, error: str | None = None, status_code: int = 200) -> HTMLResponse:
    """The sign-in form, its token derived from the browser's form cookie (set here if it has none)."""
    form = request.cookies.get(FORM_COOKIE) or ""
    fresh = not SESSION_FORMAT.fullmatch(form)
    if fresh:
        form = issue_session()
    response = _page(request, "login.html", status_code, error=error, csrf=csrf_token(form))
    if fresh:
        _set_cookie(request, response, FORM_COOKIE, form)
    if OLD_KEY_COOKIE in request.cookies:
        response.delete_cookie(OLD_KEY_COOKIE, path="/")
    return response


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request) -> HTMLResponse:
    return _sign_in_page(request)


@router.post("/login")
async def login(request: Request, key: Annotated[str, Form()], csrf: Annotated[str, Form()] = "") -> Response:
    if not csrf_matches(request.cookies.get(FORM_COOKIE), csrf):
        return _sign_in_page(request, STALE_FORM, status_code=403)
    lifetime = timedelta(hours=runtime(request).settings.dashboard_session_hours)
    async with runtime(request).sessions() as s, s.begin():
        token = await keys.open_session(s, key, Scope.READ, lifetime, replacing=request.cookies.get(SESSION_COOKIE))
    if token is None:
        return _sign_in_page(request, "That key is unknown, revoked, or lacks the read scope.")
    response = RedirectResponse("/dashboards/campaigns", status_code=303)
    _set_cookie(request, response, SESSION_COOKIE, token, max_age=int(lifetime.total_seconds()))
    response.delete_cookie(FORM_COOKIE, path=COOKIE_PATH)
    return response


@router.post("/logout")
async def logout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        if not csrf_matches(token, csrf):
            return _page(request, "refused.html", 403, detail="That sign-out form did not come from this dashboard, "
                                                             "so you are still signed in.")
        async with runtime(request).sessions() as s, s.begin():
            await keys.close_session(s, token)
    response = _to_sign_in()
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    return response


@router.get("", response_class=HTMLResponse)
async def home() -> Response:
    return RedirectResponse("/dashboards/campaigns", status_code=307)


@router.get("/campaigns", response_class=HTMLResponse)
async def campaigns_page(request: Request) -> Response:
    if (token := await _signed_in(request)) is None:
        return _to_sign_in()
    async with runtime(request).sessions() as s:
        rows = await campaign_summaries(s)
    totals = {k: sum(r[k] for r in rows) for k in ("sent", "failed", "queued")}
    chart = {
        "labels": [f"#{r['id']} {r['name']}" for r in reversed(rows[:12])],
        "sent": [r["sent"] for r in reversed(rows[:12])],
        "failed": [r["failed"] for r in reversed(rows[:12])],
    }
    return _page(request, "campaigns.html", session=token, campaigns=rows, totals=totals, chart=chart,
                 temporal_ui=request.app.state.temporal_ui)


@router.get("/campaigns/{campaign_id}", response_class=HTMLResponse)
async def campaign_page(request: Request, campaign_id: str) -> Response:
    """One campaign: progress while running, per-variant and per-channel results, holdout lift, the run in the
    Temporal UI, the audit trail; an unknown id is a 404 page."""
    if (token := await _signed_in(request)) is None:
        return _to_sign_in()
    detail = None
    if campaign_id.isascii() and campaign_id.isdigit() and 0 < int(campaign_id) <= ID_MAX:
        try:
            async with runtime(request).sessions() as s:
                detail = await campaign_detail(s, int(campaign_id))
        except NotFound:
            detail = None
    if detail is None:
        return _page(request, "campaign.html", status_code=404, session=token, missing=campaign_id, detail=None,
                     nav="campaigns")
    return _page(request, "campaign.html", session=token, detail=detail, temporal_ui=request.app.state.temporal_ui,
                 nav="campaigns")


@router.get("/points", response_class=HTMLResponse)
async def points_page(request: Request, program: str | None = None) -> Response:
    """Points economy of one program (`?program=ID`, default the first); an unknown id is a 404 page."""
    if (token := await _signed_in(request)) is None:
        return _to_sign_in()
    def missing() -> HTMLResponse:
        return _page(request, "points.html", status_code=404, session=token, missing=program, economy=None)

    if program and not (program.isascii() and program.isdigit() and 0 < int(program) <= ID_MAX):
        return missing()
    try:
        async with runtime(request).sessions() as s:
            economy = await points_dashboard(s, int(program) if program else None, now=datetime.now(UTC))
    except NotFound:
        return missing()
    return _page(request, "points.html", session=token, economy=economy, missing=None)


async def _board(request: Request, template: str, load: Callable[[AsyncSession], Awaitable[object]],
                 **context: Any) -> Response:
    """A signed-in page showing one board a store function reads in one session (`board` in the template)."""
    if (token := await _signed_in(request)) is None:
        return _to_sign_in()
    async with runtime(request).sessions() as s:
        board = await load(s)
    return _page(request, template, session=token, board=board, **context)


@router.get("/promotions", response_class=HTMLResponse)
async def promotions_page(request: Request) -> Response:
    """Promotion usage and discount cost, coupon issue → redeem rate, stock left."""
    return await _board(request, "promotions.html", promotions_dashboard)


@router.get("/tasks", response_class=HTMLResponse)
async def tasks_page(request: Request) -> Response:
    """Incentive tasks: participants, completions, claim rate, rewards issued, budget burn and its forecast."""
    now = datetime.now(UTC)
    return await _board(request, "tasks.html", lambda s: tasks_dashboard(s, now=now), now=now)


@router.get("/journeys", response_class=HTMLResponse)
async def journeys_page(request: Request) -> Response:
    """Each journey's graph with per-node counts (entered, waiting, each branch, exited, converted) and versions."""
    return await _board(request, "journeys.html", journeys_dashboard)


@router.get("/deliveries", response_class=HTMLResponse)
async def deliveries_page(request: Request) -> Response:
    """Per channel sent → delivered → opened → clicked, failures by class, fallback share, suppressions."""
    return await _board(request, "deliveries.html", deliveries_dashboard)


@router.get("/inbox", response_class=HTMLResponse)
async def inbox_page(request: Request) -> Response:
    """What the embedded mail sink received (only when Nudge runs its own sink)."""
    if (token := await _signed_in(request)) is None:
        return _to_sign_in()
    settings = runtime(request).settings
    messages = read_mailbox(settings.mail_dir, limit=100)
    rows = [
        {"to": m["To"], "subject": m["Subject"], "date": m["Date"], "message_id": m["Message-ID"],
         "body": (m.get_body(("plain",)) or m).get_content()[:2000]}
        for m in reversed(messages)
    ]
    simulated = {provider: list(reversed(read_inbox(settings.simulator_dir, provider, limit=50)))
                 for provider in PROVIDERS}
    return _page(request, "inbox.html", session=token, messages=rows, sink=settings.mail_dir.exists(),
                 simulated=simulated)
