"""`nudge demo`: realistic demo data loaded through the public API, then a broadcast run end to end."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import httpx
from rich.console import Console
from rich.panel import Panel

from api.runtime import create_api_key
from core.settings import Settings
from domain.keys import Scope

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


def demo_events(people: list[dict[str, object]], now: datetime, seed: int = 11) -> list[dict[str, object]]:
    """A month of app opens and paid orders; message ids are stable so a second demo adds nothing."""
    rng = random.Random(seed)
    events: list[dict[str, object]] = []
    for person in people:
        uid = str(person["user_id"])
        for n in range(rng.randint(1, 8)):
            when = now - timedelta(days=rng.uniform(0, 30))
            events.append({"type": "track", "userId": uid, "event": "app_open", "messageId": f"demo-{uid}-open-{n}",
                           "timestamp": when.isoformat(),
                           "properties": {"screen": rng.choice(["home", "shop", "tasks"])}})
        for n in range(rng.choice([0, 0, 1, 2, 3, 4])):
            when = now - timedelta(days=rng.uniform(0, 30))
            events.append({"type": "track", "userId": uid, "event": "order_paid", "messageId": f"demo-{uid}-order-{n}",
                           "timestamp": when.isoformat(),
                           "properties": {"amount": rng.choice([49, 120, 180, 260]),
                                          "product_type": rng.choice(["11", "12", "30"])}})
    return events


async def _events_segment_points(api: httpx.AsyncClient, base: str, ingest: str, ids: list[int],
                                 console: Console) -> int:
    """Segment-format events, a rule segment over them, and check-in points on a ledger program (its id)."""
    people = demo_contacts()
    events = demo_events(people, datetime.now(UTC))
    async with httpx.AsyncClient(base_url=base, auth=(ingest, ""), timeout=30) as segment:
        for i in range(0, len(events), 100):
            (await segment.post("/v1/batch", json={"batch": events[i:i + 100]})).raise_for_status()
    console.print(f"[green]✓[/] {len(events)} events through the Segment-compatible /v1/batch")

    r = await api.post("/v1/segments", json={"kind": "rule", "name": "Repeat buyers (2+ orders over 100 in 30 days)",
                                             "rule": {"event": "order_paid", "count": {"op": "gte", "value": 2},
                                                      "within_last": "30d",
                                                      "where": {"field": "properties.amount", "op": "gt",
                                                                "value": 100}}})
    r.raise_for_status()
    segment_id = r.json()["id"]
    count = (await api.get(f"/v1/segments/{segment_id}/count")).json()
    console.print(f"[green]✓[/] Segment #{segment_id} 'Repeat buyers': {count.get('count', count)} members")

    r = await api.post("/v1/ledger/programs", json={"name": "Coins", "unit": "coins", "expiry_months": 12,
                                                     "retention_months": 6})
    if r.status_code == 409:  # a second demo reuses the program (and its postings are replays)
        listed = (await api.get("/v1/ledger/programs")).json()
        programs = listed["items"] if isinstance(listed, dict) else listed
        program = next(p for p in programs if p["name"] == "Coins")
    else:
        r.raise_for_status()
        program = r.json()
    today = datetime.now(UTC).date()
    credited = 0
    for contact in ids[:10]:
        for back in range(3):
            day = today - timedelta(days=back)
            r = await api.post("/v1/ledger/postings", json={
                "program_id": program["id"], "kind": "credit", "contact_id": contact, "amount": 10,
                "reference": f"reward:checkin:{contact}:{day.isoformat()}:1", "memo": "Daily check-in"})
            r.raise_for_status()
            credited += 10
    # A balance imported from an older loyalty system, earned 12 months ago (so it expires at the end of this
    # month: the points dashboard shows it as expiring). Coins buy coupons later (`_coupon_promotion`).
    year_ago = f"{today.year - 1}-{today.month:02d}"
    for contact in ids[:4]:
        (await api.post("/v1/ledger/postings", json={
            "program_id": program["id"], "kind": "credit", "contact_id": contact, "amount": 25,
            "earned_month": year_ago, "reference": f"import:legacy:{contact}", "memo": "Imported balance"})
         ).raise_for_status()
    console.print(f"[green]✓[/] Points program #{program['id']} 'Coins': {credited} coins for daily check-ins, "
                  f"100 imported (expiring this month)")
    return int(program["id"])


async def _coupon_promotion(api: httpx.AsyncClient, ids: list[int], program_id: int, console: Console) -> None:
    """A ¥20-off-over-¥100 coupon issued to the first contacts, a storewide 满减 beside it, one order that uses a
    coupon (confirmed), and ¥10 coupons bought with coins through the redemption saga: the promotions dashboard has
    usage, cost and a redeem rate to show, the points dashboard its redemptions."""
    template = await api.post("/v1/coupon-templates", json={"name": "¥20 off over ¥100", "valid_days": 30,
                                                             "per_contact_limit": 1, "stock": 1000})
    template.raise_for_status()
    template_id = template.json()["id"]
    for body in ({"name": "¥20 coupon", "kind": "amount_off", "threshold": 10000, "amount": 2000,
                  "coupon_template_id": template_id},
                 {"name": "¥30 off over ¥300", "kind": "amount_off", "threshold": 30000, "amount": 3000,
                  "stacking_group": "storewide", "exclusivity": "group"}):
        (await api.post("/v1/promotions", json=body)).raise_for_status()
    codes = []
    for contact in ids[:10]:
        r = await api.post("/v1/coupons", json={"template_id": template_id, "contact_id": contact,
                                                "reference": f"demo:welcome:{contact}"})
        r.raise_for_status()
        codes.append(r.json()["code"])
    order = {"order_id": f"demo-order-{ids[0]}", "contact_id": ids[0], "coupons": [codes[0]],
             "lines": [{"sku": "tee", "category": "apparel", "unit_price": 9900, "quantity": 2},
                       {"sku": "cap", "category": "apparel", "unit_price": 4900, "quantity": 1}]}
    placed = await api.post("/v1/orders", json=order)
    placed.raise_for_status()
    (await api.post(f"/v1/orders/{order['order_id']}/confirm")).raise_for_status()
    console.print(f"[green]✓[/] Coupon promotion: {len(codes)} coupons issued, one order paid "
                  f"{placed.json()['total']} cents after {placed.json()['discount']} off")

    sold = await api.post("/v1/coupon-templates", json={"name": "¥10 off (bought with coins)", "valid_days": 30,
                                                         "per_contact_limit": 2, "stock": 500})
    sold.raise_for_status()
    reward = await api.post("/v1/ledger/rewards", json={"program_id": program_id, "name": "¥10 coupon", "cost": 15,
                                                         "stock": 100, "kind": "coupon",
                                                         "coupon_template_id": sold.json()["id"]})
    reward.raise_for_status()
    orders = [f"demo-coins-{reward.json()['id']}-{contact}" for contact in ids[:3]]
    for order_id, contact in zip(orders, ids, strict=False):
        (await api.post("/v1/redemptions", json={"order_id": order_id, "contact_id": contact,
                                                 "reward_id": reward.json()["id"]})).raise_for_status()
    bought: list[str] = []
    with console.status("Buying coupons with coins (the redemption saga, through Temporal)…"):
        for order_id in orders:
            for _ in range(300):
                order = (await api.get(f"/v1/redemptions/{order_id}")).json()
                if order["status"] != "pending":  # completed, failed or cancelled
                    break
                await asyncio.sleep(0.1)
            bought += order.get("coupon_codes") or []
    console.print(f"[green]✓[/] Coins: {len(bought)} ¥10 coupons bought for 15 coins each "
                  f"({', '.join(bought) or 'still running'})")


DEMO_TASKS = (
    {"name": "Daily check-in", "description": "Open the app every day: 5, 5, 10, 10, 15, 15, 30 coins, a missed "
                                              "day starts again", "kind": "streak", "user_action": "check_in",
     "num": 1, "reward_count": 5, "streak_rewards": [5, 5, 10, 10, 15, 15, 30], "threshold": 1,
     "period": {"kind": "daily", "zone": "Asia/Shanghai"}},
    {"name": "Order of ¥100 or more", "description": "20 coins for a paid order of 100 or more, once a day",
     "user_action": "order_paid", "filter": "event.properties.amount >= 100", "num": 1, "reward_count": 20,
     "threshold": 1, "budget": 100_000, "period": {"kind": "daily", "zone": "Asia/Shanghai"}},
)


async def _tasks(api: httpx.AsyncClient, base: str, ingest: str, console: Console) -> None:
    """The seed examples as tasks (a daily check-in streak and a purchase task) on the Coins program, approved so
    their lifecycle workflows activate them, and today's check-ins and an order from a few contacts."""
    listed = (await api.get("/v1/ledger/programs")).json()
    programs = listed["items"] if isinstance(listed, dict) else listed
    coins = next(p for p in programs if p["name"] == "Coins")
    existing = {t["definition"]["name"] for t in (await api.get("/v1/tasks", params={"limit": 500})).json()}
    approved = []
    for body in DEMO_TASKS:
        if body["name"] in existing:  # a second demo keeps the first one's tasks
            continue
        r = await api.post("/v1/tasks", json=body | {"program_id": coins["id"]})
        r.raise_for_status()
        (await api.post(f"/v1/tasks/{r.json()['id']}/approve")).raise_for_status()
        approved.append(r.json()["id"])
    for _ in range(100):  # their lifecycle workflows activate them
        statuses = [(await api.get(f"/v1/tasks/{t}")).json()["status"] for t in approved]
        if all(s == "active" for s in statuses):
            break
        await asyncio.sleep(0.1)
    now = datetime.now(UTC)
    people = demo_contacts()[:10]
    events = [{"type": "track", "userId": str(p["user_id"]), "event": "check_in",
               "messageId": f"demo-{p['user_id']}-checkin-{now.date()}", "timestamp": now.isoformat()} for p in people]
    events.append({"type": "track", "userId": str(people[0]["user_id"]), "event": "order_paid",
                   "messageId": f"demo-{people[0]['user_id']}-order-{now.date()}", "timestamp": now.isoformat(),
                   "properties": {"amount": 188}})
    async with httpx.AsyncClient(base_url=base, auth=(ingest, ""), timeout=30) as segment:
        (await segment.post("/v1/batch", json={"batch": events})).raise_for_status()
    console.print(f"[green]✓[/] Tasks: daily check-in streak and ¥100+ order on 'Coins'; {len(people)} check-ins "
                  "today (rewards on /dashboards/tasks, a contact's view at GET /v1/contacts/{id}/tasks)")


