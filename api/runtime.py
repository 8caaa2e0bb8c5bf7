"""Connections a process needs (database engine, Temporal client, channels), built once from settings."""

from __future__ import annotations

import gc
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from channels.base import Channel
from channels.email import EmailChannel
from channels.registry import build_channels, close_channels
from core.settings import Settings
from domain.keys import Scope, parse_key
from store import keys
from store.db import make_engine, make_outcome_engine, make_sessionmaker, transaction

_GC_USERS = 0
_GC_DEFAULT = gc.get_threshold()


def tune_gc(young: int = 50_000) -> None:
    """Make a long-running server's garbage collector cheap: everything alive after start-up (modules,
    the app, its pools) is frozen out of collections, and the youngest generation is collected after
    `young` surviving allocations instead of 700. A batch of 100 events allocates thousands of short-lived
    containers; with the defaults CPython ran full collections over the whole heap so often that they
    took a fifth of the API's CPU at ingest rates (py-spy --native: gc_collect_main 20%). Pair with
    `untune_gc` on shutdown; nested pairs (several apps in one process, as in tests) count."""
    global _GC_USERS
    _GC_USERS += 1
    if _GC_USERS == 1:
        gc.collect()
        gc.freeze()
        gc.set_threshold(young, *_GC_DEFAULT[1:])


def untune_gc() -> None:
    """Undo `tune_gc` when its last user stops, so what was frozen can be collected again (at exit too)."""
    global _GC_USERS
    _GC_USERS = max(_GC_USERS - 1, 0)
    if _GC_USERS == 0:
        gc.unfreeze()
        gc.set_threshold(*_GC_DEFAULT)


def require(value: str | None, name: str) -> str:
    if not value:
        raise RuntimeError(
            f"{name} is not set. Run `nudge dev` to start the embedded stack, or set {name} "
            f"(see README, Configuration)."
        )
    return value


async def connect_temporal(settings: Settings) -> Client:
    address = require(settings.temporal_address, "TEMPORAL_ADDRESS")
    return await Client.connect(address, namespace=settings.temporal_namespace)


async def create_api_key(database_url: str, name: str, scopes: list[Scope], *,
                         unless_admin_exists: bool = False) -> str | None:
    """Create a key and return its token (shown once); None when `unless_admin_exists` and one exists."""
    engine = make_engine(database_url, pool_size=1)
    try:
        async with transaction(make_sessionmaker(engine)) as s:
            if unless_admin_exists and await keys.has_admin_key(s):
                return None
            return (await keys.create_key(s, name, scopes)).token
    finally:
        await engine.dispose()


async def revoke_api_key(database_url: str, key_or_prefix: str) -> bool:
    """Revoke a key given whole or by its public prefix (`nk_<prefix>_…`); False if no live key has it."""
    parsed = parse_key(key_or_prefix)
    prefix = parsed.prefix if parsed is not None else key_or_prefix.strip().removeprefix("nk_").rstrip("_")
    engine = make_engine(database_url, pool_size=1)
    try:
        async with transaction(make_sessionmaker(engine)) as s:
            return await keys.revoke_key(s, prefix)
    finally:
        await engine.dispose()


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    outcomes: AsyncEngine  # autocommit, asynchronous commit: per-message delivery records
    email: EmailChannel
    channels: dict[str, Channel] = field(default_factory=dict)  # by name; "email" is `email`

    @classmethod
    def build(cls, settings: Settings, *, pool_size: int = 10) -> Runtime:
        url = require(settings.database_url, "DATABASE_URL")
        engine = make_engine(url, pool_size=pool_size)
        email = EmailChannel(require(settings.smtp_url, "SMTP_URL"), settings.mail_from,
                             concurrency=settings.smtp_concurrency)
        outcomes = make_outcome_engine(url, pool_size=settings.smtp_concurrency)
        return cls(settings=settings, engine=engine, sessions=make_sessionmaker(engine), outcomes=outcomes, email=email,
                   channels=build_channels(settings, email))

    async def close(self) -> None:
        await close_channels(self.channels)
        await self.engine.dispose()
        await self.outcomes.dispose()
