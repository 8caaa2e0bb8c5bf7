"""API key format, hashing and scopes, and the dashboard sessions a key opens (their tokens and form tokens).

A key reads `nk_<prefix>_<secret>`: the prefix finds the row, the secret is compared by hash. Secrets
carry 192 bits of randomness, so a fast hash (SHA-256) is safe; password hashing is for low-entropy input.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum


class Scope(StrEnum):
    ADMIN = "admin"    # everything
    INGEST = "ingest"  # send events and identify contacts only
    READ = "read"      # read-only access to the API and dashboards
    APPROVE = "approve"  # approve campaigns others created (docs/campaigns.md); admin implies it


def allows(granted: list[Scope], required: Scope) -> bool:
    return Scope.ADMIN in granted or required in granted


@dataclass(frozen=True)
class IssuedKey:
    prefix: str
    secret: str

    @property
    def token(self) -> str:
        return f"nk_{self.prefix}_{self.secret}"


@dataclass(frozen=True)
class ParsedKey:
    prefix: str
    secret: str

    def matches(self, stored_hash: str) -> bool:
        return hmac.compare_digest(hash_secret(self.secret), stored_hash)


def issue_key() -> IssuedKey:
    return IssuedKey(prefix=secrets.token_hex(6), secret=secrets.token_urlsafe(24))


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# What issue_key makes (a hex prefix, a URL-safe secret), with room to grow. Anything else is refused before a
# lookup: a NUL or a stray byte in a key must be a 401, not text the database refuses to compare.
KEY_FORMAT = re.compile(r"nk_([0-9a-f]{1,16})_([A-Za-z0-9_-]{1,128})")


def parse_key(token: str) -> ParsedKey | None:
    """The prefix and secret of a well-formed key, or None; a None needs no lookup to be refused."""
    matched = KEY_FORMAT.fullmatch(token.strip())
    if matched is None:
        return None
    return ParsedKey(prefix=matched[1], secret=matched[2])


# Dashboard sessions. A browser never holds a key: signing in with one opens a session, a random token kept in an
# HttpOnly cookie. Only the token's hash is stored (256 random bits need no slow hash, as for a key's secret), so
# the table opens no session. Anything but what `issue_session` makes is refused before a lookup.
SESSION_FORMAT = re.compile(r"[A-Za-z0-9_-]{43}")
CSRF_PURPOSE = b"nudge dashboards: form token"


def issue_session() -> str:
    return secrets.token_urlsafe(32)


def session_hash(token: str) -> str | None:
    """The stored hash of a well-formed session token, or None: a None needs no lookup to be refused."""
    return hash_secret(token) if SESSION_FORMAT.fullmatch(token) else None


def csrf_token(cookie: str) -> str:
    """The token a form carries, derived from a cookie's value: a page of Nudge can print it, another site can
    neither read the HttpOnly cookie nor compute the token without it."""
    return hmac.new(cookie.encode(), CSRF_PURPOSE, hashlib.sha256).hexdigest()


def csrf_matches(cookie: str | None, sent: str | None) -> bool:
    """Whether a form's token was derived from this browser's cookie (compared in constant time)."""
    if not cookie or not sent or not SESSION_FORMAT.fullmatch(cookie) or not sent.isascii():
        return False
    return hmac.compare_digest(csrf_token(cookie), sent)
