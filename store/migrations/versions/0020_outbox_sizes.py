"""outbox_sizes: each `event_outbox` row's event count, stored beside it (`size`, generated from `event_ids`); the
campaigns' deferred deliveries indexed apart.

A consumer reads whole outbox rows up to about `limit` events, summing their sizes in order; computing
`cardinality(event_ids)` there detoasted every large row's array just to count it (a thousand 8 kB arrays per read).
The campaigns' housekeeping looks for `deferred` deliveries whose plans have moved on every ten minutes: a partial index
keeps that to the deferred rows (`store/campaigns/deferred.py`).

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
    op.execute("CREATE INDEX ix_deliveries_deferred ON deliveries (contact_id, key) WHERE status = 'deferred'")


def downgrade() -> None:
    op.execute("DROP INDEX ix_deliveries_deferred")
    op.execute("ALTER TABLE event_outbox DROP COLUMN size")
