"""Events deduplicate themselves: a unique index on (contact_id, message_id).

Revision ID: 0011_events_dedupe
Revises: 0008_segment_ops

Ingest used to write an `event_dedupe` row beside every event (a heap row and two index entries) only to
refuse a replayed message id. The events table now refuses it itself: a replay carries the same identity,
so it lands on the same contact and meets its first copy in this index. `event_dedupe` keeps the message
ids of erased contacts (their events are gone, so nothing else remembers them) and is pruned after the
dedupe window as before. Existing dedupe rows stay until that prune.
"""

from alembic import op

revision = "0011_events_dedupe"
down_revision = "0008_segment_ops"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE UNIQUE INDEX uq_events_contact_message ON events (contact_id, message_id)")


def downgrade() -> None:
    # Events stored since the upgrade have no dedupe rows: give them one so replays stay refused.
    op.execute("""
        INSERT INTO event_dedupe (message_id, received_at)
        SELECT message_id, received_at FROM events ON CONFLICT DO NOTHING;
        DROP INDEX uq_events_contact_message;
    """)
