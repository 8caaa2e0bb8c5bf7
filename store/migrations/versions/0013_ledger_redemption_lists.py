"""Ledger redemption lists: orders are listed newest first, keyset-paged on (created_at, order_id), for every
contact or one (`GET /v1/redemptions`). Until now orders were only looked up by their id.

Revision ID: 0013_ledger_redemption_lists
Revises: 0012_merge_heads
"""

from alembic import op

revision = "0013_ledger_redemption_lists"
down_revision = "0012_merge_heads"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE INDEX ix_ledger_redemptions_recent ON ledger_redemptions (created_at DESC, order_id DESC);
        CREATE INDEX ix_ledger_redemptions_contact ON ledger_redemptions (contact_id, created_at DESC, order_id DESC);
    """)


def downgrade() -> None:
    op.execute("DROP INDEX ix_ledger_redemptions_contact, ix_ledger_redemptions_recent")
