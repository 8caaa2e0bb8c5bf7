"""The WeChat Official Account API, as far as Nudge uses it: `GET /cgi-bin/token` (client_credential, expiry),
`POST /cgi-bin/message/template/send` with WeChat's errcodes (always HTTP 200), `client_msg_id` de-duplication,
and `TEMPLATESENDJOBFINISH` events posted as XML to the server URL, signed with the Token."""

from __future__ import annotations

import re
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from xml.sax.saxutils import escape

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from channels.simulators.core import Action, TokenIssuingSimulator
from domain.channels.signatures import wechat_signature

OPENID = re.compile(r"^[A-Za-z0-9_-]{6,64}$")
DEFAULTS = {
    "unreachable-": Action.UNREACHABLE,
    "invalid-": Action.INVALID,
    "reject-": Action.REJECT,
    "busy-": Action.BUSY,
    "timeout-": Action.TIMEOUT,
    "undelivered-": Action.UNDELIVERED,
    "silent-": Action.SILENT,
}


def errcode(code: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"errcode": code, "errmsg": message, **extra})


class WechatSimulator(TokenIssuingSimulator):
    name = "wechat"
    defaults = DEFAULTS

    def __init__(self, directory: Path, *, app_id: str | None = None, app_secret: str | None = None,
                 token: str | None = None, callback_url: str | None = None, token_ttl: int = 7200,
                 callback_delay: float = 1.0, original_id: str = "gh_nudgesimulator") -> None:
        super().__init__(directory, token_ttl=token_ttl, callback_delay=callback_delay)
        self.app_id = app_id or "wx" + secrets.token_hex(8)
        self.app_secret = app_secret or secrets.token_hex(16)
        self.token = token or secrets.token_hex(8)
        self.callback_url = callback_url
        self.original_id = original_id
        self._sent: dict[tuple[str, str], int] = {}  # (openid, client_msg_id) → msgid
        self._next_msgid = 1_000_000 + secrets.randbelow(1_000_000)

    def routes(self) -> list[BaseRoute]:
        return [Route("/cgi-bin/token", self.access_token, methods=["GET"]),
                Route("/cgi-bin/message/template/send", self.send, methods=["POST"])]

    async def access_token(self, request: Request) -> Response:
        self.stats["token_requests"] += 1
        q = request.query_params
        if q.get("grant_type") != "client_credential":
            return errcode(40002, "invalid grant_type")
        if q.get("appid") != self.app_id:
            return errcode(40013, "invalid appid")
        if not secrets.compare_digest(q.get("secret", ""), self.app_secret):
            return errcode(40125, "invalid appsecret")
        token = secrets.token_urlsafe(48)
        self._tokens[token] = time.time() + self.token_ttl
        return JSONResponse({"access_token": token, "expires_in": self.token_ttl})

    async def send(self, request: Request) -> Response:
        token = request.query_params.get("access_token")
        if not token:
            return errcode(41001, "access_token missing")
        if token not in self._tokens:
            return errcode(40001, "invalid credential, access_token is invalid or not latest")
        if self._tokens[token] <= time.time():
            return errcode(42001, "access_token expired")
        self.stats["sends"] += 1
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError
        except ValueError:
            return errcode(47001, "data format error")
        openid, template_id = str(body.get("touser") or ""), str(body.get("template_id") or "")
        if not OPENID.match(openid):
            return errcode(40003, "invalid openid")
        if not template_id:
            return errcode(40037, "invalid template_id")
        data = body.get("data", {})
        if not isinstance(data, dict) or not all(isinstance(v, dict) and "value" in v for v in data.values()):
            return errcode(47003, "argument invalid! data.value invalid")
        client_msg_id = body.get("client_msg_id")
        if client_msg_id and (openid, str(client_msg_id)) in self._sent:
            return errcode(0, "ok", msgid=self._sent[(openid, str(client_msg_id))])
        action = self.behaviour.action(openid)
        if action is Action.TIMEOUT:
            return await self.hang()
        if action is Action.UNREACHABLE:
            return errcode(43004, "require subscribe")
        if action is Action.INVALID:
            return errcode(40003, "invalid openid")
        if action is Action.REJECT:
            return errcode(40037, "invalid template_id")
        if action is Action.BUSY:
            return errcode(45009, "reach max api daily quota limit")
        self._next_msgid += 1
        msgid = self._next_msgid
        if client_msg_id:
            self._sent[(openid, str(client_msg_id))] = msgid
        self.stats["accepted"] += 1
        self.inbox.append({"id": str(msgid), "to": openid, "key": client_msg_id, "action": action.value,
                           "template_id": template_id, "url": body.get("url"), "data": data})
        if self.callback_url and action is not Action.SILENT:
            status = "failed:user block" if action is Action.UNDELIVERED else "success"
            url = self.callback_url  # as configured when the message was accepted
            self.report_later(lambda client: self.post_event(client, url, openid, msgid, status))
        return errcode(0, "ok", msgid=msgid)

    def event_xml(self, openid: str, msgid: int, status: str, created: int) -> bytes:
        return (f"<xml><ToUserName><![CDATA[{self.original_id}]]></ToUserName>"
                f"<FromUserName><![CDATA[{escape(openid)}]]></FromUserName><CreateTime>{created}</CreateTime>"
                "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event>"
                f"<MsgID>{msgid}</MsgID><Status><![CDATA[{status}]]></Status></xml>").encode()

    async def post_event(self, client: httpx.AsyncClient, url: str, openid: str, msgid: int,
                         status: str) -> httpx.Response:
        timestamp, nonce = str(int(time.time())), str(secrets.randbelow(10**10))
        query = urlencode({"signature": wechat_signature(self.token, timestamp, nonce), "timestamp": timestamp,
                           "nonce": nonce, "openid": openid})
        separator = "&" if "?" in url else "?"
        return await client.post(f"{url}{separator}{query}",
                                 content=self.event_xml(openid, msgid, status, int(timestamp)),
                                 headers={"Content-Type": "text/xml"})
