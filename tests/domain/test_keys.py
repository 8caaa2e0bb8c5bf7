"""API key format, hashing and scopes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from domain.keys import Scope, allows, hash_secret, issue_key, parse_key


def test_issued_key_parses_back_and_matches_only_its_hash() -> None:
    issued = issue_key()
    parsed = parse_key(issued.token)
    assert parsed is not None and parsed.prefix == issued.prefix
    assert parsed.matches(hash_secret(issued.secret))
    assert not parsed.matches(hash_secret(issue_key().secret))


def test_keys_are_unique_and_long() -> None:
    keys = {issue_key().token for _ in range(500)}
    assert len(keys) == 500 and all(len(k) > 40 for k in keys)


@given(st.text(max_size=60))
def test_garbage_never_parses_into_an_empty_part(text: str) -> None:
    parsed = parse_key(text)
    assert parsed is None or (parsed.prefix and parsed.secret)


def test_scopes() -> None:
    assert allows([Scope.ADMIN], Scope.INGEST) and allows([Scope.ADMIN], Scope.READ)
    assert allows([Scope.READ], Scope.READ) and not allows([Scope.READ], Scope.ADMIN)
    assert not allows([Scope.INGEST], Scope.READ) and not allows([Scope.INGEST], Scope.ADMIN)
