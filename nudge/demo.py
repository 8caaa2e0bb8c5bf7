"""`nudge demo`: realistic demo data loaded through the public API, then a broadcast run end to end."""

from __future__ import annotations

import asyncio
import random

import httpx
from rich.console import Console
from rich.panel import Panel

from domain.keys import Scope
from nudge.settings import Settings
from store import keys
from store.db import make_engine, make_sessionmaker, transaction

FIRST = ["Ada", "Grace", "Alan", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Frances", "Edsger",
         "Mei", "Wei", "Yuki", "Priya", "Omar", "Sofia", "Lucas", "Amara", "Noah", "Ines"]
ZONES = ["Europe/London", "Asia/Shanghai", "America/New_York", "Europe/Berlin", "Asia/Kolkata", "America/Sao_Paulo"]
PLANS = ["free", "pro", "team"]


def demo_contacts(n: int = 40, seed: int = 7) -> list[dict[str, object]]:
    rng = random.Random(seed)
    people = []
    for i in range(n):
        first = FIRST[i % len(FIRST)]
        people.append({
            "user_id": f"demo-{i:03d}", "email": f"{first.lower()}.{i:03d}@demo.nudge.dev",
            "timezone": rng.choice(ZONES),
            "traits": {"first_name": first, "plan": rng.choice(PLANS), "orders": rng.randint(0, 12)},
        })
    return people


async def _demo_key(settings: Settings) -> str:
    engine = make_engine(settings.database_url or "", pool_size=1)
    try:
        async with transaction(make_sessionmaker(engine)) as s:
            return (await keys.create_key(s, "demo loader", [Scope.ADMIN])).token
    finally:
        await engine.dispose()


async def load_demo(settings: Settings, console: Console) -> None:
    token = await _demo_key(settings)
    base = settings.resolved_public_url
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as api:
        with console.status("Loading demo contacts…"):
            ids = []
            for person in demo_contacts():
                r = await api.post("/v1/contacts", json=person)
                r.raise_for_status()
                ids.append(r.json()["id"])
        console.print(f"[green]✓[/] {len(ids)} demo contacts")
        r = await api.post("/v1/campaigns", json={
            "name": "Welcome to Nudge",
            "subject": "{{ contact.first_name }}, welcome aboard",
            "body": "Hi {{ contact.first_name }},\n\nThanks for joining on the {{ contact.plan }} plan. "
                    "You have placed {{ contact.orders }} orders so far.\n\n— The Nudge demo",
            "html": "<h1>Hi {{ contact.first_name }}</h1><p>Thanks for joining on the <b>{{ contact.plan }}</b> plan.</p>",
            "audience": {"contact_ids": ids},
        })
        r.raise_for_status()
        campaign = r.json()
        (await api.post(f"/v1/campaigns/{campaign['id']}/launch")).raise_for_status()
        with console.status("Running the demo broadcast through Temporal…"):
            for _ in range(600):
                body = (await api.get(f"/v1/campaigns/{campaign['id']}")).json()
                if body["status"] == "completed":
                    break
                await asyncio.sleep(0.2)
        run = body["run"] or {}
        console.print(f"[green]✓[/] Demo broadcast #{campaign['id']}: {run.get('sent', 0)} sent, "
                      f"{run.get('failed', 0)} failed ({body['status']})")
    lines = [
        f"API docs        {base}/docs",
        f"Dashboards      {base}/dashboards  (sign in with the admin key printed above)",
        f"Mail sink       {base}/dashboards/inbox",
    ]
    if settings.temporal_ui_url:
        lines.append(f"Temporal UI     {settings.temporal_ui_url}/namespaces/default/workflows")
    console.print(Panel("\n".join(lines), title="Nudge demo is running", expand=False))
