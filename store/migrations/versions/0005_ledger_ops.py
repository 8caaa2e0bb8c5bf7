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


# The credit path in one round trip (a batch of credits per call; store/ledger_credits.py calls it). Phases
# take their locks in one global order each — accounts by (contact, program) in a single upsert, then
# references by (program, reference), then buckets, then system shards — so concurrent batches cannot
# deadlock. A reference another transaction posted after this call looked raises 40001: the caller retries
# and then sees a replay. Only the user side of a posting is an entry row; the system side is the sharded
# balance and the posting's own `entries`.
CREDIT_FUNCTION = """
CREATE FUNCTION ledger_post_credits(
    p_program bigint[], p_reference text[], p_contact bigint[], p_amount bigint[], p_month integer[],
    p_fingerprint text[], p_memo text[], p_now timestamptz, p_shard smallint
) RETURNS TABLE (ord integer, posting_id bigint, balance_after bigint, replay jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v_fresh integer[];
    v_found jsonb;
    v_c bigint[]; v_p bigint[]; v_b bigint[];
    v_ord integer[]; v_id bigint[]; v_after bigint[];
BEGIN
    SELECT array_agg(r.i ORDER BY r.i) FILTER (WHERE p.id IS NULL AND c.id IS NOT NULL),
           jsonb_agg(jsonb_build_array(r.i, to_jsonb(p))) FILTER (WHERE p.id IS NOT NULL)
      INTO v_fresh, v_found
      FROM unnest(p_program, p_reference, p_contact) WITH ORDINALITY AS r(program_id, reference, contact_id, i)
      LEFT JOIN ledger_postings p ON p.program_id = r.program_id AND p.reference = r.reference
      LEFT JOIN contacts c ON c.id = r.contact_id;

    RETURN QUERY SELECT (x->>0)::integer, NULL::bigint, NULL::bigint, x->1 FROM jsonb_array_elements(v_found) x;
    IF v_fresh IS NULL THEN
        RETURN;
    END IF;

    WITH d AS (
        SELECT p_contact[i] AS c, p_program[i] AS p, sum(p_amount[i]) AS n FROM unnest(v_fresh) i GROUP BY 1, 2
    ), up AS (
        INSERT INTO ledger_accounts AS a (contact_id, program_id, balance, updated_at)
        SELECT c, p, n, p_now FROM d ORDER BY c, p
        ON CONFLICT (contact_id, program_id)
        DO UPDATE SET balance = a.balance + excluded.balance, updated_at = excluded.updated_at
        RETURNING a.contact_id, a.program_id, a.balance
    )
    SELECT array_agg(contact_id), array_agg(program_id), array_agg(balance) INTO v_c, v_p, v_b FROM up;

    WITH f AS (
        SELECT i, p_program[i] AS program_id, p_reference[i] AS reference, p_contact[i] AS contact_id,
               p_amount[i] AS amount, p_fingerprint[i] AS fingerprint, p_memo[i] AS memo
        FROM unnest(v_fresh) i
    ), later AS (
        SELECT f.*, b.balance - coalesce(sum(f.amount) OVER (PARTITION BY f.contact_id, f.program_id ORDER BY f.i
                                         ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING), 0) AS bal_after
        FROM f JOIN unnest(v_c, v_p, v_b) AS b(contact_id, program_id, balance) USING (contact_id, program_id)
    ), ins AS (
        INSERT INTO ledger_postings (program_id, reference, kind, contact_id, amount, fingerprint, balance_after,
                                     entries, memo, created_at)
        SELECT program_id, reference, 'credit', contact_id, amount, fingerprint, bal_after,
               jsonb_build_array(jsonb_build_array('issuance', -amount), jsonb_build_array('user', amount)),
               memo, p_now
        FROM later ORDER BY program_id, reference
        ON CONFLICT (program_id, reference) DO NOTHING
        RETURNING id, program_id, reference, ledger_postings.balance_after
    )
    SELECT array_agg(f.i), array_agg(ins.id), array_agg(ins.balance_after) INTO v_ord, v_id, v_after
      FROM ins JOIN f USING (program_id, reference);

    IF coalesce(cardinality(v_ord), 0) <> cardinality(v_fresh) THEN
        RAISE EXCEPTION 'a concurrent transaction posted one of these references first' USING ERRCODE = '40001';
    END IF;

    WITH e AS (
        INSERT INTO ledger_entries (contact_id, posting_id, account, program_id, amount, created_at)
        SELECT p_contact[k.i], k.id, 'user', p_program[k.i], p_amount[k.i], p_now FROM unnest(v_ord, v_id) AS k(i, id)
    ), bk AS (
        INSERT INTO ledger_buckets AS b (contact_id, program_id, month, remaining)
        SELECT p_contact[i], p_program[i], p_month[i], sum(p_amount[i]) FROM unnest(v_fresh) i
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (contact_id, program_id, month) DO UPDATE SET remaining = b.remaining + excluded.remaining
    )
    INSERT INTO ledger_system_balances AS s (program_id, account, shard, balance)
    SELECT p_program[i], 'issuance', p_shard, -sum(p_amount[i]) FROM unnest(v_fresh) i GROUP BY 1 ORDER BY 1
    ON CONFLICT (program_id, account, shard) DO UPDATE SET balance = s.balance + excluded.balance;

    RETURN QUERY SELECT k.i, k.id, k.after, NULL::jsonb FROM unnest(v_ord, v_id, v_after) AS k(i, id, after);
END
$$;
"""


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
    op.execute(CREDIT_FUNCTION)


def downgrade() -> None:
    op.execute("""
        DROP FUNCTION ledger_post_credits;
        DROP TABLE ledger_reviews, ledger_risk_events, ledger_blocklist, ledger_risk_rules, ledger_archives;
        DROP INDEX ix_ledger_buckets_due, uq_ledger_findings_open;
        ALTER TABLE ledger_findings DROP COLUMN subject, DROP COLUMN fixed_by;
    """)
