"""Provider delivery callbacks (`POST /v1/webhooks/{provider}`, signed by the provider, no API key) and Nudge's own
open pixel and click redirect (signed tokens in the links)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import RedirectResponse, Response

from api.deps import Session, runtime
from api.errors import problem
from api.schemas.channels import WebhookOut
from channels.base import CallbackVerifier, WebhookRefused
from channels.registry import build_verifiers, twilio_callback_url
from channels.wechat import WechatCallbacks
from domain.channels.deliveries import DeliveryState
from domain.channels.tokens import InvalidToken, verify
from store.channels import receipts
from store.channels.webhooks import link_secret

router = APIRouter(tags=["deliveries"])
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
# Unkeyed routes document their own 422 (a malformed path), as problem+json like every other error.
INVALID_PATH = {422: {"description": "A malformed path parameter; `errors` names it",
                      "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}}
Token = Annotated[str, Path(min_length=10, max_length=2000, pattern=r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")]


def _verifiers(request: Request) -> dict[str, CallbackVerifier]:
    found = getattr(request.app.state, "channel_verifiers", None)
    if found is None:
        found = request.app.state.channel_verifiers = build_verifiers(runtime(request).settings)
    return found  # type: ignore[no-any-return]


@router.post("/v1/webhooks/{provider}", response_model=WebhookOut, openapi_extra={"security": []},
             summary="A provider's delivery callback (Twilio, FCM relay, WeChat), verified by its signature",
             responses={401: {"description": "Signature missing or wrong, or the timestamp is stale"},
                        404: {"description": "No such provider configured"},
                        409: {"description": "A replayed callback: nothing changed"}, **INVALID_PATH})
async def provider_callback(
    request: Request, session: Session,
    provider: Annotated[str, Path(pattern=r"^[a-z][a-z0-9_]{0,31}$", description="twilio, fcm or wechat")],
) -> Response:
    verifier = _verifiers(request).get(provider)
    if verifier is None:
        return problem(404, "Not found", f"no provider {provider!r} is configured for callbacks")
    body = await request.body()
    url = str(request.url)
    if provider == "twilio":  # Twilio signs the exact URL it was given, which a proxy may have rewritten
        url = twilio_callback_url(runtime(request).settings) + (f"?{request.url.query}" if request.url.query else "")
    now = datetime.now(UTC)
    try:
        parsed = verifier.parse_callback(url, request.headers, body, now)
    except WebhookRefused as exc:
        return problem(401, "Callback refused", f"{exc}; nothing changed")
    reports = [receipts.Report(r.channel, r.status.value, r.at, r.provider_message_id, r.error, r.event_id)
               for r in parsed]
    applied = await receipts.apply_callback(session, provider, reports, now)
    if provider == "wechat":
        return Response("success", media_type="text/plain")  # what WeChat's server expects back
    return Response(WebhookOut(reports=applied.reports, matched=applied.matched,
                               unknown=applied.unknown).model_dump_json(), media_type="application/json")


@router.get("/v1/webhooks/wechat", response_class=Response, openapi_extra={"security": []},
            summary="WeChat's server-URL check: `echostr` back when the signature (token, timestamp, nonce) holds",
            responses={200: {"content": {"text/plain": {}}, "description": "The `echostr` WeChat sent"},
                       401: {"description": "Signature missing or wrong, or the timestamp is stale"},
                       404: {"description": "WeChat is not configured for callbacks"}})
async def wechat_url_check(request: Request) -> Response:
    verifier = _verifiers(request).get("wechat")
    if not isinstance(verifier, WechatCallbacks):
        return problem(404, "Not found", "no provider 'wechat' is configured for callbacks")
    try:
        echostr = verifier.echo(str(request.url), datetime.now(UTC))
    except WebhookRefused as exc:
        return problem(401, "Check refused", str(exc))
    return Response(echostr, media_type="text/plain")


@router.get("/v1/t/o/{token}", include_in_schema=True, openapi_extra={"security": []},
            summary="The open-tracking pixel of an email (a 1×1 GIF)", response_class=Response,
            responses=INVALID_PATH)
async def opened(token: Token, request: Request, session: Session) -> Response:
    try:
        link = verify(await link_secret(session), token, "o")
    except InvalidToken:
        return Response(PIXEL, media_type="image/gif", headers={"Cache-Control": "no-store"})
    await receipts.track(session, link.contact_id, link.key, DeliveryState.OPENED, datetime.now(UTC))
    return Response(PIXEL, media_type="image/gif", headers={"Cache-Control": "no-store"})


@router.get("/v1/t/c/{token}", openapi_extra={"security": []}, response_class=RedirectResponse, status_code=302,
            summary="A tracked link: records the click and redirects to the signed target",
            responses={400: {"description": "The link is not valid (nothing is redirected)"}, **INVALID_PATH})
async def clicked(token: Token, request: Request, session: Session) -> Response:
    try:
        link = verify(await link_secret(session), token, "c")
    except InvalidToken as exc:
        return problem(400, "Invalid link", str(exc))
    await receipts.track(session, link.contact_id, link.key, DeliveryState.CLICKED, datetime.now(UTC))
    return RedirectResponse(link.url, status_code=302)
