"""WeChat Official Account template messages, and the verifier of WeChat's `TEMPLATESENDJOBFINISH` events.

Token: `GET {base}/cgi-bin/token?grant_type=client_credential&appid=&secret=` → `{"access_token", "expires_in"}`,
cached until shortly before expiry; refreshed once when a send answers 40001/42001/40014. Send:
`POST {base}/cgi-bin/message/template/send?access_token=…` with `{"touser", "template_id", "url", "data",
"client_msg_id"}` (the delivery key: WeChat sends one message per openid and client_msg_id).
WeChat answers HTTP 200 with an `errcode` for every outcome.
"""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from channels.base import ErrorClass, Message, Receipt, ReceiptStatus, SendResult, WebhookRefused
from channels.http import CachedToken, HttpAdapter, failed, json_or_empty, status_class
from domain.channels.signatures import SignatureInvalid, verify_wechat

REFRESH_MARGIN = 300  # WeChat advises refreshing ahead of expiry
TOKEN_INVALID = frozenset({40001, 40014, 42001})  # invalid credential, invalid access_token, access_token expired
UNREACHABLE_CODES = frozenset({40003, 43004, 43101})  # invalid openid, not subscribed, user refused the template
RETRYABLE_CODES = frozenset({-1, 45009, 45047})  # system busy, API rate limit, out of quota for now


class WechatChannel(HttpAdapter):
    name = "wechat"

    def __init__(self, base_url: str, app_id: str, app_secret: str, *, timeout: float = 10, concurrency: int = 16,
                 transport: httpx.AsyncBaseTransport | None = None, clock: Callable[[], float] = time.time) -> None:
        super().__init__(timeout=timeout, concurrency=concurrency, transport=transport)
        self.base_url = base_url.rstrip("/")
        self.app_id = app_id
        self.app_secret = app_secret
        self.clock = clock
        self.token = CachedToken(self._fetch_token, clock, margin=REFRESH_MARGIN)

    async def access_token(self, *, stale: str | None = None) -> str:
        return await self.token.get(stale=stale)

    async def _fetch_token(self, now: float) -> tuple[str, float]:
        response = await self.client.get(f"{self.base_url}/cgi-bin/token", params={
            "grant_type": "client_credential", "appid": self.app_id, "secret": self.app_secret})
        body = json_or_empty(response)
        if not response.is_success or not body.get("access_token"):
            code = body.get("errcode")
            klass = (ErrorClass.RETRYABLE if code in RETRYABLE_CODES or code is None and status_class(
                response.status_code) is ErrorClass.RETRYABLE else ErrorClass.NON_RETRYABLE)
            raise WechatTokenError(f"wechat token {response.status_code} {code}: "
                                   f"{body.get('errmsg') or response.text[:200]}", klass)
        return str(body["access_token"]), float(body.get("expires_in", 7200))

    def payload(self, message: Message) -> dict[str, Any]:
        fields = message.data.get("fields") or {"first": message.subject, "remark": message.text}
        body: dict[str, Any] = {
            "touser": message.to,
            "template_id": message.data.get("template_id", ""),
            "data": {k: v if isinstance(v, dict) else {"value": str(v)} for k, v in fields.items()},
            "client_msg_id": message.key,
        }
        for name in ("url", "miniprogram"):
            if message.data.get(name):
                body[name] = message.data[name]
        return body

    async def send_one(self, message: Message) -> SendResult:
        if not message.to:
            return failed(message, "contact has no WeChat openid", ErrorClass.UNREACHABLE)
        if not message.data.get("template_id"):
            return failed(message, "the message names no WeChat template_id", ErrorClass.NON_RETRYABLE)
        try:
            token = await self.access_token()
            response, body = await self._post(message, token)
            if body.get("errcode") in TOKEN_INVALID:
                response, body = await self._post(message, await self.access_token(stale=token))
        except WechatTokenError as exc:
            return failed(message, str(exc), exc.error_class)
        code = body.get("errcode")
        if response.is_success and code == 0 and body.get("msgid") is not None:
            return SendResult(message.key, True, provider_message_id=str(body["msgid"]))
        error = f"wechat {response.status_code} {code}: {body.get('errmsg') or response.text[:200]}"
        if code in UNREACHABLE_CODES:
            return failed(message, error, ErrorClass.UNREACHABLE)
        if code in RETRYABLE_CODES or code in TOKEN_INVALID:  # still refused after one refresh
            return failed(message, error, ErrorClass.RETRYABLE)
        if code is None:  # not WeChat's JSON: a gateway's error page
            return failed(message, error, status_class(response.status_code))
        return failed(message, error, ErrorClass.NON_RETRYABLE)

    async def _post(self, message: Message, token: str) -> tuple[httpx.Response, dict[str, Any]]:
        response = await self.client.post(f"{self.base_url}/cgi-bin/message/template/send",
                                          params={"access_token": token}, json=self.payload(message))
        return response, json_or_empty(response)


