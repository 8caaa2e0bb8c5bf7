"""Ledger operations: reconciliation findings (subject, fix), expiry index, archive manifest, risk controls
(rules, blocklist, velocity events, held credits) and the batch credit function.

Revision ID: 0005_ledger_ops
Revises: 0003_ledger
"""

from alembic import op

revision = "0005_ledger_ops"
down_revision = "0003_ledger"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        -- What a finding is about (an account, a posting id, a hold reference), and the posting that fixed it.
        -- An open finding is not filed twice: the scheduled run finds it again until someone resolves it.
        ALTER TABLE ledger_findings ADD COLUMN subject text NOT NULL DEFAULT '', ADD COLUMN fixed_by text;
        CREATE UNIQUE INDEX uq_ledger_findings_open ON ledger_findings (class, program_id, contact_id, subject)
            WHERE status = 'open';

        -- Expiry finds a program's due buckets without scanning every account. Not partial on `remaining`:
        -- that would make every spend's bucket update a non-HOT update.
        CREATE INDEX ix_ledger_buckets_due ON ledger_buckets (program_id, month);

        -- One Parquet file per program and month of entries, verified before the detail was deleted.
        CREATE TABLE ledger_archives (
            program_id  bigint NOT NULL REFERENCES ledger_programs (id),
            month       integer NOT NULL,
            path        text NOT NULL,
            rows        bigint NOT NULL,
            total       bigint NOT NULL,
            sha256      text NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_ledger_archives PRIMARY KEY (program_id, month)
        );

        -- Velocity limits: at most max_count actions (or max_amount points) per window and subject.
        CREATE TABLE ledger_risk_rules (
            id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            program_id     bigint NOT NULL REFERENCES ledger_programs (id),
            action         text NOT NULL CHECK (action IN ('credit', 'redeem')),
            dimension      text NOT NULL CHECK (dimension IN ('contact', 'device', 'ip')),
            window_seconds integer NOT NULL CHECK (window_seconds > 0),
            max_count      integer CHECK (max_count > 0),
            max_amount     bigint CHECK (max_amount > 0),
            verdict        text NOT NULL CHECK (verdict IN ('refuse', 'review')),
            created_at     timestamptz NOT NULL DEFAULT now(),
            CHECK (max_count IS NOT NULL OR max_amount IS NOT NULL)
        );

        CREATE TABLE ledger_blocklist (
            dimension  text NOT NULL CHECK (dimension IN ('contact', 'device', 'ip')),
            value      text NOT NULL,
            reason     text,
            created_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_ledger_blocklist PRIMARY KEY (dimension, value)
        );

        -- What velocity limits count: one row per accepted action and dimension, pruned after the longest window.
        CREATE TABLE ledger_risk_events (
            program_id bigint NOT NULL,
            action     text NOT NULL,
            dimension  text NOT NULL,
            value      text NOT NULL,
            amount     bigint NOT NULL,
            reference  text NOT NULL,
            at         timestamptz NOT NULL
        );
        CREATE INDEX ix_ledger_risk_events_subject ON ledger_risk_events (program_id, action, dimension, value, at);

        -- Credits held for review: posted (under their own reference) when released, never when rejected.
        CREATE TABLE ledger_reviews (
            id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            program_id  bigint NOT NULL REFERENCES ledger_programs (id),
            contact_id  bigint NOT NULL,
            reference   text NOT NULL,
            request     jsonb NOT NULL,
            reason      text NOT NULL,
            status      text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'released', 'rejected')),
            note        text,
            created_at  timestamptz NOT NULL DEFAULT now(),
            decided_at  timestamptz,
            CONSTRAINT uq_ledger_reviews_reference UNIQUE (program_id, reference)
        );
        CREATE INDEX ix_ledger_reviews_pending ON ledger_reviews (id) WHERE status = 'pending';
    """)


def downgrade() -> None:
    op.execute("""
        DROP TABLE ledger_reviews, ledger_risk_events, ledger_blocklist, ledger_risk_rules, ledger_archives;
        DROP INDEX ix_ledger_buckets_due, uq_ledger_findings_open;
        ALTER TABLE ledger_findings DROP COLUMN subject, DROP COLUMN fixed_by;
    """)
