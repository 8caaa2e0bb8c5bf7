"""API key lookup: a key that is not well-formed is refused before the database is asked."""

from __future__ import annotations

from typing import Any

from store.keys import close_session, find_scopes, session_scopes


class NoDatabase:
    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a malformed key reached the database")


async def test_a_malformed_key_is_refused_without_a_query() -> None:
    for token in ("nk_ab\x00cd_" + "x" * 32, "nk_ab%00cd_x", "nk_ab_x\x00", "nk_ab_\ud800", "garbage", ""):
        assert await find_scopes(NoDatabase(), token) is None  # type: ignore[arg-type]


async def test_a_malformed_session_token_is_refused_without_a_query() -> None:
    for token in ("x" * 42, "x" * 44, "x" * 42 + "\x00", "x" * 42 + "\ud800", "nk_ab_cd", ""):
        assert await session_scopes(NoDatabase(), token) is None  # type: ignore[arg-type]
        await close_session(NoDatabase(), token)  # type: ignore[arg-type]
