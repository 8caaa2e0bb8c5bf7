"""Signed tokens in links Nudge puts in messages: the unsubscribe/preferences page, the open pixel and click
redirects. A token is `base64url(json payload).base64url(HMAC-SHA256)`, so a link cannot be forged or altered
(a click token carries its target URL: no open redirect). Pure: the secret is passed in."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

Purpose = Literal["u", "o", "c"]  # unsubscribe/preferences, open, click


class InvalidToken(ValueError):
    pass


@dataclass(frozen=True)
class LinkToken:
    purpose: Purpose
    contact_id: int
    key: str = ""        # the delivery key (+ `#attempt` for a fallback) the link was sent in
    channel: str = ""
    topic: str = ""
    url: str = ""        # a click's target


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, body: str) -> str:
    return _b64(hmac.new(secret, body.encode(), hashlib.sha256).digest()[:20])


def safe_target(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and "\\" not in url


def sign(secret: bytes, token: LinkToken) -> str:
    if token.purpose == "c" and not safe_target(token.url):
        raise InvalidToken(f"a click target must be an absolute http(s) URL; got {token.url!r}")
    payload = {"p": token.purpose, "c": token.contact_id, "k": token.key, "ch": token.channel, "t": token.topic,
               "u": token.url}
    body = _b64(json.dumps({k: v for k, v in payload.items() if v != ""}, separators=(",", ":")).encode())
    return f"{body}.{_mac(secret, body)}"


def verify(secret: bytes, text: str, purpose: Purpose) -> LinkToken:
    body, _, mac = text.partition(".")
    if not body or not mac or not hmac.compare_digest(mac, _mac(secret, body)):
        raise InvalidToken("the link is not valid (altered, or signed by another deployment)")
    try:
        data = json.loads(_unb64(body))
        token = LinkToken(purpose=data["p"], contact_id=int(data["c"]), key=str(data.get("k", "")),
                          channel=str(data.get("ch", "")), topic=str(data.get("t", "")), url=str(data.get("u", "")))
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise InvalidToken("the link is not valid") from exc
    if token.purpose != purpose:
        raise InvalidToken("the link is not valid here")
    if purpose == "c" and not safe_target(token.url):
        raise InvalidToken("the link's target is not an http(s) URL")
    return token
