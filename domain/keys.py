"""API key format, hashing and scopes.

A key reads `nk_<prefix>_<secret>`: the prefix finds the row, the secret is compared by hash. Secrets
carry 192 bits of randomness, so a fast hash (SHA-256) is safe; password hashing is for low-entropy input.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum


class Scope(StrEnum):
    ADMIN = "admin"    # everything
    INGEST = "ingest"  # send events and identify contacts only
    READ = "read"      # read-only access to the API and dashboards


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


def parse_key(token: str) -> ParsedKey | None:
    parts = token.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != "nk" or not parts[1] or not parts[2]:
        return None
    return ParsedKey(prefix=parts[1], secret=parts[2])
