"""Promotions and pricing (seed 002): the rule set, coupons, inventory and orders.

- `promotions`: one row per promotion; `definition` is the validated JSON of the unified discount model
  (domain/promotions/model.py), with the columns the API filters and the cache orders by beside it.
- `promotions_version`: one row, bumped in the same transaction as any change to promotions or coupon templates;
  each API process polls it and re-reads the rule set only when it moved (store/promotions/cache.py).
- `coupon_templates`: what a coupon is worth (the promotion that names the template), its validity (fixed dates
  or N days from issue), an optional shared public code, a per-contact limit.
- `coupons`: one row per issued or generated code: issued → reserved (by an order) → redeemed | expired |
  revoked. The code is unique across all templates, so this table is not partitioned by contact; issuance is
  idempotent by (template, reference).
- `promotion_stock_slots` / `promotion_reservations`: inventory counted apart from any product catalogue, per
  subject (`promotion:{id}`, `budget:{id}`, `template:{id}`, and the ledger's rewards `reward:{id}`) split over
  slot rows, so concurrent reservations take different rows (the `promotion_stock` view sums them: one row per
  subject for readers); a reservation takes units from a slot only while its `total - reserved - used` covers them
  (a CHECK per slot makes overselling impossible even for a buggy caller), records the slots it took them from,
  and is released or committed once, back to them. The ledger's reward catalogue moves its stock here:
  `ledger_rewards.stock` and `ledger_reward_reservations` (0003) are migrated to `reward:{id}` rows and the
  `redemption:{order_id}` holder's reservations, and are no longer written (`stock` gets a default of 0; the
  downgrade writes the inventory back into them). A reward is of `kind` item or coupon (then it names the
  `coupon_template_id` its redemption issues, and the redemption keeps the issued `coupon_codes`).
- `promotion_orders`: an order locks a quote (status pending → confirmed | cancelled | expired), idempotent by
  the caller's order id; `body_hash` tells a replay from a different order under the same id.
- `promotion_usage`: one row per confirmed order and promotion it used (per-contact limits, usage and discount
  cost on the dashboard); grows with contacts, so partitioned by hash of contact_id.

Revision ID: 0017_promotions_pricing
Revises: 0016_tasks_progress
"""

from alembic import op

revision = "0017_promotions_pricing"
down_revision = "0016_tasks_progress"
branch_labels = None
depends_on = None

PARTITIONS = 8


