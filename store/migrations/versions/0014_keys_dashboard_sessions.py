"""Dashboard sessions: signing in to the dashboards with an API key opens a session instead of putting the key in a
cookie. A row holds the SHA-256 of the session token (the token itself is only in the browser's cookie), the key it
was opened with (its scopes, and its revocation, apply) and an expiry; deleting a key deletes its sessions.

Revision ID: 0014_keys_dashboard_sessions
Revises: 0013_ledger_redemption_lists
"""

from alembic import op

revision = "0014_keys_dashboard_sessions"
down_revision = "0013_ledger_redemption_lists"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE dashboard_sessions (
            token_hash varchar(64) PRIMARY KEY,
            key_id     integer NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
            created_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL
        );
        CREATE INDEX ix_dashboard_sessions_key_id ON dashboard_sessions (key_id);
        CREATE INDEX ix_dashboard_sessions_expires_at ON dashboard_sessions (expires_at);
    """)


def downgrade() -> None:
    op.execute("DROP TABLE dashboard_sessions")
