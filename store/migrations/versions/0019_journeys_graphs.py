"""journeys_graphs (filled in as the domain lands).

Revision ID: 0019_journeys_graphs
Revises: 0018_campaigns_approval
"""

from alembic import op  # noqa: F401

revision = "0019_journeys_graphs"
down_revision = "0018_campaigns_approval"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
