"""Incentive tasks: definitions (seed 001's 任务规则表), per-period progress (任务进度明细表), per-contact state
across periods, and the reward grants outbox.

- `tasks`: one row per task; the validated definition as JSONB, its status (draft → approved → active ⇄ paused
  → ended), the event names it listens to (`actions`, GIN-indexed), its budget and what is reserved of it.
- `task_progress`: one row per (contact, task, period key) with seed 001's status (0 initial, 1 in progress,
  2 completed, 3 claimed, 4 lapsed), the progress, completions granted in the period and an `extra` map.
- `task_participants`: one row per (contact, task): variant, lifetime completions, streak state.
- `task_grants`: one row per reward earned, unique by its reference `reward:{task}:{contact}:{period}:{n}` (the
  ledger posting's reference; a coupon grant's coupons are issued under `{reference}#{i}`, their codes kept);
  the outbox the reward dispatcher reads (pending → issuing → issued), and
  `notified_at` once the contact was told (a toast when credited, a popup when claimable: domain/tasks/notices.py).
- `task_grant_checks`: where reconciliation's grant ↔ posting checks stopped, per program filter (keyset pages
  that wrap around), so each run reads a bounded page however large grants and postings grow.
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
            program_id    bigint,          -- null for a coupon task (the template is in the definition)
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
            reference     text NOT NULL,
            reward_type   text NOT NULL DEFAULT 'points',
            program_id    bigint,          -- points grants: the program credited
            coupon_template_id bigint,     -- coupon grants: the template issued (`amount` coupons)
            coupon_codes  text[],          -- coupon grants: the codes issued, once issued
            amount        bigint NOT NULL,
            status        text NOT NULL,
            claim_deadline timestamptz,
            batch         text,
            failure       text,
            notified_at   timestamptz,
            created_at    timestamptz NOT NULL DEFAULT now(),
            updated_at    timestamptz NOT NULL DEFAULT now(),
            -- The reference's parts: unique as the reference is (it is a function of them), and the index a
            -- contact's grants are read by (task centre, claims, erasure) — one index where there were two.
            CONSTRAINT uq_task_grants_completion UNIQUE (contact_id, task_id, period_key, n)
        );
        CREATE INDEX ix_task_grants_open ON task_grants (status, id)
            WHERE status IN ('pending', 'issuing', 'claimable');
        CREATE INDEX ix_task_grants_task ON task_grants (task_id, status);
        -- Rewards not told yet: claimable ones (a popup) and issued ones the saga could not tell (a risk hold
        -- released later, a notice that failed); a grant leaves the index once told.
        CREATE INDEX ix_task_grants_untold ON task_grants (id)
            WHERE status IN ('claimable', 'issued') AND notified_at IS NULL;

        CREATE TABLE task_grant_checks (
            scope           text PRIMARY KEY,
            grants_after    bigint NOT NULL DEFAULT 0,
            postings_after  bigint NOT NULL DEFAULT 0,
            updated_at      timestamptz NOT NULL DEFAULT now()
        );
    """)
    # What the progress engine's counting upsert computes in the row's own arithmetic (domain/tasks/progress.py:
    # completions_at, property-tested against it): completions of a simple task, a ladder or a streak (one a
    # period) at `progress`, under the per-period threshold, and the most a period can complete (then the row's
    # status is 2, completed).
    op.execute("""
        CREATE FUNCTION task_completions(d jsonb, progress bigint) RETURNS integer
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
            SELECT least(CASE WHEN d->>'kind' = 'ladder'
                              THEN (SELECT count(*) FROM jsonb_array_elements(d->'ladder') x
                                    WHERE (x->>'num')::bigint <= progress)
                              ELSE progress / (d->>'num')::bigint END,
                         CASE WHEN d->>'kind' = 'streak' THEN 1 ELSE (d->>'threshold')::bigint END)::integer
        $$;
        CREATE FUNCTION task_period_max(d jsonb) RETURNS integer
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
            SELECT CASE WHEN d->>'kind' = 'streak' THEN 1
                        ELSE least(CASE WHEN d->>'kind' = 'ladder' THEN jsonb_array_length(d->'ladder') END,
                                   (d->>'threshold')::bigint)::integer END
        $$;
    """)
    for table in PARTITIONED:
        for i in range(PARTITIONS):
            # Room on every page for updated rows (progress is updated far more than inserted in a long period):
            # the columns updated are not indexed, so updates stay on the page (HOT) and touch no index.
            op.execute(f"CREATE TABLE {table}_p{i} PARTITION OF {table} "
                       f"FOR VALUES WITH (MODULUS {PARTITIONS}, REMAINDER {i}) WITH (fillfactor = 80)")


def downgrade() -> None:
    op.execute("DROP TABLE task_grant_checks, task_grants, task_participants, task_progress, tasks")
    op.execute("DROP FUNCTION task_completions(jsonb, bigint), task_period_max(jsonb)")
