"""outbox_sizes: each `event_outbox` row's event count, stored beside it (`size`, generated from `event_ids`).

A consumer reads whole outbox rows up to about `limit` events, summing their sizes in order; computing
`cardinality(event_ids)` there detoasted every large row's array just to count it (a thousand 8 kB arrays per read).

Revision ID: 0020_outbox_sizes
Revises: 0019_journeys_graphs
"""

from alembic import op

revision = "0020_outbox_sizes"
down_revision = "0019_journeys_graphs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE event_outbox ADD COLUMN size integer GENERATED ALWAYS AS (cardinality(event_ids)) STORED")


def downgrade() -> None:
    op.execute("ALTER TABLE event_outbox DROP COLUMN size")
