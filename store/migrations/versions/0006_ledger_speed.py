"""Ledger speed: the batch credit function keeps generic plans.

`ledger_post_credits` runs five statements over hash-partitioned tables with array parameters. Under the
default plan cache mode each call replans them (custom plans look cheaper to the planner), and planning a
partitioned upsert costs more than running it for a batch of 16. A generic plan is made once per session
and prunes partitions at run time; measured on the writer's path it cut Postgres CPU per posting by about
a quarter and call latency by a third.

Revision ID: 0006_ledger_speed
Revises: 0005_ledger_ops
"""

from alembic import op

revision = "0006_ledger_speed"
down_revision = "0005_ledger_ops"
branch_labels = None
depends_on = None

SIGNATURE = "ledger_post_credits(bigint[], text[], bigint[], bigint[], integer[], text[], text[], timestamptz, smallint)"


def upgrade() -> None:
    op.execute(f"ALTER FUNCTION {SIGNATURE} SET plan_cache_mode = force_generic_plan")


def downgrade() -> None:
    op.execute(f"ALTER FUNCTION {SIGNATURE} RESET plan_cache_mode")
