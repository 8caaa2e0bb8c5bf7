"""Channels and deliveries: what each step sent through which channel, what providers reported, and the
anti-disturbance state (suppressions, preferences, frequency caps), plus the in-app inbox.

- `delivery_plans`: one row per step to deliver (`delivery:{campaign}:{step}:{contact}` or a journey's key): its
  fallback chain, the content rendered per channel, topic, transactional flag, and `wake_at`, when the sweeper
  must look at it next (a receipt window ends, quiet hours end, a retry is due); NULL once done. The sweep is an
  index range scan on `wake_at`.
- `delivery_attempts`: per (step, attempt number) the channel, the state (domain/channels/deliveries.py), the
  provider's message id, error class and text, one timestamp per state, and `receipt_due_at`.
- `delivery_provider_ids`: (channel, provider message id) → attempt, so receipts find their attempt.
- `suppressions`: (channel, sha-256 of the address) never sent to again: bounces, complaints, manual entries.
- `contact_preferences`: topic × channel subscription rules (`*` for any).
- `frequency_log`: the messages the caps count (one per step, transactional excluded); the cap check and the
  insert run under a per-contact advisory lock, so racing senders cannot both take the last slot.
- `inbox_messages`: the in-app inbox (display hint toast | popup | banner).
- `webhook_receipts`: provider callback ids already applied, for replay refusal; pruned after the tolerance.
- `early_receipts`: reports that arrived before the send that they are about was recorded (a fast provider beating
  the batch's commit), applied when it is; pruned after a day. No contact id: only the provider's message id.
- `provider_rate_limits`: one token bucket per provider, shared by every worker process.
- `channel_secrets`: the random HMAC secret of unsubscribe, open and click links, made here once.

The tables that grow with contacts are hash-partitioned by contact id like `deliveries`.

Revision ID: 0015_channels_deliveries
Revises: 0014_keys_dashboard_sessions
"""

from alembic import op

revision = "0015_channels_deliveries"
down_revision = "0014_keys_dashboard_sessions"
branch_labels = None
depends_on = None

PARTITIONS = 8
PARTITIONED = ("delivery_plans", "delivery_attempts", "frequency_log", "inbox_messages", "contact_preferences")