def abandoned_cart(program_id: int) -> dict[str, object]:
    """`cart_updated` → wait 1 h for `order_paid` → if none, email; wait 24 h → if none, SMS with a points offer."""
    return {"reentry": {"policy": "per_days", "days": 7}, "goal": {"event": "order_paid"}, "nodes": [
        {"id": "cart", "type": "trigger", "event": "cart_updated", "when": "event.properties.total > 0",
         "next": "hour"},
        {"id": "hour", "type": "wait_for_event", "event": "order_paid", "timeout_seconds": 3600, "next": "paid",
         "timeout_next": "email"},
        {"id": "email", "type": "send", "chain": ["email"], "topic": "cart", "content": {"email": {
            "subject": "You left something in your cart", "text": "Your cart is waiting for you."}}, "next": "day"},
        {"id": "day", "type": "wait_for_event", "event": "order_paid", "timeout_seconds": 86400, "next": "paid",
         "timeout_next": "offer"},
        {"id": "offer", "type": "grant", "program_id": program_id, "amount": 50, "next": "sms"},
        {"id": "sms", "type": "send", "chain": ["sms"], "topic": "cart", "content": {"sms": {
            "text": "50 coins are in your account: finish your order today."}}, "next": "gone"},
        {"id": "paid", "type": "exit"},
        {"id": "gone", "type": "exit"}]}


