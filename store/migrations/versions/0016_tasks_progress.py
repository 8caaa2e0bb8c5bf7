"""tasks_progress (filled in as the domain lands).

Revision ID: 0016_tasks_progress
Revises: 0015_channels_deliveries
"""

from alembic import op  # noqa: F401

revision = "0016_tasks_progress"
down_revision = "0015_channels_deliveries"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
