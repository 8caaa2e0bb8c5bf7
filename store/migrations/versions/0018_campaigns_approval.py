"""campaigns_approval (filled in as the domain lands).

Revision ID: 0018_campaigns_approval
Revises: 0017_promotions_pricing
"""

from alembic import op  # noqa: F401

revision = "0018_campaigns_approval"
down_revision = "0017_promotions_pricing"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
