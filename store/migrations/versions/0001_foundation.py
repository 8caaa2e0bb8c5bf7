"""Foundation: api keys, contacts, campaigns, campaign runs, deliveries (hash-partitioned by contact).

Revision ID: 0001_foundation
Revises:
"""

from alembic import op

revision = "0001_foundation"
down_revision = None
branch_labels = None
depends_on = None

DELIVERY_PARTITIONS = 8


def upgrade() -> None:
    op.execute("""
        CREATE TABLE api_keys (
            id          serial PRIMARY KEY,
            name        text NOT NULL,
            prefix      varchar(16) NOT NULL CONSTRAINT uq_api_keys_prefix UNIQUE,
            secret_hash varchar(64) NOT NULL,
            scopes      text[] NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now(),
            revoked_at  timestamptz
        );

        CREATE TABLE contacts (
            id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            user_id    text CONSTRAINT uq_contacts_user_id UNIQUE,
            email      text,
            phone      text,
            timezone   text,
            traits     jsonb NOT NULL DEFAULT '{}',
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX ix_contacts_email ON contacts (lower(email));

        CREATE TABLE campaigns (
            id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name       text NOT NULL,
            channel    text NOT NULL,
            subject    text NOT NULL,
            body       text NOT NULL,
            html       text,
            audience   jsonb NOT NULL,
            status     text NOT NULL DEFAULT 'draft',
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE campaign_runs (
            id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            campaign_id bigint NOT NULL REFERENCES campaigns (id),
            number      integer NOT NULL,
            workflow_id text NOT NULL CONSTRAINT uq_campaign_runs_workflow_id UNIQUE,
            status      text NOT NULL DEFAULT 'starting',
            total       integer NOT NULL DEFAULT 0,
            started_at  timestamptz NOT NULL DEFAULT now(),
            finished_at timestamptz,
            CONSTRAINT uq_campaign_runs_campaign_id UNIQUE (campaign_id, number)
        );

        -- The business key is unique per contact; partitioning by contact lets Citus distribute it.
        CREATE TABLE deliveries (
            contact_id          bigint NOT NULL,
            key                 text NOT NULL,
            campaign_id         bigint NOT NULL,
            run_id              bigint NOT NULL,
            step                text NOT NULL,
            channel             text NOT NULL,
            status              text NOT NULL,
            attempts            integer NOT NULL DEFAULT 0,
            provider_message_id text,
            error               text,
            created_at          timestamptz NOT NULL DEFAULT now(),
            sent_at             timestamptz,
            CONSTRAINT pk_deliveries PRIMARY KEY (contact_id, key)
        ) PARTITION BY HASH (contact_id);
        CREATE INDEX ix_deliveries_run ON deliveries (run_id, status, contact_id);
        CREATE INDEX ix_deliveries_campaign ON deliveries (campaign_id, status);
    """)
    for i in range(DELIVERY_PARTITIONS):
        op.execute(
            f"CREATE TABLE deliveries_p{i} PARTITION OF deliveries "
            f"FOR VALUES WITH (MODULUS {DELIVERY_PARTITIONS}, REMAINDER {i})"
        )


def downgrade() -> None:
    op.execute("DROP TABLE deliveries, campaign_runs, campaigns, contacts, api_keys")
