"""Firebase Cloud Messaging HTTP v1, as far as Nudge uses it: Google's OAuth token endpoint for service accounts
(`POST /token`, a JWT bearer assertion checked against the account's public key) and
`POST /v1/projects/{project}/messages:send` with FCM's validation and error bodies. FCM has no delivery
callback; the simulator posts what a production relay would: Nudge-signed `{"message_id", "status", "at"}`."""

from __future__ import annotations

import base64
import json
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from channels.push import JWT_BEARER, SCOPE
from channels.simulators.core import Action, TokenIssuingSimulator
from domain.channels.signatures import nudge_signature

DEFAULTS = {
    "unregistered-": Action.UNREACHABLE,
    "invalid-": Action.INVALID,
    "reject-": Action.REJECT,
    "busy-": Action.BUSY,
    "timeout-": Action.TIMEOUT,
    "undelivered-": Action.UNDELIVERED,
    "silent-": Action.SILENT,
}
FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"


def fcm_error(code: int, status: str, message: str, error_code: str | None = None) -> JSONResponse:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if error_code:
        error["details"] = [{"@type": FCM_ERROR, "errorCode": error_code}]
    return JSONResponse({"error": error}, status_code=code)


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class FcmSimulator(TokenIssuingSimulator):
    name = "fcm"
    defaults = DEFAULTS

    def __init__(self, directory: Path, *, project_id: str = "nudge-simulator", callback_url: str | None = None,
                 callback_secret: str | None = None, token_ttl: int = 3600, callback_delay: float = 1.0) -> None:
        super().__init__(directory, token_ttl=token_ttl, callback_delay=callback_delay)
        self.project_id = project_id
        self.callback_url = callback_url
        self.callback_secret = callback_secret or secrets.token_hex(16)
        self.client_email = f"firebase-adminsdk@{project_id}.iam.gserviceaccount.com"
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.base_url = ""  # set by Simulators once the port is known: the token_uri points at it

    def service_account(self) -> dict[str, str]:
        """A service-account JSON like the one Firebase's console downloads, for this simulator."""
        pem = self._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()).decode()
        return {"type": "service_account", "project_id": self.project_id, "private_key_id": "simulator",
                "private_key": pem, "client_email": self.client_email, "client_id": "0",
                "token_uri": f"{self.base_url}/token"}

    def write_service_account(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.service_account(), indent=2))
        path.chmod(0o600)
        return path

    def routes(self) -> list[BaseRoute]:
        return [Route("/token", self.token, methods=["POST"]),
                Route("/v1/projects/{project}/messages:send", self.send, methods=["POST"])]

    def _assertion_problem(self, assertion: str) -> str | None:
        parts = assertion.split(".")
        if len(parts) != 3:
            return "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe"
        try:
            header, claims = json.loads(_b64decode(parts[0])), json.loads(_b64decode(parts[1]))
            self._key.public_key().verify(_b64decode(parts[2]), f"{parts[0]}.{parts[1]}".encode(),
                                          padding.PKCS1v15(), hashes.SHA256())
        except (ValueError, InvalidSignature):
            return "Invalid JWT Signature."
        if not isinstance(header, dict) or not isinstance(claims, dict):
            return "Invalid JWT: header and claims must be JSON objects"
        now = time.time()
        if header.get("alg") != "RS256":
            return "Invalid JWT: alg must be RS256"
        if claims.get("iss") != self.client_email:
            return "Invalid JWT: iss is not this service account"
        if claims.get("aud") != f"{self.base_url}/token":
            return "Invalid JWT: aud is not the token URI"
        if SCOPE not in str(claims.get("scope", "")).split():
            return "Invalid JWT: the firebase.messaging scope is missing"
        if not isinstance(claims.get("exp"), int) or not isinstance(claims.get("iat"), int) \
                or claims["exp"] < now or claims["iat"] > now + 300 or claims["exp"] - claims["iat"] > 3600:
            return "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe."
        return None

    async def token(self, request: Request) -> Response:
        self.stats["token_requests"] += 1
        form = await request.form()
        if form.get("grant_type") != JWT_BEARER:
            return JSONResponse({"error": "unsupported_grant_type", "error_description": "Invalid grant_type"},
                                status_code=400)
        problem = self._assertion_problem(str(form.get("assertion", "")))
        if problem:
            return JSONResponse({"error": "invalid_grant", "error_description": problem}, status_code=400)
        token = "ya29.sim-" + secrets.token_urlsafe(24)
        self._tokens[token] = time.time() + self.token_ttl
        return JSONResponse({"access_token": token, "expires_in": self.token_ttl, "token_type": "Bearer"})

    async def send(self, request: Request) -> Response:
        header = request.headers.get("authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else ""
        if self._tokens.get(token, 0.0) <= time.time():
            return fcm_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected "
                                                     "OAuth 2 access token, login cookie or other valid "
                                                     "authentication credential.")
        if request.path_params["project"] != self.project_id:
            return fcm_error(403, "PERMISSION_DENIED", "Permission 'cloudmessaging.messages.create' denied on "
                                                       "resource (or it may not exist).")
        self.stats["sends"] += 1
        try:
            body = await request.json()
            message = body["message"]
            if not isinstance(message, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return fcm_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received. Unknown name or missing "
                                                      "\"message\".")
        targets = [k for k in ("token", "topic", "condition") if message.get(k)]
        if len(targets) != 1:
            return fcm_error(400, "INVALID_ARGUMENT", "Exactly one of token, topic or condition is required.",
                             "INVALID_ARGUMENT")
        data = message.get("data", {})
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            return fcm_error(400, "INVALID_ARGUMENT", "Invalid value at 'message.data': values must be strings.",
                             "INVALID_ARGUMENT")
        address = str(message.get("token") or "")
        action = self.behaviour.action(address)
        if action is Action.TIMEOUT:
            return await self.hang()
        if action is Action.UNREACHABLE:
            return fcm_error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED")
        if action is Action.INVALID or (message.get("token") and len(address) < 8):
            return fcm_error(400, "INVALID_ARGUMENT", "The registration token is not a valid FCM registration token",
                             "INVALID_ARGUMENT")
        if action is Action.REJECT:
            return fcm_error(403, "PERMISSION_DENIED", "SenderId mismatch", "SENDER_ID_MISMATCH")
        if action is Action.BUSY:
            return fcm_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded for sending messages.", "QUOTA_EXCEEDED")
        name = f"projects/{self.project_id}/messages/0:{int(time.time() * 1000)}%{secrets.token_hex(8)}"
        self.stats["accepted"] += 1
        self.inbox.append({"id": name, "to": address, "key": data.get("nudge_key"), "action": action.value,
                           "notification": message.get("notification"), "data": data})
        if self.callback_url and action is not Action.SILENT:
            status = "failed" if action is Action.UNDELIVERED else "delivered"
            url = self.callback_url  # as configured when the message was accepted
            self.report_later(lambda client: self.post_receipt(client, url, name, status, data.get("nudge_key")))
        return JSONResponse({"name": name})

    async def post_receipt(self, client: httpx.AsyncClient, url: str, name: str, status: str,
                           key: str | None) -> httpx.Response:
        receipt: dict[str, Any] = {"message_id": name, "status": status, "at": datetime.now(UTC).isoformat()}
        if key:
            receipt["key"] = key
        if status == "failed":
            receipt["error"] = "device did not acknowledge"
        body = json.dumps(receipt).encode()
        return await client.post(url, content=body, headers={
            "Content-Type": "application/json", "Nudge-Signature": nudge_signature(self.callback_secret, body,
                                                                                     int(time.time()))})
