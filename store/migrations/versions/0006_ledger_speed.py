"""Ledger speed: the batch credit function keeps generic plans that use its indexes.

`ledger_post_credits` runs five statements over hash-partitioned tables with array parameters. Under the
default plan cache mode each call replans them (custom plans look cheaper to the planner), and planning a
partitioned upsert costs more than running it for a batch of 16. A generic plan is made once per session
and prunes partitions at run time; measured on the writer's path it cut Postgres CPU per posting by about
a quarter and call latency by a third.

Every statement of the function is a key lookup or upsert driven by a batch-sized array, so it never wants a
sequential scan; but a plan made while a table was still empty (a new cluster, a new program's first minute)
picks one and keeps it until autovacuum analyzes, and the cost grows with the table (measured on a fresh
cluster: 1,100-1,300 postings/s and 600-700 µs of Postgres CPU per posting, against 2,800 and 217 µs with
sequential scans off for the function).

Revision ID: 0006_ledger_speed
Revises: 0005_ledger_ops
"""

from alembic import op

revision = "0006_ledger_speed"
down_revision = "0005_ledger_ops"
branch_labels = None
depends_on = None

SIGNATURE = ("ledger_post_credits(bigint[], text[], bigint[], bigint[], integer[], text[], text[], "
             "timestamptz, smallint)")


def upgrade() -> None:
    op.execute(f"ALTER FUNCTION {SIGNATURE} SET plan_cache_mode = force_generic_plan")
    op.execute(f"ALTER FUNCTION {SIGNATURE} SET enable_seqscan = off")


def downgrade() -> None:
    op.execute(f"ALTER FUNCTION {SIGNATURE} RESET plan_cache_mode")
    op.execute(f"ALTER FUNCTION {SIGNATURE} RESET enable_seqscan")
