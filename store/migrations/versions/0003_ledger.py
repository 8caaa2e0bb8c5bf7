"""Points ledger: programs, accounts (balance rows), postings (unique reference), entries, monthly buckets,
holds, rollups, system balances (sharded), findings, rewards catalogue and redemptions.

Revision ID: 0003_ledger
Revises: 0001_foundation
"""

from alembic import op

revision = "0003_ledger"
down_revision = "0001_foundation"
branch_labels = None
depends_on = None

PARTITIONS = 8
PARTITIONED = ("ledger_accounts", "ledger_entries", "ledger_buckets", "ledger_holds", "ledger_rollups")


def upgrade() -> None:
    op.execute("""
        CREATE TABLE ledger_programs (
            id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name             text NOT NULL CONSTRAINT uq_ledger_programs_name UNIQUE,
            unit             text NOT NULL DEFAULT 'points',
            expiry_months    integer CHECK (expiry_months >= 0),
            retention_months integer NOT NULL DEFAULT 12 CHECK (retention_months >= 1),
            created_at       timestamptz NOT NULL DEFAULT now()
        );

        -- The balance row of a contact's account; locked (in contact order) by every posting that touches it.
        CREATE TABLE ledger_accounts (
            contact_id bigint NOT NULL REFERENCES contacts (id),
            program_id bigint NOT NULL,
            balance    bigint NOT NULL DEFAULT 0 CONSTRAINT ck_ledger_accounts_not_negative CHECK (balance >= 0),
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_ledger_accounts PRIMARY KEY (contact_id, program_id)
        ) PARTITION BY HASH (contact_id);

        -- System accounts (issuance, redemption, ...) are touched by every posting, so their balance is
        -- split into shards: concurrent writers add to different rows and never queue on one lock.
        CREATE TABLE ledger_system_balances (
            program_id bigint NOT NULL REFERENCES ledger_programs (id),
            account    text NOT NULL,
            shard      smallint NOT NULL,
            balance    bigint NOT NULL DEFAULT 0,
            CONSTRAINT pk_ledger_system_balances PRIMARY KEY (program_id, account, shard)
        );

        -- The idempotency record and receipt of a posting. Unique per program by the caller's reference,
        -- which is global, so this table is not partitioned by contact.
        CREATE TABLE ledger_postings (
            id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            program_id     bigint NOT NULL REFERENCES ledger_programs (id),
            reference      text NOT NULL,
            kind           text NOT NULL,
            contact_id     bigint NOT NULL,
            amount         bigint NOT NULL,
            fingerprint    text NOT NULL,
            balance_after  bigint NOT NULL,
            entries        jsonb NOT NULL,
            hold_reference text,
            memo           text,
            created_at     timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT uq_ledger_postings_program_id UNIQUE (program_id, reference)
        );

        -- Immutable. contact_id 0 holds the program's system accounts.
        CREATE TABLE ledger_entries (
            contact_id bigint NOT NULL,
            posting_id bigint NOT NULL,
            account    text NOT NULL,
            program_id bigint NOT NULL,
            amount     bigint NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_ledger_entries PRIMARY KEY (contact_id, posting_id, account)
        ) PARTITION BY HASH (contact_id);

        -- 月余: what remains of the points earned in each month, spent oldest first.
        CREATE TABLE ledger_buckets (
            contact_id bigint NOT NULL,
            program_id bigint NOT NULL,
            month      integer NOT NULL,
            remaining  bigint NOT NULL CONSTRAINT ck_ledger_buckets_not_negative CHECK (remaining >= 0),
            CONSTRAINT pk_ledger_buckets PRIMARY KEY (contact_id, program_id, month)
        ) PARTITION BY HASH (contact_id);

        CREATE TABLE ledger_holds (
            contact_id bigint NOT NULL,
            program_id bigint NOT NULL,
            reference  text NOT NULL,
            amount     bigint NOT NULL,
            taken      jsonb NOT NULL,
            status     text NOT NULL DEFAULT 'pending',
            expires_at timestamptz NOT NULL,
            settled_by text,
            created_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_ledger_holds PRIMARY KEY (contact_id, program_id, reference)
        ) PARTITION BY HASH (contact_id);
        CREATE INDEX ix_ledger_holds_pending ON ledger_holds (expires_at) WHERE status = 'pending';

        -- Entries older than the retention window, summed per posted month (their detail is in Parquet).
        CREATE TABLE ledger_rollups (
            contact_id bigint NOT NULL,
            program_id bigint NOT NULL,
            account    text NOT NULL,
            month      integer NOT NULL,
            credited   bigint NOT NULL DEFAULT 0,
            debited    bigint NOT NULL DEFAULT 0,
            CONSTRAINT pk_ledger_rollups PRIMARY KEY (contact_id, program_id, account, month)
        ) PARTITION BY HASH (contact_id);

        CREATE TABLE ledger_findings (
            id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            program_id  bigint NOT NULL,
            contact_id  bigint NOT NULL,
            class       text NOT NULL,
            detail      jsonb NOT NULL,
            status      text NOT NULL,
            fix         text,
            note        text,
            created_at  timestamptz NOT NULL DEFAULT now(),
            resolved_at timestamptz
        );
        CREATE INDEX ix_ledger_findings_status ON ledger_findings (status, id);

        CREATE TABLE ledger_rewards (
            id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            program_id bigint NOT NULL REFERENCES ledger_programs (id),
            name       text NOT NULL,
            cost       bigint NOT NULL CHECK (cost > 0),
            stock      integer NOT NULL CONSTRAINT ck_ledger_rewards_stock CHECK (stock >= 0),
            created_at timestamptz NOT NULL DEFAULT now()
        );

        -- One row per order and reward: reserving twice or releasing twice changes stock once.
        CREATE TABLE ledger_reward_reservations (
            order_id   text NOT NULL,
            reward_id  bigint NOT NULL REFERENCES ledger_rewards (id),
            quantity   integer NOT NULL,
            status     text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_ledger_reward_reservations PRIMARY KEY (order_id, reward_id)
        );

        CREATE TABLE ledger_redemptions (
            order_id   text PRIMARY KEY,
            program_id bigint NOT NULL REFERENCES ledger_programs (id),
            contact_id bigint NOT NULL,
            reward_id  bigint NOT NULL REFERENCES ledger_rewards (id),
            quantity   integer NOT NULL,
            points     bigint NOT NULL,
            status     text NOT NULL,
            failure    text,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );
    """)
    for table in PARTITIONED:
        for i in range(PARTITIONS):
            op.execute(
                f"CREATE TABLE {table}_p{i} PARTITION OF {table} "
                f"FOR VALUES WITH (MODULUS {PARTITIONS}, REMAINDER {i})"
            )


def downgrade() -> None:
    op.execute("""
        DROP TABLE ledger_redemptions, ledger_reward_reservations, ledger_rewards, ledger_findings, ledger_rollups,
                   ledger_holds, ledger_buckets, ledger_entries, ledger_postings, ledger_system_balances,
                   ledger_accounts, ledger_programs
    """)