def upgrade() -> None:
    op.execute("""
        CREATE TABLE promotions_version (
            id      boolean PRIMARY KEY DEFAULT true CHECK (id),
            version bigint NOT NULL DEFAULT 0
        );
        INSERT INTO promotions_version DEFAULT VALUES;

        CREATE TABLE coupon_templates (
            id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name              text NOT NULL,
            public_code       text CONSTRAINT uq_coupon_templates_public_code UNIQUE,
            valid_from        timestamptz,
            valid_until       timestamptz,
            valid_days        integer CHECK (valid_days > 0),
            per_contact_limit integer CHECK (per_contact_limit > 0),
            status            text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'archived')),
            created_at        timestamptz NOT NULL DEFAULT now(),
            updated_at        timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE promotions (
            id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name               text NOT NULL,
            kind               text NOT NULL,
            status             text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'archived')),
            definition         jsonb NOT NULL,
            coupon_template_id bigint REFERENCES coupon_templates (id),
            starts_at          timestamptz,
            ends_at            timestamptz,
            priority           integer NOT NULL DEFAULT 0,
            created_at         timestamptz NOT NULL DEFAULT now(),
            updated_at         timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX ix_promotions_live ON promotions (status, ends_at);
        CREATE INDEX ix_promotions_template ON promotions (coupon_template_id) WHERE coupon_template_id IS NOT NULL;

        CREATE TABLE coupons (
            id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            template_id bigint NOT NULL REFERENCES coupon_templates (id),
            code        text NOT NULL CONSTRAINT uq_coupons_code UNIQUE,
            contact_id  bigint,
            state       text NOT NULL DEFAULT 'issued'
                        CHECK (state IN ('issued', 'reserved', 'redeemed', 'expired', 'revoked')),
            reference   text,
            order_id    text,
            valid_from  timestamptz,
            valid_until timestamptz,
            issued_at   timestamptz NOT NULL DEFAULT now(),
            updated_at  timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT uq_coupons_reference UNIQUE (template_id, reference)
        );
        CREATE INDEX ix_coupons_contact ON coupons (contact_id, template_id) WHERE contact_id IS NOT NULL;
        CREATE INDEX ix_coupons_order ON coupons (order_id) WHERE order_id IS NOT NULL;
        CREATE INDEX ix_coupons_expiring ON coupons (valid_until) WHERE state IN ('issued', 'reserved');

        CREATE TABLE promotion_stock_slots (
            subject  text NOT NULL,
            slot     smallint NOT NULL CHECK (slot >= 0),
            total    bigint NOT NULL CHECK (total >= 0),
            reserved bigint NOT NULL DEFAULT 0 CHECK (reserved >= 0),
            used     bigint NOT NULL DEFAULT 0 CHECK (used >= 0),
            CONSTRAINT pk_promotion_stock_slots PRIMARY KEY (subject, slot),
            CONSTRAINT ck_promotion_stock_never_oversold CHECK (reserved + used <= total)
        );
        CREATE VIEW promotion_stock AS
            SELECT subject, CAST(sum(total) AS bigint) AS total, CAST(sum(reserved) AS bigint) AS reserved,
                   CAST(sum(used) AS bigint) AS used, CAST(count(*) AS integer) AS slots
            FROM promotion_stock_slots GROUP BY subject;

        CREATE TABLE promotion_reservations (
            holder     text NOT NULL,
            subject    text NOT NULL,
            quantity   bigint NOT NULL CHECK (quantity > 0),
            slots      smallint[] NOT NULL DEFAULT '{}',
            parts      bigint[] NOT NULL DEFAULT '{}',
            status     text NOT NULL DEFAULT 'reserved' CHECK (status IN ('reserved', 'committed', 'released')),
            expires_at timestamptz NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_promotion_reservations PRIMARY KEY (holder, subject)
        );
        CREATE INDEX ix_promotion_reservations_due ON promotion_reservations (expires_at) WHERE status = 'reserved';

        CREATE TABLE promotion_orders (
            order_id    text PRIMARY KEY,
            contact_id  bigint,
            status      text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'confirmed', 'cancelled', 'expired')),
            body_hash   text NOT NULL,
            request     jsonb NOT NULL,
            quote       jsonb NOT NULL,
            subtotal    bigint NOT NULL,
            discount    bigint NOT NULL,
            total       bigint NOT NULL,
            points_used bigint NOT NULL DEFAULT 0,
            program_id  bigint,
            expires_at  timestamptz NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now(),
            updated_at  timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX ix_promotion_orders_contact ON promotion_orders (contact_id, created_at DESC, order_id DESC)
            WHERE contact_id IS NOT NULL;
        CREATE INDEX ix_promotion_orders_created ON promotion_orders (created_at DESC, order_id DESC);
        CREATE INDEX ix_promotion_orders_pending ON promotion_orders (expires_at) WHERE status = 'pending';

        CREATE TABLE promotion_usage (
            contact_id   bigint NOT NULL,
            promotion_id bigint NOT NULL,
            order_id     text NOT NULL,
            discount     bigint NOT NULL,
            used_at      timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_promotion_usage PRIMARY KEY (contact_id, promotion_id, order_id)
        ) PARTITION BY HASH (contact_id);
        CREATE INDEX ix_promotion_usage_promotion ON promotion_usage (promotion_id);
    """)
    for i in range(PARTITIONS):
        op.execute(f"CREATE TABLE promotion_usage_p{i} PARTITION OF promotion_usage "
                   f"FOR VALUES WITH (MODULUS {PARTITIONS}, REMAINDER {i})")
    op.execute("""
        INSERT INTO promotion_stock_slots (subject, slot, total, reserved, used)
        SELECT 'reward:' || r.id, 0,
               r.stock + coalesce(sum(v.quantity) FILTER (WHERE v.status IN ('reserved', 'fulfilled')), 0),
               coalesce(sum(v.quantity) FILTER (WHERE v.status = 'reserved'), 0),
               coalesce(sum(v.quantity) FILTER (WHERE v.status = 'fulfilled'), 0)
        FROM ledger_rewards r LEFT JOIN ledger_reward_reservations v ON v.reward_id = r.id
        GROUP BY r.id, r.stock;
        INSERT INTO promotion_reservations (holder, subject, quantity, slots, parts, status, expires_at)
        SELECT 'redemption:' || order_id, 'reward:' || reward_id, quantity, '{0}', ARRAY[CAST(quantity AS bigint)],
               CASE status WHEN 'reserved' THEN 'reserved' WHEN 'fulfilled' THEN 'committed' ELSE 'released' END,
               now() + interval '30 days'
        FROM ledger_reward_reservations;
        ALTER TABLE ledger_rewards ALTER COLUMN stock SET DEFAULT 0;
        COMMENT ON COLUMN ledger_rewards.stock IS
            'Unused since 0017: a reward''s stock is promotion_stock subject reward:{id}';
        ALTER TABLE ledger_rewards
            ADD COLUMN kind text NOT NULL DEFAULT 'item'
                CONSTRAINT ck_ledger_rewards_kind CHECK (kind IN ('item', 'coupon')),
            ADD COLUMN coupon_template_id bigint REFERENCES coupon_templates (id),
            ADD CONSTRAINT ck_ledger_rewards_coupon CHECK ((kind = 'coupon') = (coupon_template_id IS NOT NULL));
        ALTER TABLE ledger_redemptions ADD COLUMN coupon_codes text[];
    """)


def downgrade() -> None:
    op.execute("""
        UPDATE ledger_rewards r SET stock = s.total - s.reserved - s.used
        FROM promotion_stock s WHERE s.subject = 'reward:' || r.id;
        INSERT INTO ledger_reward_reservations (order_id, reward_id, quantity, status)
        SELECT substr(holder, length('redemption:') + 1), CAST(split_part(subject, ':', 2) AS bigint), quantity,
               CASE status WHEN 'committed' THEN 'fulfilled' ELSE status END
        FROM promotion_reservations WHERE subject LIKE 'reward:%'
        ON CONFLICT (order_id, reward_id) DO UPDATE SET status = excluded.status;
        ALTER TABLE ledger_redemptions DROP COLUMN coupon_codes;
        ALTER TABLE ledger_rewards DROP COLUMN coupon_template_id, DROP COLUMN kind;
        ALTER TABLE ledger_rewards ALTER COLUMN stock DROP DEFAULT;
        COMMENT ON COLUMN ledger_rewards.stock IS NULL;
        DROP VIEW promotion_stock;
        DROP TABLE promotion_usage, promotion_orders, promotion_reservations, promotion_stock_slots, coupons,
            promotions, coupon_templates, promotions_version
    """)
