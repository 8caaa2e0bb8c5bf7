"""Apply alembic migrations programmatically (`nudge migrate`, `nudge dev`, the tests), and report the heads of
the migration scripts and of a database."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from store.db import plain_url

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str | None = None) -> Config:
    """The alembic configuration for our scripts; with `url`, also for that database."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # `command.revision(config, message, rev_id="NNNN_<domain>_<what>")` then writes NNNN_<domain>_<what>.py:
    # a migration's file stem is its revision id (alembic's default would append the message's slug).
    config.set_main_option("file_template", "%%(rev)s")
    if url is not None:
        config.set_main_option("sqlalchemy.url", plain_url(url).replace("postgresql://", "postgresql+psycopg://", 1))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    # "head", not "heads": the migrations form one chain (0012_merge_heads joined the old per-domain branches),
    # so a second head is a mistake, and alembic refuses to upgrade rather than applying both in some order.
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def script_directory() -> ScriptDirectory:
    """The migration scripts in store/migrations/versions, as alembic reads them."""
    return ScriptDirectory.from_config(alembic_config())


def script_heads() -> list[str]:
    """The heads of the migration scripts (one, unless a migration was added off the wrong parent)."""
    return list(script_directory().get_heads())


def current_heads(url: str) -> set[str]:
    """The revisions the database at `url` is at (empty if it was never migrated)."""
    engine = create_engine(alembic_config(url).get_main_option("sqlalchemy.url") or "")
    try:
        with engine.connect() as conn:
            return set(MigrationContext.configure(conn).get_current_heads())
    finally:
        engine.dispose()
