"""Events and identity: identities, events, message-id dedupe, daily per-contact aggregates, outbox.

Revision ID: 0002_events
Revises: 0001_foundation

Tables that grow with contacts (events, contact_event_daily) are hash-partitioned by contact id.
`contact_event_daily.event` is the track event name, or `$page` / `$screen` for page and screen
views; `day` is the UTC day of the (skew-corrected) event timestamp.
The outbox holds one row per ingested batch; consumers read rows whose transaction is older than
every running one (`xid < pg_snapshot_xmin(pg_current_snapshot())`), so nothing commits behind a cursor.
"""

from alembic import op

revision = "0002_events"
down_revision = "0001_foundation"
branch_labels = None
depends_on = None

PARTITIONS = 8
# Aggregates and contacts.last_seen_at are updated on every batch: leave room on each page so the
# updates are HOT (no index writes).
PARTITIONED = {"events": "", "contact_event_daily": " WITH (fillfactor = 70)"}


def upgrade() -> None:
    op.execute("""
        ALTER TABLE contacts ADD COLUMN last_seen_at timestamptz;
        ALTER TABLE contacts SET (fillfactor = 85);

        CREATE TABLE identities (
            kind       text NOT NULL CONSTRAINT ck_identities_kind CHECK (kind IN
                           ('user_id', 'anonymous_id', 'email', 'phone', 'wechat_openid', 'device_id')),
            value      text NOT NULL,
            contact_id bigint NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
            created_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_identities PRIMARY KEY (kind, value)
        );
        CREATE INDEX ix_identities_contact_id ON identities (contact_id);

        -- A contact merged into another (identify/alias of an anonymous visitor) leaves a forwarding row.
        CREATE TABLE contact_merges (
            contact_id  bigint PRIMARY KEY,
            merged_into bigint NOT NULL,
            merged_at   timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX ix_contact_merges_merged_into ON contact_merges (merged_into);

        CREATE SEQUENCE events_id_seq AS bigint CACHE 100;
        CREATE TABLE events (
            contact_id  bigint NOT NULL,
            id          bigint NOT NULL DEFAULT nextval('events_id_seq'),
            message_id  text NOT NULL,
            type        text NOT NULL,  -- track | page | screen | identify | group | alias
            event       text,           -- track name; page/screen name
            properties  jsonb NOT NULL DEFAULT '{}',
            context     jsonb NOT NULL DEFAULT '{}',
            timestamp   timestamptz NOT NULL,
            received_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_events PRIMARY KEY (contact_id, id)
        ) PARTITION BY HASH (contact_id);
        CREATE INDEX ix_events_contact_event_timestamp ON events (contact_id, event, timestamp);

        -- Written in the same transaction as the events: a retried batch inserts nothing twice.
        CREATE TABLE event_dedupe (
            message_id  text PRIMARY KEY,
            received_at timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE contact_event_daily (
            contact_id bigint NOT NULL,
            event      text NOT NULL,
            day        date NOT NULL,
            count      integer NOT NULL,
            first_at   timestamptz NOT NULL,
            last_at    timestamptz NOT NULL,
            CONSTRAINT pk_contact_event_daily PRIMARY KEY (contact_id, event, day)
        ) PARTITION BY HASH (contact_id);

        CREATE TABLE event_outbox (
            id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            xid         xid8 NOT NULL DEFAULT pg_current_xact_id(),
            contact_ids bigint[] NOT NULL,
            event_ids   bigint[] NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX ix_event_outbox_xid ON event_outbox (xid, id);

        CREATE TABLE event_cursors (
            consumer   text PRIMARY KEY,
            xid        xid8 NOT NULL DEFAULT '0',
            outbox_id  bigint NOT NULL DEFAULT 0,
            updated_at timestamptz NOT NULL DEFAULT now()
        );
    """)
    # Contacts that existed before identities did keep being found by their ids.
    op.execute("""
        INSERT INTO identities (kind, value, contact_id)
        SELECT k.kind, k.value, c.id FROM contacts c
        CROSS JOIN LATERAL (VALUES ('user_id', c.user_id), ('email', lower(c.email)), ('phone', c.phone))
            AS k(kind, value)
        WHERE k.value IS NOT NULL
        ORDER BY c.id
        ON CONFLICT DO NOTHING
    """)
    for table, storage in PARTITIONED.items():
        for i in range(PARTITIONS):
            op.execute(
                f"CREATE TABLE {table}_p{i} PARTITION OF {table} "
                f"FOR VALUES WITH (MODULUS {PARTITIONS}, REMAINDER {i}){storage}"
            )


def downgrade() -> None:
    op.execute("""
        DROP TABLE event_cursors, event_outbox, contact_event_daily, event_dedupe, events,
                   contact_merges, identities;
        DROP SEQUENCE events_id_seq;
        ALTER TABLE contacts DROP COLUMN last_seen_at;
        ALTER TABLE contacts RESET (fillfactor);
    """)
