"""promotions_pricing (filled in as the domain lands).

Revision ID: 0017_promotions_pricing
Revises: 0016_tasks_progress
"""

from alembic import op  # noqa: F401

revision = "0017_promotions_pricing"
down_revision = "0016_tasks_progress"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
