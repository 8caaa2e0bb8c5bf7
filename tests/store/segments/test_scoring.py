"""Computed traits in SQL equal the domain's rules, and rules can query them as `scores.*`."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.scoring import DailyCount, LeadModel, RfmModel, cadence, churn_risk, lead_score, lifecycle_stage, rfm
from domain.segments.rules import All, Condition, FieldRef, parse_rule
from store.db import transaction
from store.segments.index import PostgresSegmentIndex
from store.segments.scoring import refresh_scores

NOW = datetime.now(UTC).replace(microsecond=0)
# (email, traits, [(event, days ago, count, amount)])
PEOPLE = [
    ("a@x.io", {"plan": "pro"}, [("demo_requested", 1, 2, None), ("$page", 3, 10, None)]),
    (None, {}, [("app_open", 60, 1, None)]),
    ("c@x.io", {"phone": None}, [("order_paid", 2, 6, 400.0), ("app_open", 9, 3, None), ("app_open", 16, 1, None)]),
    (None, {"x": 1}, [("order_paid", 250, 1, 20.0), ("form_submitted", 0, 1, None)]),
    (None, {}, []),
]


async def test_sql_scores_match_the_domain_rules(sessions: async_sessionmaker[AsyncSession]) -> None:
    tag = f"score-{uuid.uuid4().hex[:8]}"
    ids = []
    async with transaction(sessions) as s:
        for n, (email, traits, activity) in enumerate(PEOPLE):
            cid = await s.scalar(text("INSERT INTO contacts (user_id, email, traits) VALUES (:u, :e, CAST(:t AS jsonb))"
                                      " RETURNING id"),
                                 {"u": f"{tag}-{n}", "e": email, "t": json.dumps(traits | {"tag": tag})})
            ids.append(cid)
            for i, (event, days, count, amount) in enumerate(activity):
                at = NOW - timedelta(days=days)
                await s.execute(text("INSERT INTO contact_event_daily"
                                     " (contact_id, event, day, count, first_at, last_at)"
                                     " VALUES (:c, :e, :d, :n, :t, :t)"),
                                {"c": cid, "e": event, "d": at.date(), "n": count, "t": at})
                for k in range(count if amount is not None else 0):
                    await s.execute(text("INSERT INTO events"
                                         " (contact_id, message_id, type, event, properties, timestamp)"
                                         " VALUES (:c, :m, 'track', :e, CAST(:p AS jsonb), :t)"),
                                    {"c": cid, "m": f"{tag}-{n}-{i}-{k}", "e": event,
                                     "p": json.dumps({"amount": amount}), "t": at})
        assert await refresh_scores(s, NOW, touched=ids) == len(ids)
        rows = {r.contact_id: r for r in await s.execute(text("SELECT * FROM contact_scores "
                                                              "WHERE contact_id = ANY(:i)"), {"i": ids})}

    model, rfm_model = LeadModel(), RfmModel()
    for cid, (email, traits, activity) in zip(ids, PEOPLE, strict=True):
        daily = [DailyCount(e, d, c) for e, d, c, _ in activity]
        present = [k for k, v in (traits | {"tag": tag}).items() if v is not None] + (["email"] if email else [])
        score = lead_score(model, daily, present)
        orders = [(d, c, a) for e, d, c, a in activity if e == "order_paid" and d <= rfm_model.window_days]
        row = rows[cid]
        assert row.lead_score == pytest.approx(score)
        assert row.lifecycle_stage == lifecycle_stage(model, score, any(e == "order_paid" for e, *_ in activity))
        recency = min((d for d, _, _ in orders), default=None)
        frequency = sum(c for _, c, _ in orders)
        assert row.rfm_tier == rfm(rfm_model, recency, frequency, sum(c * a for _, c, a in orders))
        if activity:
            days = sorted({d for _, d, _, _ in activity})
            assert row.churn_risk == pytest.approx(churn_risk(days[0], cadence(days[-1], days[0], len(days))))
        else:
            assert row.churn_risk is None

    async with sessions() as s:
        rule = All((Condition(FieldRef("traits", ("tag",), "json"), "eq", tag),
                    parse_rule({"field": "scores.lifecycle_stage", "op": "eq", "value": "customer"})))
        assert await PostgresSegmentIndex().page(s, rule, NOW, after=0, limit=10) == [ids[2], ids[3]]
