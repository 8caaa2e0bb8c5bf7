"""channels_deliveries (filled in as the domain lands).

Revision ID: 0015_channels_deliveries
Revises: 0014_keys_dashboard_sessions
"""

from alembic import op  # noqa: F401

revision = "0015_channels_deliveries"
down_revision = "0014_keys_dashboard_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
