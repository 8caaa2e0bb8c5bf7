"""Segments: definitions, materialised membership with enter/exit times, transitions, computed scores.

Revision ID: 0004_segments
Revises: 0002_events

`segment_members` holds one row per (contact, segment) ever joined: `exited_at IS NULL` while a member.
Every entry and exit is also appended to `segment_transitions` (kind `segment_entered` / `segment_exited`),
which journeys read with a cursor like the event outbox: rows of transactions older than every running one.
`contact_event_recent` is the segments' own rollup of `contact_event_daily` for fast windowed counts.
`contact_scores` holds computed traits (lead score and lifecycle stage, RFM, churn risk), queryable as
`scores.<name>` in rules. The indexes on contacts serve trait conditions and the trait-change watermark.
"""

from alembic import op

revision = "0004_segments"
down_revision = "0002_events"
branch_labels = None
depends_on = None

PARTITIONS = 8
PARTITIONED = ("segment_members", "segment_transitions", "contact_scores", "contact_event_recent")


def upgrade() -> None:
    op.execute("""
        CREATE TABLE segments (
            id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name         text NOT NULL,
            description  text,
            kind         text NOT NULL CONSTRAINT ck_segments_kind CHECK (kind IN ('manual', 'rule')),
            rule         jsonb,
            time_based   boolean NOT NULL DEFAULT false,
            refreshed_at timestamptz,
            created_at   timestamptz NOT NULL DEFAULT now(),
            updated_at   timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT ck_segments_rule CHECK ((kind = 'rule') = (rule IS NOT NULL))
        );

        CREATE TABLE segment_members (
            contact_id bigint NOT NULL,
            segment_id bigint NOT NULL,
            entered_at timestamptz NOT NULL,
            exited_at  timestamptz,
            CONSTRAINT pk_segment_members PRIMARY KEY (contact_id, segment_id)
        ) PARTITION BY HASH (contact_id);
        CREATE INDEX ix_segment_members_current ON segment_members (segment_id, contact_id) WHERE exited_at IS NULL;

        CREATE SEQUENCE segment_transitions_id_seq AS bigint CACHE 100;
        CREATE TABLE segment_transitions (
            contact_id bigint NOT NULL,
            id         bigint NOT NULL DEFAULT nextval('segment_transitions_id_seq'),
            xid        xid8 NOT NULL DEFAULT pg_current_xact_id(),
            segment_id bigint NOT NULL,
            kind       text NOT NULL CONSTRAINT ck_segment_transitions_kind
                           CHECK (kind IN ('segment_entered', 'segment_exited')),
            at         timestamptz NOT NULL,
            CONSTRAINT pk_segment_transitions PRIMARY KEY (contact_id, id)
        ) PARTITION BY HASH (contact_id);
        CREATE INDEX ix_segment_transitions_xid ON segment_transitions (xid, id);

        CREATE TABLE contact_scores (
            contact_id      bigint NOT NULL,
            lead_score      double precision NOT NULL DEFAULT 0,
            lifecycle_stage text NOT NULL DEFAULT 'subscriber',
            rfm_tier        text,
            recency_days    integer,
            frequency       integer NOT NULL DEFAULT 0,
            monetary        double precision NOT NULL DEFAULT 0,
            churn_risk      double precision,
            computed_at     timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_contact_scores PRIMARY KEY (contact_id)
        ) PARTITION BY HASH (contact_id);

        CREATE TABLE segment_cursors (
            consumer   text PRIMARY KEY,
            position   text NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        );

        -- Per contact and event: the total and the UTC days of the latest occurrences, newest first, repeated
        -- when several fall on one day (d1..d3, then `more` up to 21). "At least N in the last W days" is
        -- "the N-th latest day is inside the window": one index range scan, no aggregation.
        CREATE TABLE contact_event_recent (
            contact_id bigint NOT NULL,
            event      text NOT NULL,
            total      bigint NOT NULL,
            d1         date NOT NULL,
            d2         date,
            d3         date,
            more       date[] NOT NULL DEFAULT '{}',
            CONSTRAINT pk_contact_event_recent PRIMARY KEY (contact_id, event)
        ) PARTITION BY HASH (contact_id);
        CREATE INDEX ix_contact_event_recent_d1 ON contact_event_recent (event, d1, contact_id);
        CREATE INDEX ix_contact_event_recent_d2 ON contact_event_recent (event, d2, contact_id) WHERE d2 IS NOT NULL;
        CREATE INDEX ix_contact_event_recent_d3 ON contact_event_recent (event, d3, contact_id) WHERE d3 IS NOT NULL;
        CREATE INDEX ix_contact_event_recent_total ON contact_event_recent (event, total, contact_id);

        CREATE INDEX ix_contacts_traits ON contacts USING gin (traits jsonb_path_ops);
        CREATE INDEX ix_contacts_updated_at ON contacts (updated_at);
    """)
    for table in PARTITIONED:
        for i in range(PARTITIONS):
            op.execute(
                f"CREATE TABLE {table}_p{i} PARTITION OF {table} "
                f"FOR VALUES WITH (MODULUS {PARTITIONS}, REMAINDER {i})"
            )


def downgrade() -> None:
    op.execute("""
        DROP INDEX ix_contacts_updated_at, ix_contacts_traits;
        DROP TABLE contact_event_recent, segment_cursors, contact_scores, segment_transitions, segment_members,
                   segments;
        DROP SEQUENCE segment_transitions_id_seq;
    """)
