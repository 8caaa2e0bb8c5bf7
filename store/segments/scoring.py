"""Computed traits for every contact in one statement: lead score and stage, RFM tier, churn risk.

The SQL mirrors domain/scoring.py (tests compare the two); results land in `contact_scores`, which rules
query as `scores.<name>`. Run it from a schedule or after imports; `touched` limits it to some contacts.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.scoring import DEFAULT_CADENCE_DAYS, LeadModel, RfmModel

SCORES = """
WITH pts AS (
    SELECT * FROM unnest(CAST(:event_names AS text[]), CAST(:event_points AS float8[])) AS p(event, points)
), act AS (
    SELECT d.contact_id,
           sum(d.count * coalesce(p.points, 0) * power(0.5, greatest(:today - d.day, 0) / :half_life)) AS event_score,
           min(d.day) AS first_day, max(d.day) AS last_day, count(DISTINCT d.day) AS active_days,
           bool_or(d.event = :customer_event) AS customer,
           max(d.day) FILTER (WHERE d.event = :customer_event AND d.day >= :rfm_since) AS last_order,
           coalesce(sum(d.count) FILTER (WHERE d.event = :customer_event AND d.day >= :rfm_since), 0) AS orders
    FROM contact_event_daily d LEFT JOIN pts p ON p.event = d.event
    WHERE {scope_daily} GROUP BY d.contact_id
), money AS (
    SELECT e.contact_id, sum((e.properties->>'amount')::float8) AS amount
    FROM events e
    WHERE e.type = 'track' AND e.event = :customer_event AND e.timestamp >= :rfm_since_ts
      AND jsonb_typeof(e.properties->'amount') = 'number' AND {scope_events}
    GROUP BY e.contact_id
), base AS (
    SELECT c.id, a.customer, a.orders, m.amount,
           round((coalesce(a.event_score, 0) + (
               SELECT coalesce(sum(t.points), 0)
               FROM unnest(CAST(:trait_names AS text[]), CAST(:trait_points AS float8[])) AS t(name, points)
               WHERE (t.name = 'email' AND c.email IS NOT NULL) OR (t.name = 'phone' AND c.phone IS NOT NULL)
                  OR (t.name NOT IN ('email', 'phone') AND c.traits ? t.name AND c.traits -> t.name <> 'null'::jsonb)
           ))::numeric, 6)::float8 AS score,
           :today - a.last_order AS recency, :today - a.last_day AS silent,
           CASE WHEN a.active_days >= 2 THEN greatest((a.last_day - a.first_day)::float8 / (a.active_days - 1), 1)
                ELSE :default_cadence END AS cadence
    FROM contacts c LEFT JOIN act a ON a.contact_id = c.id LEFT JOIN money m ON m.contact_id = c.id
    WHERE {scope_contacts}
), banded AS (
    SELECT b.*,
           5 - ((b.recency > :r1)::int + (b.recency > :r2)::int + (b.recency > :r3)::int + (b.recency > :r4)::int) AS r,
           1 + ((b.orders >= :f1)::int + (b.orders >= :f2)::int + (b.orders >= :f3)::int + (b.orders >= :f4)::int) AS f,
           1 + ((coalesce(b.amount, 0) >= :m1)::int + (coalesce(b.amount, 0) >= :m2)::int
                + (coalesce(b.amount, 0) >= :m3)::int + (coalesce(b.amount, 0) >= :m4)::int) AS m
    FROM base b
)
INSERT INTO contact_scores AS s (contact_id, lead_score, lifecycle_stage, rfm_tier, recency_days, frequency, monetary,
                                 churn_risk, computed_at)
SELECT id, score,
       CASE WHEN coalesce(customer, false) THEN 'customer' WHEN score >= :mql_at THEN 'mql'
            WHEN score >= :lead_at THEN 'lead' ELSE 'subscriber' END,
       CASE WHEN recency IS NULL OR orders = 0 THEN NULL
            WHEN r >= 4 AND f >= 4 THEN 'champions' WHEN r >= 4 AND f = 1 THEN 'new'
            WHEN r >= 3 AND f >= 3 THEN 'loyal' WHEN r <= 2 AND (f >= 3 OR m >= 4) THEN 'at_risk'
            WHEN r <= 2 THEN 'hibernating' ELSE 'promising' END,
       recency, coalesce(orders, 0), coalesce(amount, 0),
       CASE WHEN silent IS NULL THEN NULL
            ELSE round((1 - power(0.5, greatest(silent, 0) / (2 * cadence)))::numeric, 6)::float8 END,
       :now
FROM banded
ON CONFLICT (contact_id) DO UPDATE SET lead_score = excluded.lead_score, lifecycle_stage = excluded.lifecycle_stage,
    rfm_tier = excluded.rfm_tier, recency_days = excluded.recency_days, frequency = excluded.frequency,
    monetary = excluded.monetary, churn_risk = excluded.churn_risk, computed_at = excluded.computed_at
"""


async def refresh_scores(session: AsyncSession, now: datetime, *, touched: Sequence[int] | None = None,
                         lead: LeadModel | None = None, rfm: RfmModel | None = None) -> int:
    """Recompute computed traits (all contacts, or `touched`); returns how many rows were written."""
    lead, rfm = lead or LeadModel(), rfm or RfmModel()
    today = now.astimezone(UTC).date()
    since = today - timedelta(days=rfm.window_days)
    scoped = touched is not None
    sql = SCORES.format(
        scope_daily="d.contact_id = ANY(:touched)" if scoped else "true",
        scope_events="e.contact_id = ANY(:touched)" if scoped else "true",
        scope_contacts="c.id = ANY(:touched)" if scoped else "true",
    )
    params = {
        "event_names": list(lead.event_points), "event_points": [float(v) for v in lead.event_points.values()],
        "trait_names": list(lead.trait_points), "trait_points": [float(v) for v in lead.trait_points.values()],
        "today": today, "half_life": float(lead.half_life_days), "customer_event": lead.customer_event,
        "rfm_since": since, "rfm_since_ts": datetime(since.year, since.month, since.day, tzinfo=UTC),
        "default_cadence": DEFAULT_CADENCE_DAYS, "lead_at": lead.lead_at, "mql_at": lead.mql_at, "now": now,
        **{f"r{i + 1}": v for i, v in enumerate(rfm.recency)}, **{f"f{i + 1}": v for i, v in enumerate(rfm.frequency)},
        **{f"m{i + 1}": v for i, v in enumerate(rfm.monetary)},
    }
    if scoped:
        params["touched"] = list(touched or [])
    result = await session.execute(text(sql), params)
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
