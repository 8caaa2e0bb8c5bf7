"""Fixtures for segment tests: a small world of contacts with known facts, and an Elasticsearch
imitation (noida-db) on 127.0.0.1 for the Elasticsearch backend."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.segments.evaluate import ContactFacts, Occurrence
from nudge.embedded import free_port
from store.db import transaction
from store.segments.definitions import create_segment
from store.segments.membership import add_members
from store.segments.refresh import refresh_rollup

NOW = datetime.now(UTC).replace(microsecond=0)


def ago(days: float, hours: float = 0) -> datetime:
    return NOW - timedelta(days=days, hours=hours)


# Each contact: columns, traits, identities, scores and events as (name, days ago, properties, context).
CONTACTS: list[dict[str, Any]] = [
    {"email": "ada@example.com", "phone": "+447700900001", "created": 3,
     "traits": {"plan": "pro", "age": 34, "tags": ["vip", "beta"], "addr": {"city": "Oslo"}, "name": "Ada L. (ops)",
                "badges": ["gold"]},
     "identities": {"wechat_openid": ["o-ada"]}, "scores": {"lead_score": 42.5, "lifecycle_stage": "lead"},
     "events": [("order_paid", 1, {"amount": 150, "currency": "USD"}, {}), ("order_paid", 5, {"amount": 120}, {}),
                ("app_open", 20, {}, {})]},
    {"email": None, "phone": "+4712345678", "created": 40, "traits": {"plan": "free", "age": 19},
     "events": [("order_paid", 2, {"amount": 50}, {}), ("order_paid", 3, {"amount": 60}, {}), ("app_open", 1, {}, {})]},
    {"email": "bob@example.org", "created": 100, "traits": {"plan": "pro", "age": "34", "tags": "vip"},
     "events": [("order_paid", 40, {"amount": 300}, {}), ("app_open", 3, {}, {})]},
    # Mixed-type traits: `addr` is an object for Ada and a string here, `born` looks like a date here and not for
    # Fay, Gus has a key with a dot in it, Hal's `badges` are objects where Ada's are strings.
    {"email": "cy@example.com", "created": 10, "traits": {"addr": "Oslo", "born": "1990-05-01"},
     "identities": {"wechat_openid": ["o-cy"]}, "events": []},
    {"email": "dee@shop.io", "created": 1, "traits": {"plan": "Pro", "vip": True, "score": 7.5},
     "scores": {"lead_score": 80, "lifecycle_stage": "mql"},
     "events": [("order_paid", 10, {"amount": 120}, {}), ("order_paid", 11, {"amount": 80}, {}),
                ("order_paid", 12, {"amount": 200, "items": [{"sku": "a1"}, {"sku": "b2"}]}, {}),
                ("$page", 0, {"path": "/pricing"}, {})]},
    {"email": "eve@example.com", "created": 200, "traits": {"plan": None, "tags": [], "vip": False},
     "events": [("app_open", 15, {}, {}), ("order_paid", 29, {"amount": 101, "currency": "EUR"}, {}),
                ("order_paid", 30, {"amount": 500, "currency": "USD"}, {})]},
    {"email": "fay@example.com", "created": 60,
     "traits": {"plan": "team", "name": "Ann-Marie", "age": 45.5, "born": "in spring"},
     "events": [("signup", 100, {}, {})]},
    {"email": "gus@example.com", "phone": "+15550100", "created": 5,
     "traits": {"plan": "pro", "age": 60, "addr.city": "Oslo"},
     "identities": {"device_id": ["d-1", "d-2"]},
     "events": [("app_open", 0, {}, {}), ("order_paid", 0, {"amount": 1000}, {"ip": "10.0.0.1"})]},
    {"email": "hal@example.com", "created": 25,
     "traits": {"plan": "pro", "age": 34, "name": "Ådne", "badges": [{"kind": "gold"}]},
     "events": [("app_open", 14, {}, {}), ("app_open", 16, {}, {}), *[("login", d, {}, {}) for d in range(6)]]},
]


@dataclass
class World:
    tag: str
    now: datetime
    ids: list[int]
    facts: dict[int, ContactFacts]
    manual_segment_id: int
    extra: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="session")
async def segment_world(sessions: async_sessionmaker[AsyncSession]) -> World:
    tag = f"seg-{uuid.uuid4().hex[:8]}"
    ids: list[int] = []
    facts: dict[int, ContactFacts] = {}
    async with transaction(sessions) as s:
        for n, spec in enumerate(CONTACTS):
            traits = spec["traits"] | {"tag": tag}
            occurrences = [Occurrence(name, ago(days, 1 if days else 0), props, ctx)
                           for name, days, props, ctx in spec["events"]]
            last_seen = max((o.timestamp for o in occurrences), default=None)
            row = (await s.execute(text(
                "INSERT INTO contacts (user_id, email, phone, traits, created_at, updated_at, last_seen_at)"
                " VALUES (:u, :e, :p, CAST(:t AS jsonb), :c, :c, :l) RETURNING id, created_at, updated_at"),
                {"u": f"{tag}-{n}", "e": spec.get("email"), "p": spec.get("phone"), "t": json.dumps(traits),
                 "c": ago(spec["created"]), "l": last_seen})).one()
            cid = row.id
            ids.append(cid)
            identities = {"user_id": [f"{tag}-{n}"]} | spec.get("identities", {})
            for kind, values in identities.items():
                for value in values:
                    await s.execute(text("INSERT INTO identities (kind, value, contact_id) VALUES (:k, :v, :c)"),
                                    {"k": kind, "v": value if kind == "user_id" else f"{tag}-{value}", "c": cid})
            identities = {k: [v if k == "user_id" else f"{tag}-{v}" for v in vs] for k, vs in identities.items()}
            for i, o in enumerate(occurrences):
                kind = "page" if o.event == "$page" else "track"
                await s.execute(text(
                    "INSERT INTO events (contact_id, message_id, type, event, properties, context, timestamp)"
                    " VALUES (:c, :m, :t, :e, CAST(:p AS jsonb), CAST(:x AS jsonb), :ts)"),
                    {"c": cid, "m": f"{tag}-{n}-{i}", "t": kind, "e": None if kind == "page" else o.event,
                     "p": json.dumps(o.properties), "x": json.dumps(o.context), "ts": o.timestamp})
            if spec.get("scores"):
                await s.execute(text("INSERT INTO contact_scores (contact_id, lead_score, lifecycle_stage)"
                                     " VALUES (:c, :l, :s)"),
                                {"c": cid, "l": spec["scores"]["lead_score"], "s": spec["scores"]["lifecycle_stage"]})
            facts[cid] = ContactFacts(
                fields={"id": cid, "user_id": f"{tag}-{n}", "email": spec.get("email"), "phone": spec.get("phone"),
                        "timezone": None, "created_at": row.created_at, "updated_at": row.updated_at,
                        "last_seen_at": last_seen},
                traits=traits, identities=identities, scores=spec.get("scores", {}), events=occurrences)
        await s.execute(text("""
            INSERT INTO contact_event_daily (contact_id, event, day, count, first_at, last_at)
            SELECT contact_id, CASE type WHEN 'track' THEN event ELSE '$' || type END,
                   (timestamp AT TIME ZONE 'UTC')::date, count(*), min(timestamp), max(timestamp)
            FROM events WHERE contact_id = ANY(:ids) GROUP BY 1, 2, 3"""), {"ids": ids})
        await refresh_rollup(s, ids)
        manual = await create_segment(s, name=f"{tag} manual", kind="manual", rule=None)
        await add_members(s, manual, [ids[0], ids[2]], NOW)
    for cid in (ids[0], ids[2]):
        facts[cid].segments.add(manual.id)
    return World(tag=tag, now=NOW, ids=ids, facts=facts, manual_segment_id=manual.id)


def noida_binary() -> str:
    found = shutil.which("noida-db") or str(Path(sys.executable).parent / "noida-db")
    return found


@pytest.fixture(scope="session")
def elasticsearch_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """noida-db (an Elasticsearch 8 REST imitation) with only its Elasticsearch service, on a free port."""
    data = tmp_path_factory.mktemp("noida")
    port = free_port()
    proc = subprocess.Popen(
        [noida_binary(), "start", "--data-dir", str(data), "--host", "127.0.0.1", "--only", "elasticsearch",
         "--elasticsearch-port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"noida-db exited with {proc.returncode}")
        time.sleep(0.1)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        raise RuntimeError("noida-db did not start")
    yield url
    # The launcher starts the server binary as a child: stop the whole process group it leads.
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