async def _journey(api: httpx.AsyncClient, base: str, ingest: str, console: Console) -> None:
    """The abandoned-cart journey, published (its JourneyWorkflow starts), and two carts: one paid, one not."""
    listed = (await api.get("/v1/ledger/programs")).json()
    programs = listed["items"] if isinstance(listed, dict) else listed
    coins = next(p for p in programs if p["name"] == "Coins")
    existing = [j for j in (await api.get("/v1/journeys", params={"limit": 500})).json()
                if j["name"] == "Abandoned cart"]
    if existing:  # a second demo keeps the first one's journey
        journey = existing[0]
    else:
        r = await api.post("/v1/journeys", json={"name": "Abandoned cart", "graph": abandoned_cart(coins["id"])})
        r.raise_for_status()
        journey = (await api.post(f"/v1/journeys/{r.json()['id']}/publish")).raise_for_status().json()
    now = datetime.now(UTC)
    people = demo_contacts()[10:12]
    events = [{"type": "track", "userId": str(p["user_id"]), "event": "cart_updated", "properties": {"total": 120},
               "messageId": f"demo-{p['user_id']}-cart-{now.date()}", "timestamp": now.isoformat()} for p in people]
    events.append({"type": "track", "userId": str(people[0]["user_id"]), "event": "order_paid",
                   "messageId": f"demo-{people[0]['user_id']}-cart-paid-{now.date()}", "timestamp": now.isoformat(),
                   "properties": {"amount": 120}})
    async with httpx.AsyncClient(base_url=base, auth=(ingest, ""), timeout=30) as segment:
        (await segment.post("/v1/batch", json={"batch": events})).raise_for_status()
    console.print(f"[green]✓[/] Journey #{journey['id']} 'Abandoned cart' live: two carts updated, one paid "
                  "(graph and counts on /dashboards/journeys, a contact's path at GET /v1/contacts/{id}/journeys)")


