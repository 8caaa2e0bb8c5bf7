"""The hosted preferences/unsubscribe page behind every email's `List-Unsubscribe` link (`/u/{token}`).

GET shows what the link unsubscribes from and a button; POST does it. A POST whose body is
`List-Unsubscribe=One-Click` is RFC 8058's one-click unsubscribe, sent by the mail client without a page: it
answers 200 with no content to render. The token is signed (domain/channels/tokens.py), so nobody can
unsubscribe someone else."""

from __future__ import annotations

from html import escape
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, Response

from api.channels.webhooks import INVALID_PATH
from api.deps import Session
from domain.channels.tokens import InvalidToken, LinkToken, verify
from store.channels import preferences
from store.channels.webhooks import link_secret

router = APIRouter(tags=["deliveries"])
Token = Annotated[str, Path(min_length=10, max_length=2000, pattern=r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")]
# A link that does not verify is a page saying so (HTML, for the person who clicked it), documented as such.
PAGE_ERRORS = {**INVALID_PATH, 404: {"description": "The link is not valid (an HTML page says so)",
                                     "content": {"text/html": {"schema": {"type": "string"}}}}}
PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}}
button{{font-size:1rem;padding:.5rem 1rem;margin:.25rem 0}}</style></head>
<body><h1>{title}</h1>{body}</body></html>"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(PAGE.format(title=escape(title), body=body), status_code=status)


def _what(link: LinkToken) -> str:
    channel = escape(link.channel or "any channel")
    return f"“{escape(link.topic)}” messages by {channel}" if link.topic else f"marketing messages by {channel}"


async def _link(session: Session, token: str) -> LinkToken | None:
    try:
        return verify(await link_secret(session), token, "u")
    except InvalidToken:
        return None


@router.get("/u/{token}", response_class=HTMLResponse, openapi_extra={"security": []},
            summary="The hosted unsubscribe page a message's link opens", responses=PAGE_ERRORS)
async def unsubscribe_page(token: Token, session: Session) -> HTMLResponse:
    link = await _link(session, token)
    if link is None:
        return _page("Link not valid", "<p>This unsubscribe link is not valid. Use the link in a recent message."
                                       "</p>", 404)
    form = (f'<form method="post"><p>Stop receiving {_what(link)}?</p>'
            f'<button name="scope" value="topic" type="submit">Unsubscribe</button></form>')
    if link.topic:
        form += ('<form method="post"><button name="scope" value="all" type="submit">Unsubscribe from all '
                 'marketing messages on this channel</button></form>')
    return _page("Email preferences", form)


@router.post("/u/{token}", openapi_extra={"security": []}, response_class=HTMLResponse,
             summary="Unsubscribe (the page's button, or RFC 8058 one-click `List-Unsubscribe=One-Click`)",
             responses=PAGE_ERRORS)
async def unsubscribe(token: Token, request: Request, session: Session) -> Response:
    link = await _link(session, token)
    if link is None:
        return _page("Link not valid", "<p>This unsubscribe link is not valid.</p>", 404)
    form = parse_qs((await request.body()).decode("utf-8", "replace")[:2000])
    one_click = form.get("List-Unsubscribe") == ["One-Click"]
    topic = "*" if form.get("scope") == ["all"] or not link.topic else link.topic
    if await preferences.exists(session, link.contact_id):
        await preferences.upsert(session, link.contact_id, {(topic, link.channel or "*"): False})
    if one_click:
        return Response(status_code=200)
    what = _what(link) if topic != "*" else f"marketing messages by {escape(link.channel or 'any channel')}"
    return _page("Unsubscribed", f"<p>You will no longer receive {what}.</p>")
