"""Campaigns: approval, audit trail, segment audiences, variants and holdout, cancel.

- `campaigns` gains who created it (`created_by_key_id`, `created_by`: the API key's id and name, for the
  four-eyes rule and the audit), `approval_required` (the campaign asks for approval whatever the policy),
  `incentive` (what is attached, e.g. `{"points": 100}`; the default policy then requires approval), the variants
  (`[{"name", "weight", "subject", "body", "html"}]`) with `holdout_bp` (basis points kept back, recorded but not
  sent) and `conversion_event` (the event counted as a conversion after the send); `chain` (the fallback chain,
  `{email}` by default) and `content` (per-channel templates beyond the email's subject/body/html:
  `{"sms": {"text"}, "push": {"title", "body", "data"}, "wechat": {"template_id", "url", "fields"},
  "inbox": {"title", "body", "display"}}`).
- `campaign_transitions`: every lifecycle move (from, to, who = key id and name, when, a note), append-only; the
  API lists it.
- `deliveries` gains `variant` (the group hash(campaign, contact) put the recipient in, `holdout` included); the
  statuses `holdout`, `suppressed`, `deferred` (handed to the delivery service, waiting for quiet hours or a
  receipt) and `cancelled` join queued/sent/failed.
- `campaign_runs` gains `cancelled_at`.
- `campaigns.max_per_second`: the optional per-campaign send-rate cap (1-100,000 messages a second; NULL = none),
  which the run's workflow paces its batch starts by.
- `campaigns.recurrence` (`{"cron" | "every_seconds", "timezone", "start", "until"}`: the Temporal Schedule that
  starts one run per occurrence), `campaigns.local_time` (`HH:MM`: each recipient gets the message at that time on
  their own clock) and `campaigns.timezone` (the zone of recipients without one).
- `campaign_runs.scheduled_at`: the occurrence's time, for a run a schedule started; `campaign_runs.error`: why a
  run did not send (an occurrence whose recipients lack a template variable; status `failed`).
- `deliveries.zone`: the recipient's zone at the snapshot of a local-time run (its contact's, else NULL).

Revision ID: 0018_campaigns_approval
Revises: 0017_promotions_pricing
"""

from alembic import op

revision = "0018_campaigns_approval"
down_revision = "0017_promotions_pricing"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        ALTER TABLE campaigns
            ADD COLUMN created_by_key_id bigint,
            ADD COLUMN created_by        text,
            ADD COLUMN approval_required boolean NOT NULL DEFAULT false,
            ADD COLUMN incentive         jsonb,
            ADD COLUMN variants          jsonb NOT NULL DEFAULT '[]',
            ADD COLUMN holdout_bp        integer NOT NULL DEFAULT 0,
            ADD COLUMN conversion_event  text,
            ADD COLUMN chain             text[] NOT NULL DEFAULT '{email}',
            ADD COLUMN content           jsonb NOT NULL DEFAULT '{}',
            ADD COLUMN max_per_second    integer CHECK (max_per_second BETWEEN 1 AND 100000),
            ADD COLUMN recurrence        jsonb,
            ADD COLUMN local_time        text CHECK (local_time ~ '^[0-2]?[0-9]:[0-5][0-9]$'),
            ADD COLUMN timezone          text NOT NULL DEFAULT 'UTC';

        CREATE TABLE campaign_transitions (
            id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            campaign_id bigint NOT NULL REFERENCES campaigns (id),
            from_status text NOT NULL,
            to_status   text NOT NULL,
            key_id      bigint,
            key_name    text,
            note        text,
            at          timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX ix_campaign_transitions_campaign ON campaign_transitions (campaign_id, id);

        ALTER TABLE deliveries ADD COLUMN variant text, ADD COLUMN zone text;
        ALTER TABLE campaign_runs ADD COLUMN cancelled_at timestamptz, ADD COLUMN scheduled_at timestamptz,
            ADD COLUMN error text;
    """)


def downgrade() -> None:
    op.execute("""
        ALTER TABLE campaign_runs DROP COLUMN cancelled_at, DROP COLUMN scheduled_at, DROP COLUMN error;
        ALTER TABLE deliveries DROP COLUMN variant, DROP COLUMN zone;
        DROP TABLE campaign_transitions;
        ALTER TABLE campaigns DROP COLUMN created_by_key_id, DROP COLUMN created_by, DROP COLUMN approval_required,
            DROP COLUMN incentive, DROP COLUMN variants, DROP COLUMN holdout_bp, DROP COLUMN conversion_event,
            DROP COLUMN chain, DROP COLUMN content, DROP COLUMN max_per_second,
            DROP COLUMN recurrence, DROP COLUMN local_time, DROP COLUMN timezone;
    """)
