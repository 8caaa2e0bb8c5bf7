"""Twilio's Programmable Messaging API, as far as Nudge uses it: `POST /2010-04-01/Accounts/{sid}/Messages.json`
with basic auth and Twilio's validation and error bodies, `I-Twilio-Idempotency-Token`, and signed status
callbacks to the message's `StatusCallback`."""

from __future__ import annotations

import base64
import re
import secrets
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from channels.simulators.core import Action, ProviderSimulator
from domain.channels.signatures import twilio_signature

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
# +1500555000N: Twilio's own test numbers live at +1500555000x; these behave as named.
DEFAULTS = {
    "+15005550001": Action.UNREACHABLE,
    "+15005550002": Action.REJECT,
    "+15005550003": Action.BUSY,
    "+15005550004": Action.TIMEOUT,
    "+15005550005": Action.UNDELIVERED,
    "+15005550006": Action.SILENT,
}


def twilio_error(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
                         "status": status}, status_code=status)


class TwilioSimulator(ProviderSimulator):
    name = "twilio"
    defaults = DEFAULTS

    def __init__(self, directory: Path, *, account_sid: str | None = None, auth_token: str | None = None,
                 callback_delay: float = 1.0) -> None:
        super().__init__(directory, callback_delay=callback_delay)
        self.account_sid = account_sid or "AC" + secrets.token_hex(16)
        self.auth_token = auth_token or secrets.token_hex(16)
        self._by_idempotency: dict[str, dict[str, Any]] = {}

    def routes(self) -> list[BaseRoute]:
        return [Route("/2010-04-01/Accounts/{account_sid}/Messages.json", self.create_message, methods=["POST"])]

    def _authenticated(self, request: Request, account_sid: str) -> bool:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return (secrets.compare_digest(user, self.account_sid) and secrets.compare_digest(password, self.auth_token)
                and account_sid == self.account_sid)

    async def create_message(self, request: Request) -> Response:
        account_sid = request.path_params["account_sid"]
        if not self._authenticated(request, account_sid):
            return twilio_error(401, 20003, "Authenticate")
        form = {k: str(v) for k, v in (await request.form()).items()}
        self.stats["sends"] += 1
        token = request.headers.get("i-twilio-idempotency-token")
        if token and token in self._by_idempotency:
            return JSONResponse(self._by_idempotency[token], status_code=201)
        to, body = form.get("To", ""), form.get("Body", "")
        if not to:
            return twilio_error(400, 21604, "A 'To' phone number is required.")
        if not body:
            return twilio_error(400, 21602, "Message body is required.")
        if not form.get("From") and not form.get("MessagingServiceSid"):
            return twilio_error(400, 21603, "A 'From' phone number is required.")
        if not E164.match(to):
            return twilio_error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        action = self.behaviour.action(to)
        if action is Action.TIMEOUT:
            return await self.hang()
        if action in (Action.UNREACHABLE, Action.INVALID):
            return twilio_error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if action is Action.REJECT:
            return twilio_error(400, 21408, "Permission to send an SMS has not been enabled for the region "
                                            f"indicated by the 'To' number: {to}.")
        if action is Action.BUSY:
            return twilio_error(429, 20429, "Too Many Requests")
        sid = "SM" + secrets.token_hex(16)
        now = format_datetime(datetime.now(UTC), usegmt=True)
        message = {
            "sid": sid, "account_sid": self.account_sid, "to": to, "from": form.get("From"), "body": body,
            "messaging_service_sid": form.get("MessagingServiceSid"), "status": "queued", "num_segments": "1",
            "direction": "outbound-api", "api_version": "2010-04-01", "date_created": now, "date_updated": now,
            "date_sent": None, "error_code": None, "error_message": None, "price": None,
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
        }
        if token:
            self._by_idempotency[token] = message
        self.stats["accepted"] += 1
        self.inbox.append({"id": sid, "to": to, "key": token, "action": action.value, "body": body,
                           "from": form.get("From") or form.get("MessagingServiceSid"),
                           "status_callback": form.get("StatusCallback")})
        callback = form.get("StatusCallback")
        if callback and action is not Action.SILENT:
            failed = action is Action.UNDELIVERED
            params = {"AccountSid": self.account_sid, "ApiVersion": "2010-04-01", "From": form.get("From") or "",
                      "MessageSid": sid, "MessageStatus": "undelivered" if failed else "delivered",
                      "SmsSid": sid, "SmsStatus": "undelivered" if failed else "delivered", "To": to}
            if failed:
                params["ErrorCode"] = "30003"  # unreachable destination handset
            self.report_later(lambda client: self.post_callback(client, callback, params))
        return JSONResponse(message, status_code=201)

    async def post_callback(self, client: httpx.AsyncClient, url: str, params: dict[str, str]) -> httpx.Response:
        signature = twilio_signature(self.auth_token, url, params)
        return await client.post(url, data=params, headers={"X-Twilio-Signature": signature,
                                                            "User-Agent": "TwilioProxy/1.1"})