class WechatTokenError(Exception):
    """No access token: wrong appid/secret or a server IP not on the allow-list (permanent until someone fixes
    the configuration), or WeChat busy (retryable)."""

    def __init__(self, message: str, error_class: ErrorClass) -> None:
        super().__init__(message)
        self.error_class = error_class


# A DOCTYPE is how XML bombs (billion laughs) and external entities get in; WeChat never sends one. The stdlib
# expat parser does not fetch external entities but does expand internal ones, so a body declaring any is
# refused before parsing (defusedxml is not a dependency).
_DECLARATION = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
MAX_BODY = 64 * 1024


class WechatCallbacks:
    """WeChat's server notifications: query params `signature`, `timestamp`, `nonce` (sha1 of the sorted Token,
    timestamp and nonce), refused when the timestamp is off by more than the tolerance; the body is plaintext-mode
    XML. `TEMPLATESENDJOBFINISH` events become receipts; other verified events carry none."""

    provider = "wechat"

    def __init__(self, token: str, *, tolerance: int = 300) -> None:
        self.token = token
        self.tolerance = tolerance

    def _verify(self, url: str, now: datetime) -> dict[str, str]:
        query = {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}
        try:
            verify_wechat(self.token, query.get("signature"), query.get("timestamp"), query.get("nonce"),
                          int(now.timestamp()), self.tolerance)
        except SignatureInvalid as exc:
            raise WebhookRefused(str(exc)) from exc
        return query

    def echo(self, url: str, now: datetime) -> str:
        """The answer to WeChat's server-URL check (a GET with `signature`, `timestamp`, `nonce`, `echostr`):
        `echostr` back when the signature verifies."""
        echostr = self._verify(url, now).get("echostr")
        if not echostr:
            raise WebhookRefused("echostr is missing")
        return echostr

    def parse_callback(self, url: str, headers: Mapping[str, str], body: bytes, now: datetime) -> list[Receipt]:
        self._verify(url, now)
        event = parse_event(body)
        if event.get("MsgType") != "event" or event.get("Event") != "TEMPLATESENDJOBFINISH":
            return []
        msg_id, status = event.get("MsgID") or event.get("MsgId"), event.get("Status") or ""
        if not msg_id or not status:
            raise WebhookRefused("TEMPLATESENDJOBFINISH needs MsgID and Status")
        created = event.get("CreateTime") or ""
        at = datetime.fromtimestamp(int(created), UTC) if created.isdigit() else now
        ok = status == "success"
        return [Receipt(channel="wechat", status=ReceiptStatus.DELIVERED if ok else ReceiptStatus.FAILED, at=at,
                        provider_message_id=msg_id, error=None if ok else status.removeprefix("failed:").strip(),
                        event_id=f"{msg_id}:{status}")]


def parse_event(body: bytes) -> dict[str, str]:
    """The child elements of a WeChat `<xml>` body as text; `WebhookRefused` when it is not one."""
    if len(body) > MAX_BODY:
        raise WebhookRefused("body is too large")
    if _DECLARATION.search(body):
        raise WebhookRefused("XML with a DOCTYPE or ENTITY declaration is refused")
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:
        raise WebhookRefused(f"body is not XML: {exc}") from exc
    if root.tag != "xml":
        raise WebhookRefused("body is not a WeChat <xml> message")
    return {child.tag: (child.text or "").strip() for child in root}