def upgrade() -> None:
    op.execute("""
        CREATE TABLE delivery_plans (
            contact_id    bigint NOT NULL,
            key           text NOT NULL,
            chain         text[] NOT NULL,
            content       jsonb NOT NULL,
            topic         text,
            transactional boolean NOT NULL DEFAULT false,
            status        text NOT NULL DEFAULT 'pending',
            outcome       text,
            wake_at       timestamptz,
            deferred_until timestamptz,
            created_at    timestamptz NOT NULL DEFAULT now(),
            finished_at   timestamptz,
            CONSTRAINT pk_delivery_plans PRIMARY KEY (contact_id, key)
        ) PARTITION BY HASH (contact_id);
        CREATE INDEX ix_delivery_plans_wake ON delivery_plans (wake_at) WHERE wake_at IS NOT NULL;

        CREATE TABLE delivery_attempts (
            contact_id          bigint NOT NULL,
            key                 text NOT NULL,
            attempt             smallint NOT NULL,
            channel             text NOT NULL,
            status              text NOT NULL,
            address_hash        text,
            provider_message_id text,
            error_class         text,
            error               text,
            tries               smallint NOT NULL DEFAULT 0,
            receipt_due_at      timestamptz,
            retry_at            timestamptz,
            queued_at           timestamptz NOT NULL DEFAULT now(),
            sent_at             timestamptz,
            delivered_at        timestamptz,
            opened_at           timestamptz,
            clicked_at          timestamptz,
            failed_at           timestamptz,
            updated_at          timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_delivery_attempts PRIMARY KEY (contact_id, key, attempt)
        ) PARTITION BY HASH (contact_id);
        CREATE INDEX ix_delivery_attempts_channel ON delivery_attempts (channel, status);

        CREATE TABLE delivery_provider_ids (
            channel             text NOT NULL,
            provider_message_id text NOT NULL,
            contact_id          bigint NOT NULL,
            key                 text NOT NULL,
            attempt             smallint NOT NULL,
            CONSTRAINT pk_delivery_provider_ids PRIMARY KEY (channel, provider_message_id)
        );
        CREATE INDEX ix_delivery_provider_ids_contact ON delivery_provider_ids (contact_id);

        CREATE TABLE suppressions (
            channel      text NOT NULL,
            address_hash text NOT NULL,
            contact_id   bigint,
            reason       text NOT NULL,
            note         text,
            since        timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_suppressions PRIMARY KEY (channel, address_hash)
        );
        CREATE INDEX ix_suppressions_contact ON suppressions (contact_id) WHERE contact_id IS NOT NULL;

        CREATE TABLE contact_preferences (
            contact_id bigint NOT NULL,
            topic      text NOT NULL,
            channel    text NOT NULL,
            subscribed boolean NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_contact_preferences PRIMARY KEY (contact_id, topic, channel)
        ) PARTITION BY HASH (contact_id);

        CREATE TABLE frequency_log (
            contact_id bigint NOT NULL,
            key        text NOT NULL,
            channel    text NOT NULL,
            at         timestamptz NOT NULL,
            CONSTRAINT pk_frequency_log PRIMARY KEY (contact_id, key)
        ) PARTITION BY HASH (contact_id);
        CREATE INDEX ix_frequency_log_at ON frequency_log (contact_id, at);

        CREATE TABLE inbox_messages (
            contact_id bigint NOT NULL,
            id         bigint GENERATED ALWAYS AS IDENTITY,
            key        text NOT NULL,
            title      text NOT NULL,
            body       text NOT NULL,
            display    text NOT NULL DEFAULT 'banner',
            data       jsonb NOT NULL DEFAULT '{}',
            created_at timestamptz NOT NULL DEFAULT now(),
            read_at    timestamptz,
            deleted_at timestamptz,
            expires_at timestamptz,
            CONSTRAINT pk_inbox_messages PRIMARY KEY (contact_id, id),
            CONSTRAINT uq_inbox_messages_key UNIQUE (contact_id, key),
            CONSTRAINT ck_inbox_messages_display CHECK (display IN ('toast', 'popup', 'banner'))
        ) PARTITION BY HASH (contact_id);

        CREATE TABLE webhook_receipts (
            provider text NOT NULL,
            event_id text NOT NULL,
            seen_at  timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_webhook_receipts PRIMARY KEY (provider, event_id)
        );
        CREATE INDEX ix_webhook_receipts_seen ON webhook_receipts (seen_at);

        CREATE TABLE early_receipts (
            channel             text NOT NULL,
            provider_message_id text NOT NULL,
            status              text NOT NULL,
            at                  timestamptz NOT NULL,
            error               text,
            received_at         timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_early_receipts PRIMARY KEY (channel, provider_message_id, status)
        );
        CREATE INDEX ix_early_receipts_received ON early_receipts (received_at);

        CREATE TABLE provider_rate_limits (
            provider   text PRIMARY KEY,
            tokens     double precision NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE channel_secrets (
            name   text PRIMARY KEY,
            secret text NOT NULL
        );
        INSERT INTO channel_secrets (name, secret)
        VALUES ('links', replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''));
    """)
    for table in PARTITIONED:
        for i in range(PARTITIONS):
            op.execute(f"CREATE TABLE {table}_p{i} PARTITION OF {table} "
                       f"FOR VALUES WITH (MODULUS {PARTITIONS}, REMAINDER {i})")


def downgrade() -> None:
    op.execute("DROP TABLE early_receipts, channel_secrets, provider_rate_limits, webhook_receipts, inbox_messages, "
               "frequency_log, contact_preferences, suppressions, delivery_provider_ids, delivery_attempts, "
               "delivery_plans")
