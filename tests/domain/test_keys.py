"""API key format, hashing and scopes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from domain.keys import (
    Scope,
    allows,
    csrf_matches,
    csrf_token,
    hash_secret,
    issue_key,
    issue_session,
    parse_key,
    session_hash,
)


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


def test_malformed_keys_are_refused_before_any_lookup() -> None:
    good = issue_key().token
    prefix, secret = good.split("_", 2)[1:]
    for bad in (f"nk_ab\0cd_{secret}", f"nk_{prefix}_{secret}\0", f"nk_{prefix}\0_{secret}", "nk_ab%00cd_x",
                f"nk_{prefix.upper()}_{secret}", f"nk_{prefix}_sec ret", f"nk_{prefix}_s\ud800", f"nk_{'a' * 17}_x",
                "nk__x", "nk_ab_", f"NK_{prefix}_{secret}"):
        assert parse_key(bad) is None, bad
    assert parse_key(f"  {good} ") is not None  # pasted with spaces


@given(st.text(max_size=60))
def test_a_parsed_key_holds_only_characters_the_database_compares_as_text(text: str) -> None:
    parsed = parse_key(f"nk_ab12_{text}")
    assert parsed is None or (parsed.secret.isascii() and parsed.secret.isprintable() and "\0" not in parsed.secret)


def test_a_session_token_is_hashed_only_when_well_formed() -> None:
    token = issue_session()
    assert session_hash(token) == hash_secret(token) and issue_session() != token
    for bad in (token[:-1], token + "A", token[:-1] + "\0", token[:-1] + "=", issue_key().token, ""):
        assert session_hash(bad) is None, bad


def test_a_form_token_matches_only_the_cookie_it_was_derived_from() -> None:
    cookie = issue_session()
    sent = csrf_token(cookie)
    assert csrf_matches(cookie, sent)
    for other_cookie, other_sent in ((issue_session(), sent), (cookie, csrf_token(issue_session())), (cookie, ""),
                                     (None, sent), (cookie, None), (cookie, sent[:-1] + "\ud800"), ("", sent)):
        assert not csrf_matches(other_cookie, other_sent)
