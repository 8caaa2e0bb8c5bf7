"""Postgres: SQLAlchemy models, sessions, set-based queries and alembic migrations."""
