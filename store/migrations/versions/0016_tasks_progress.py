"""Incentive tasks: definitions (seed 001's 任务规则表), per-period progress (任务进度明细表), per-contact state
across periods, and the reward grants outbox.

- `tasks`: one row per task; the validated definition as JSONB, its status (draft → approved → active ⇄ paused
  → ended), the event names it listens to (`actions`, GIN-indexed), its budget and what is reserved of it.
- `task_progress`: one row per (contact, task, period key) with seed 001's status (0 initial, 1 in progress,
  2 completed, 3 claimed, 4 lapsed), the progress, completions granted in the period and an `extra` map.
- `task_participants`: one row per (contact, task): variant, lifetime completions, streak state.
- `task_grants`: one row per reward earned, unique by its reference `reward:{task}:{contact}:{period}:{n}` (the
  ledger posting's reference); the outbox the reward dispatcher reads (pending → issuing → issued).
Progress and participants grow with contacts and are hash-partitioned by contact id like `events`.

Revision ID: 0016_tasks_progress
Revises: 0015_channels_deliveries
"""

from alembic import op

revision = "0016_tasks_progress"
down_revision = "0015_channels_deliveries"
branch_labels = None
depends_on = None

PARTITIONS = 8
PARTITIONED = ("task_progress", "task_participants")


def upgrade() -> None:
    op.execute("""
        CREATE TABLE tasks (
            id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name          text NOT NULL,
            status        text NOT NULL DEFAULT 'draft',
            version       integer NOT NULL DEFAULT 1,
            definition    jsonb NOT NULL,
            actions       text[] NOT NULL,
            program_id    bigint NOT NULL,
            budget        bigint,
            reserved      bigint NOT NULL DEFAULT 0,
            alert         text,
            created_at    timestamptz NOT NULL DEFAULT now(),
            updated_at    timestamptz NOT NULL DEFAULT now(),
            activated_at  timestamptz,
            ended_at      timestamptz,
            CONSTRAINT ck_tasks_budget CHECK (budget IS NULL OR reserved <= budget)
        );
        CREATE INDEX ix_tasks_active_actions ON tasks USING gin (actions) WHERE status = 'active';

        CREATE TABLE task_progress (
            contact_id   bigint NOT NULL,
            task_id      bigint NOT NULL,
            period_key   text NOT NULL,
            progress     bigint NOT NULL DEFAULT 0,
            completions  integer NOT NULL DEFAULT 0,
            stage        integer NOT NULL DEFAULT 0,
            status       smallint NOT NULL DEFAULT 0,
            extra        jsonb NOT NULL DEFAULT '{}',
            created_at   timestamptz NOT NULL DEFAULT now(),
            updated_at   timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_task_progress PRIMARY KEY (contact_id, task_id, period_key)
        ) PARTITION BY HASH (contact_id);
        CREATE INDEX ix_task_progress_task ON task_progress (task_id, period_key);

        CREATE TABLE task_participants (
            contact_id   bigint NOT NULL,
            task_id      bigint NOT NULL,
            variant      smallint,
            lifetime     integer NOT NULL DEFAULT 0,
            streak       integer NOT NULL DEFAULT 0,
            last_key     text,
            created_at   timestamptz NOT NULL DEFAULT now(),
            updated_at   timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_task_participants PRIMARY KEY (contact_id, task_id)
        ) PARTITION BY HASH (contact_id);
        CREATE INDEX ix_task_participants_task ON task_participants (task_id);

        CREATE TABLE task_grants (
            id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            task_id       bigint NOT NULL,
            contact_id    bigint NOT NULL,
            period_key    text NOT NULL,
            n             integer NOT NULL,
            reference     text NOT NULL CONSTRAINT uq_task_grants_reference UNIQUE,
            reward_type   text NOT NULL DEFAULT 'points',
            program_id    bigint NOT NULL,
            amount        bigint NOT NULL,
            status        text NOT NULL,
            claim_deadline timestamptz,
            batch         text,
            failure       text,
            created_at    timestamptz NOT NULL DEFAULT now(),
            updated_at    timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX ix_task_grants_open ON task_grants (status, id)
            WHERE status IN ('pending', 'issuing', 'claimable');
        CREATE INDEX ix_task_grants_contact ON task_grants (contact_id, task_id);
        CREATE INDEX ix_task_grants_task ON task_grants (task_id, status);
    """)
    for table in PARTITIONED:
        for i in range(PARTITIONS):
            op.execute(f"CREATE TABLE {table}_p{i} PARTITION OF {table} "
                       f"FOR VALUES WITH (MODULUS {PARTITIONS}, REMAINDER {i})")


def downgrade() -> None:
    op.execute("DROP TABLE task_grants, task_participants, task_progress, tasks")
