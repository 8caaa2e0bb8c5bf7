"""Push through Firebase Cloud Messaging's HTTP v1 API, and the verifier of push receipts.

Auth: a JWT signed RS256 with the service account's private key is exchanged at its `token_uri`
(`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`) for an access token, cached until shortly before it
expires and refreshed once on a 401. Send: `POST {base}/v1/projects/{project}/messages:send`.
FCM has no delivery callback; a production relay (the app reporting receipt, or a BigQuery export job) or the
simulator posts Nudge-signed JSON `{"message_id", "status", "at"}` to `/v1/webhooks/fcm`.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from channels.base import ErrorClass, Message, Receipt, ReceiptStatus, SendResult, WebhookRefused
from channels.http import CachedToken, HttpAdapter, failed, json_or_empty, status_class
from domain.channels.signatures import SignatureInvalid, verify_nudge

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
UNREACHABLE_CODES = frozenset({"UNREGISTERED"})
RETRYABLE_CODES = frozenset({"QUOTA_EXCEEDED", "UNAVAILABLE", "INTERNAL"})


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def signed_jwt(claims: Mapping[str, Any], private_key_pem: str, key_id: str | None = None) -> str:
    """An RS256 JWT (RFC 7515 compact form), with `cryptography` only."""
    header: dict[str, str] = {"alg": "RS256", "typ": "JWT"}
    if key_id:
        header["kid"] = key_id
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(dict(claims)).encode())}"
    key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the service account's private_key is not an RSA key")
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signature)}"


class ServiceAccount:
    def __init__(self, info: Mapping[str, Any]) -> None:
        missing = [k for k in ("project_id", "client_email", "private_key", "token_uri") if not info.get(k)]
        if missing:
            raise ValueError(f"the FCM service account lacks {', '.join(missing)}")
        self.project_id = str(info["project_id"])
        self.client_email = str(info["client_email"])
        self.private_key = str(info["private_key"])
        self.private_key_id = info.get("private_key_id")
        self.token_uri = str(info["token_uri"])

    @classmethod
    def from_file(cls, path: Path) -> ServiceAccount:
        return cls(json.loads(path.read_text()))

    def assertion(self, now: int) -> str:
        claims = {"iss": self.client_email, "scope": SCOPE, "aud": self.token_uri, "iat": now, "exp": now + 3600}
        return signed_jwt(claims, self.private_key, self.private_key_id)


class PushChannel(HttpAdapter):
    name = "push"

    def __init__(self, base_url: str, account: ServiceAccount, *, timeout: float = 10, concurrency: int = 16,
                 transport: httpx.AsyncBaseTransport | None = None, clock: Callable[[], float] = time.time) -> None:
        super().__init__(timeout=timeout, concurrency=concurrency, transport=transport)
        self.account = account
        self.url = f"{base_url.rstrip('/')}/v1/projects/{account.project_id}/messages:send"
        self.clock = clock
        self.token = CachedToken(self._fetch_token, clock)

    async def access_token(self, *, stale: str | None = None) -> str:
        """The cached token, fetched when missing, near expiry, or equal to `stale` (the one a 401 refused)."""
        return await self.token.get(stale=stale)

    async def _fetch_token(self, now: float) -> tuple[str, float]:
        response = await self.client.post(self.account.token_uri, data={
            "grant_type": JWT_BEARER, "assertion": self.account.assertion(int(now))})
        body = json_or_empty(response)
        if not response.is_success or not body.get("access_token"):
            raise FcmAuthError(f"FCM token exchange failed: {response.status_code} "
                               f"{body.get('error')}: {body.get('error_description')}", response.status_code)
        return str(body["access_token"]), float(body.get("expires_in", 3600))

    def payload(self, message: Message) -> dict[str, Any]:
        extra = {k: v for k, v in message.data.items() if k != "data"}
        data = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in message.data.get("data", {}).items()}
        data.setdefault("nudge_key", message.key)  # lets the app (or a relay) report the receipt
        body: dict[str, Any] = {"token": message.to, "notification": {"title": message.subject, "body": message.text},
                                "data": data}
        for name in ("android", "apns", "webpush", "fcm_options"):
            if name in extra:
                body[name] = extra[name]
        return {"message": body}

    async def send_one(self, message: Message) -> SendResult:
        if not message.to:
            return failed(message, "contact has no push token", ErrorClass.UNREACHABLE)
        try:
            token = await self.access_token()
            response = await self._post(message, token)
            if response.status_code == 401:
                response = await self._post(message, await self.access_token(stale=token))
        except FcmAuthError as exc:
            return failed(message, str(exc), status_class(exc.status))
        body = json_or_empty(response)
        if response.is_success and body.get("name"):
            return SendResult(message.key, True, provider_message_id=str(body["name"]))
        found = body.get("error")
        error: dict[str, Any] = found if isinstance(found, dict) else {}
        listed = error.get("details")
        details: list[Any] = listed if isinstance(listed, list) else []
        codes = [d.get("errorCode") for d in details if isinstance(d, dict) and d.get("errorCode")]
        code = codes[0] if codes else error.get("status")
        text = f"fcm {response.status_code} {code}: {error.get('message') or response.text[:200]}"
        if code in UNREACHABLE_CODES or (code == "INVALID_ARGUMENT" and "token" in str(error.get("message")).lower()):
            return failed(message, text, ErrorClass.UNREACHABLE)
        if code in RETRYABLE_CODES:
            return failed(message, text, ErrorClass.RETRYABLE)
        return failed(message, text, status_class(response.status_code))

    async def _post(self, message: Message, token: str) -> httpx.Response:
        return await self.client.post(self.url, json=self.payload(message),
                                      headers={"Authorization": f"Bearer {token}"})


class FcmAuthError(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


STATUSES = {
    "sent": ReceiptStatus.SENT,
    "delivered": ReceiptStatus.DELIVERED,
    "opened": ReceiptStatus.OPENED,
    "failed": ReceiptStatus.FAILED,
}


class PushCallbacks:
    """Nudge-signed push receipts: `Nudge-Signature: t=…,v1=…` over `f"{t}.{body}"`, refused past the tolerance;
    the body is one `{"message_id", "status", "at"}` object or a list of them."""

    provider = "fcm"

    def __init__(self, secret: str, *, tolerance: int = 300) -> None:
        self.secret = secret
        self.tolerance = tolerance

    def parse_callback(self, url: str, headers: Mapping[str, str], body: bytes, now: datetime) -> list[Receipt]:
        signature = next((v for k, v in headers.items() if k.lower() == "nudge-signature"), None)
        try:
            t = verify_nudge(self.secret, signature, body, int(now.timestamp()), self.tolerance)
        except SignatureInvalid as exc:
            raise WebhookRefused(str(exc)) from exc
        try:
            parsed = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise WebhookRefused(f"body is not JSON: {exc}") from exc
        items = parsed if isinstance(parsed, list) else [parsed]
        receipts = []
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("message_id"), str) \
                    or item.get("status") not in STATUSES:
                raise WebhookRefused('each receipt needs a "message_id" and a known "status"')
            at = _instant(item.get("at")) or datetime.fromtimestamp(t, UTC)
            receipts.append(Receipt(channel="push", status=STATUSES[item["status"]], at=at,
                                    provider_message_id=item["message_id"], key=_text(item.get("key")),
                                    error=_text(item.get("error")), event_id=f"{item['message_id']}:{item['status']}"))
        return receipts


def _instant(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError as exc:
        raise WebhookRefused(f'"at" is not an ISO 8601 instant: {value!r}') from exc
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _text(value: object) -> str | None:
    return value[:500] if isinstance(value, str) else None
