"""Segment and event operations: indexes that let the daily prune find old rows without scanning.

Revision ID: 0008_segment_ops
Revises: 0004_segments

`event_dedupe (received_at)`: message ids older than the dedupe window are deleted oldest first, in chunks.
`segment_transitions (at)`: transitions older than their retention likewise. Both keys grow with time,
so inserts append at the right edge of the index. (`event_outbox` is pruned along its existing
`(xid, id)` index, up to the slowest consumer's cursor.)
"""

from alembic import op

revision = "0008_segment_ops"
down_revision = "0004_segments"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE INDEX ix_event_dedupe_received_at ON event_dedupe (received_at);
        CREATE INDEX ix_segment_transitions_at ON segment_transitions (at);
    """)


def downgrade() -> None:
    op.execute("DROP INDEX ix_segment_transitions_at, ix_event_dedupe_received_at")