async def load_demo(settings: Settings, console: Console) -> None:
    token = await create_api_key(settings.database_url or "", "demo loader", [Scope.ADMIN])
    ingest = await create_api_key(settings.database_url or "", "demo loader (ingest)", [Scope.INGEST])
    base = settings.resolved_public_url
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as api:
        with console.status("Loading demo contacts…"):
            ids = []
            for person in demo_contacts():
                r = await api.post("/v1/contacts", json=person)
                r.raise_for_status()
                ids.append(r.json()["id"])
        console.print(f"[green]✓[/] {len(ids)} demo contacts")
        program_id = await _events_segment_points(api, base, ingest, ids, console)
        r = await api.post("/v1/campaigns", json={
            "name": "Welcome to Nudge",
            "subject": "{{ contact.first_name }}, welcome aboard",
            "body": "Hi {{ contact.first_name }},\n\nThanks for joining on the {{ contact.plan }} plan. "
                    "You have placed {{ contact.orders }} orders so far.\n\n— The Nudge demo",
            "html": "<h1>Hi {{ contact.first_name }}</h1>"
                    "<p>Thanks for joining on the <b>{{ contact.plan }}</b> plan.</p>",
            "audience": {"contact_ids": ids},
            # Email, falling back to SMS when the address bounces or is suppressed (docs/campaigns.md); an A/B test
            # of the subject, counted against `order_paid`.
            "chain": ["email", "sms"],
            "content": {"sms": {"text": "{{ contact.first_name | default('Hi') }}, welcome to Nudge!"}},
            "variants": [{"name": "a"}, {"name": "b", "subject": "Welcome, {{ contact.first_name }}: your first week"}],
            "conversion_event": "order_paid",
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
        await _coupon_promotion(api, ids, program_id, console)
        await _tasks(api, base, ingest, console)
        await _journey(api, base, ingest, console)
    lines = [
        f"API docs        {base}/docs",
        f"Dashboards      {base}/dashboards  (sign in with the admin key printed above)",
        f"Dev inbox       {base}/dashboards/inbox  (mail sink and SMS/push/WeChat simulators)",
    ]
    if settings.temporal_ui_url:
        lines.append(f"Temporal UI     {settings.temporal_ui_url}/namespaces/default/workflows")
    console.print(Panel("\n".join(lines), title="Nudge demo is running", expand=False))
