"""SMS through Twilio's Programmable Messaging API, and the verifier of Twilio's status callbacks.

Send: `POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded `To`, `From` (or
`MessagingServiceSid`), `Body`, `StatusCallback`, HTTP basic auth, the delivery key in
`I-Twilio-Idempotency-Token`. Callbacks: form-encoded `MessageSid`, `MessageStatus`, `ErrorCode`, signed with
`X-Twilio-Signature` over the exact public URL and the parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from urllib.parse import parse_qsl

import httpx

from channels.base import ErrorClass, Message, Receipt, ReceiptStatus, SendResult, WebhookRefused
from channels.http import HttpAdapter, failed, json_or_empty, status_class
from domain.channels.signatures import SignatureInvalid, verify_twilio

# Twilio error codes that mean this number will never receive SMS from us (docs: twilio.com/docs/api/errors).
UNREACHABLE_CODES = frozenset({
    21211,  # invalid 'To' phone number
    21214,  # 'To' number cannot be reached
    21610,  # the recipient replied STOP
    21612,  # cannot route to this number
    21614,  # 'To' number is not a valid mobile number
})
RETRYABLE_CODES = frozenset({20429, 20500, 20503, 30001})  # too many requests, internal error, queue overflow


class SmsChannel(HttpAdapter):
    name = "sms"

    def __init__(self, base_url: str, account_sid: str, auth_token: str, *, sender: str | None = None,
                 messaging_service_sid: str | None = None, status_callback: str | None = None,
                 timeout: float = 10, concurrency: int = 16, transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(timeout=timeout, concurrency=concurrency, transport=transport)
        if not sender and not messaging_service_sid:
            raise ValueError("Twilio needs a sender number or a messaging service sid")
        self.url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self.auth = httpx.BasicAuth(account_sid, auth_token)
        self.sender = sender
        self.messaging_service_sid = messaging_service_sid
        self.status_callback = status_callback

    def form(self, message: Message) -> dict[str, str]:
        form = {"To": message.to or "", "Body": message.text}
        if self.messaging_service_sid:
            form["MessagingServiceSid"] = self.messaging_service_sid
        else:
            form["From"] = self.sender or ""
        if self.status_callback:
            form["StatusCallback"] = self.status_callback
        return form

    async def send_one(self, message: Message) -> SendResult:
        if not message.to:
            return failed(message, "contact has no phone number", ErrorClass.UNREACHABLE)
        response = await self.client.post(self.url, data=self.form(message), auth=self.auth,
                                           headers={"I-Twilio-Idempotency-Token": message.key})
        body = json_or_empty(response)
        if response.is_success and body.get("sid"):
            return SendResult(message.key, True, provider_message_id=str(body["sid"]))
        code = body.get("code")
        error = f"twilio {response.status_code} {code or ''}: {body.get('message') or response.text[:200]}"
        if code in UNREACHABLE_CODES:
            return failed(message, error, ErrorClass.UNREACHABLE)
        if code in RETRYABLE_CODES:
            return failed(message, error, ErrorClass.RETRYABLE)
        return failed(message, error, status_class(response.status_code))


# queued/accepted/scheduled/sending say nothing the send's own result did not.
STATUSES = {
    "sent": ReceiptStatus.SENT,
    "delivered": ReceiptStatus.DELIVERED,
    "read": ReceiptStatus.OPENED,
    "undelivered": ReceiptStatus.FAILED,
    "failed": ReceiptStatus.FAILED,
    "canceled": ReceiptStatus.FAILED,
}


class TwilioCallbacks:
    """Twilio signs the URL it posted to plus the form parameters; `url` must be that exact public URL
    (scheme, host, port, path and query as configured in `StatusCallback`), not the one a proxy rewrote.
    Twilio puts no timestamp in a callback, so a replay cannot be refused by age: the delivery store's states
    only move forward, so a replayed status changes nothing. `event_id` is `{MessageSid}:{MessageStatus}`."""

    provider = "twilio"

    def __init__(self, auth_token: str) -> None:
        self.auth_token = auth_token

    def parse_callback(self, url: str, headers: Mapping[str, str], body: bytes, now: datetime) -> list[Receipt]:
        try:
            params = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=bool(body))
        except (UnicodeDecodeError, ValueError) as exc:
            raise WebhookRefused(f"body is not form-encoded: {exc}") from exc
        signature = next((v for k, v in headers.items() if k.lower() == "x-twilio-signature"), None)
        try:
            verify_twilio(self.auth_token, url, params, signature)
        except SignatureInvalid as exc:
            raise WebhookRefused(str(exc)) from exc
        form = dict(params)
        sid, status = form.get("MessageSid") or form.get("SmsSid"), form.get("MessageStatus") or form.get("SmsStatus")
        if not sid or not status:
            raise WebhookRefused("MessageSid and MessageStatus are required")
        if status not in STATUSES:
            return []
        return [Receipt(channel="sms", status=STATUSES[status], at=now, provider_message_id=sid,
                        error=form.get("ErrorCode") or None, event_id=f"{sid}:{status}")]
