"""Signing and verifying provider callbacks and Nudge's own webhooks, as pure functions.

- Twilio: `X-Twilio-Signature` = base64(HMAC-SHA1(auth token, URL + each POST parameter's name and value,
  sorted by name)).
- WeChat: the server signature = sha1 of the token, timestamp and nonce sorted and joined.
- Nudge: `Nudge-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, f"{t}.{body}")>`, Stripe's scheme: the
  timestamp is signed with the body, so a captured callback cannot be replayed past the tolerance.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping


class SignatureInvalid(ValueError):
    """A signature that does not verify, or is missing, malformed or stale. The message says which, never what
    the expected signature was."""


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    pairs = sorted(params.items() if isinstance(params, Mapping) else params)
    payload = url + "".join(name + value for name, value in pairs)
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def verify_twilio(auth_token: str, url: str, params: Iterable[tuple[str, str]], signature: str | None) -> None:
    if not signature:
        raise SignatureInvalid("missing X-Twilio-Signature")
    expected = twilio_signature(auth_token, url, list(params))
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise SignatureInvalid("X-Twilio-Signature does not match this URL and these parameters")


def wechat_signature(token: str, timestamp: str, nonce: str) -> str:
    return hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()


def verify_wechat(token: str, signature: str | None, timestamp: str | None, nonce: str | None,
                  now: int, tolerance: int) -> None:
    if not signature or not timestamp or nonce is None:
        raise SignatureInvalid("missing signature, timestamp or nonce")
    if not timestamp.isdigit():
        raise SignatureInvalid("timestamp is not a number of seconds")
    if not hmac.compare_digest(wechat_signature(token, timestamp, nonce).encode(), signature.strip().encode()):
        raise SignatureInvalid("signature does not match token, timestamp and nonce")
    _fresh(int(timestamp), now, tolerance)


def nudge_signature(secret: str, body: bytes, timestamp: int) -> str:
    """The `Nudge-Signature` header value for `body` sent at `timestamp` (unix seconds)."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def parse_nudge_signature(header: str) -> tuple[int, list[str]]:
    """The timestamp and the v1 signatures of a header (several v1 entries while a secret is rotated)."""
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureInvalid("Nudge-Signature is not a list of name=value")
        if name == "t":
            if not value.isdigit() or len(value) > 12:
                raise SignatureInvalid("Nudge-Signature t is not a number of seconds")
            timestamp = int(value)
        elif name == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        raise SignatureInvalid("Nudge-Signature needs t= and v1=")
    return timestamp, signatures


def verify_nudge(secret: str, header: str | None, body: bytes, now: int, tolerance: int) -> int:
    """The verified timestamp of a `Nudge-Signature`; `SignatureInvalid` when it does not verify or is stale."""
    if not header:
        raise SignatureInvalid("missing Nudge-Signature")
    timestamp, signatures = parse_nudge_signature(header)
    expected = nudge_signature(secret, body, timestamp).partition(",v1=")[2].encode()
    if not any(hmac.compare_digest(expected, s.encode()) for s in signatures):
        raise SignatureInvalid("Nudge-Signature does not match the body")
    _fresh(timestamp, now, tolerance)
    return timestamp


def _fresh(timestamp: int, now: int, tolerance: int) -> None:
    if abs(now - timestamp) > tolerance:
        raise SignatureInvalid(f"timestamp is {now - timestamp}s from now, outside the {tolerance}s tolerance")
