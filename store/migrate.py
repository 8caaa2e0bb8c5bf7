"""Apply alembic migrations programmatically (`nudge migrate`, `nudge dev`, the tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from store.db import plain_url

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", plain_url(url).replace("postgresql://", "postgresql+psycopg://", 1))
    return config


def upgrade(url: str, revision: str = "heads") -> None:
    # Each domain's migrations form their own branch off the foundation, so upgrade to every head.
    command.upgrade(alembic_config(url), revision)


def current_heads(url: str) -> set[str]:
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    engine = create_engine(alembic_config(url).get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        heads = set(MigrationContext.configure(conn).get_current_heads())
    engine.dispose()
    return heads
