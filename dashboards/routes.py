"""Dashboard pages. Signed in with an API key kept in an HttpOnly cookie (read scope is enough)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from api.deps import DASHBOARD_COOKIE, runtime
from channels.mailbox import read_mailbox
from domain.errors import NotFound
from domain.keys import Scope, allows
from domain.ledger.postings import month_label
from store import keys
from store.campaigns.dashboard import campaign_summaries
from store.ledger.dashboard import points_dashboard

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["month"] = month_label
templates.env.filters["utc"] = lambda moment: moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
router = APIRouter(prefix="/dashboards", include_in_schema=False)


def mount_static(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")


async def _signed_in(request: Request) -> bool:
    token = request.cookies.get(DASHBOARD_COOKIE)
    if not token:
        return False
    async with runtime(request).sessions() as s:
        granted = await keys.find_scopes(s, token)
    return granted is not None and allows(granted, Scope.READ)


def _page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, {"nav": name.split(".")[0], **context}, status_code=status_code)


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, error: str | None = None) -> HTMLResponse:
    return _page(request, "login.html", error=error)


@router.post("/login")
async def login(request: Request, key: Annotated[str, Form()]) -> Response:
    async with runtime(request).sessions() as s:
        granted = await keys.find_scopes(s, key)
    if granted is None or not allows(granted, Scope.READ):
        return _page(request, "login.html", error="That key is unknown, revoked, or lacks the read scope.")
    response = RedirectResponse("/dashboards/campaigns", status_code=303)
    response.set_cookie(DASHBOARD_COOKIE, key, httponly=True, samesite="lax")
    return response


@router.get("", response_class=HTMLResponse)
async def home() -> Response:
    return RedirectResponse("/dashboards/campaigns", status_code=307)


@router.get("/campaigns", response_class=HTMLResponse)
async def campaigns_page(request: Request) -> Response:
    if not await _signed_in(request):
        return RedirectResponse("/dashboards/login", status_code=303)
    async with runtime(request).sessions() as s:
        rows = await campaign_summaries(s)
    totals = {k: sum(r[k] for r in rows) for k in ("sent", "failed", "queued")}
    chart = {
        "labels": [f"#{r['id']} {r['name']}" for r in reversed(rows[:12])],
        "sent": [r["sent"] for r in reversed(rows[:12])],
        "failed": [r["failed"] for r in reversed(rows[:12])],
    }
    return _page(request, "campaigns.html", campaigns=rows, totals=totals, chart=chart,
                 temporal_ui=request.app.state.temporal_ui)


@router.get("/points", response_class=HTMLResponse)
async def points_page(request: Request, program: str | None = None) -> Response:
    """Points economy of one program (`?program=ID`, default the first); an unknown id is a 404 page."""
    if not await _signed_in(request):
        return RedirectResponse("/dashboards/login", status_code=303)
    def missing() -> HTMLResponse:
        return _page(request, "points.html", status_code=404, missing=program, economy=None)

    if program and not (program.isascii() and program.isdigit()):
        return missing()
    try:
        async with runtime(request).sessions() as s:
            economy = await points_dashboard(s, int(program) if program else None, now=datetime.now(UTC))
    except NotFound:
        return missing()
    return _page(request, "points.html", economy=economy, missing=None)


@router.get("/inbox", response_class=HTMLResponse)
async def inbox_page(request: Request) -> Response:
    """What the embedded mail sink received (only when Nudge runs its own sink)."""
    if not await _signed_in(request):
        return RedirectResponse("/dashboards/login", status_code=303)
    settings = runtime(request).settings
    messages = read_mailbox(settings.mail_dir, limit=100)
    rows = [
        {"to": m["To"], "subject": m["Subject"], "date": m["Date"], "message_id": m["Message-ID"],
         "body": (m.get_body(("plain",)) or m).get_content()[:2000]}
        for m in reversed(messages)
    ]
    return _page(request, "inbox.html", messages=rows, sink=settings.mail_dir.exists())
