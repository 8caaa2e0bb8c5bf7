"""The journey runtime end to end: events through the ingest API, one JourneyWorkflow per journey on the
time-skipping server, state in Postgres. Each node kind, both wait-for-event branches, waits in the contact's
zone, re-entry, versions, goals, exactly-once after a crash, and replay of a recorded history."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from temporalio.worker import Replayer

from activities.channels.delivery import service_for
from activities.journeys import JourneyActivities, StepInput
from api.runtime import Runtime
from domain.journeys.interpreter import next_time_of_day
from domain.zones import zone
from store.db import transaction
from store.journeys import runtime as journey_runtime
from tests.workflows.journeys.conftest import Journeys, tag
from workflows.journeys.runtime import JourneyWorkflow


def exit_node(node_id: str = "done") -> dict[str, Any]:
    return {"id": node_id, "type": "exit"}


async def traits(j: Journeys, contact: int) -> dict[str, Any]:
    async with j.sessions() as s:
        return dict(await s.scalar(text("SELECT traits FROM contacts WHERE id = :c"), {"c": contact}))


async def plans(j: Journeys, prefix: str) -> list[str]:
    async with j.sessions() as s:
        return list((await s.scalars(text("SELECT key FROM delivery_plans WHERE key LIKE :p ORDER BY key"),
                                     {"p": prefix + "%"})).all())


async def test_wait_for_event_takes_the_event_branch_or_the_timeout_branch(journeys: Journeys) -> None:
    t = tag()
    jid, handle = await journeys.run({"nodes": [
        {"id": "start", "type": "trigger", "event": f"cart_{t}", "when": "event.properties.total > 0", "next": "w"},
        {"id": "w", "type": "wait_for_event", "event": f"paid_{t}", "timeout_seconds": 3600, "next": "thanks",
         "timeout_next": "remind"},
        {"id": "thanks", "type": "update_contact", "traits": {f"paid_{t}": True}, "next": "done"},
        {"id": "remind", "type": "send", "chain": ["inbox"], "topic": "cart",
         "content": {"inbox": {"text": "Your cart is waiting"}}, "next": "done"},
        exit_node()]})
    payer, waiter, ignored = f"payer-{t}", f"waiter-{t}", f"zero-{t}"
    for user in (payer, waiter):
        await journeys.track(user, f"cart_{t}", total=30)
    await journeys.track(ignored, f"cart_{t}", total=0)  # the trigger's CEL says no

    async def both_waiting() -> bool:
        rows = await journeys.states(jid)
        return len(rows) == 2 and all((r.node, r.status, r.waiting_event) == ("w", "waiting", f"paid_{t}")
                                      for r in rows)

    await journeys.until(handle, both_waiting)
    await journeys.track(payer, f"paid_{t}")

    async def payer_done() -> bool:
        return any(r.user_id == payer and r.status == "exited" for r in await journeys.states(jid))

    await journeys.until(handle, payer_done)
    payer_id, waiter_id = await journeys.contact(payer), await journeys.contact(waiter)
    assert (await traits(journeys, payer_id))[f"paid_{t}"] is True
    assert await plans(journeys, f"journey:{jid}:") == []  # the payer got no reminder; the waiter waits

    await journeys.env.sleep(timedelta(hours=1, minutes=1))  # the timeout fires on the workflow's timer

    async def waiter_done() -> bool:
        return any(r.user_id == waiter and r.status == "exited" for r in await journeys.states(jid))

    await journeys.until(handle, waiter_done)
    assert await plans(journeys, f"journey:{jid}:") == [f"journey:{jid}:1:{waiter_id}:1:remind"]
    assert f"paid_{t}" not in await traits(journeys, waiter_id)
    r = await journeys.api.get(f"/v1/journeys/{jid}")
    counts = r.json()["counts"]
    assert counts["w"] == {"entered": 2, "event": 1, "timeout": 1}
    assert counts["done"]["exited"] == 2 and counts["remind"]["entered"] == 1
    history = (await journeys.api.get(f"/v1/contacts/{waiter_id}/journeys")).json()
    assert [(s["node"], s["outcome"]) for s in history[0]["steps"]] == [
        ("start", "entered"), ("w", "entered"), ("w", "timeout"), ("remind", "entered"), ("done", "entered"),
        ("done", "exited")]

    # The recorded history replays deterministically.
    await Replayer(workflows=[JourneyWorkflow]).replay_workflow(await handle.fetch_history())
    await handle.signal(JourneyWorkflow.archive)
    await handle.result()


async def test_a_goal_event_ends_the_journey_as_a_conversion(journeys: Journeys) -> None:
    t = tag()
    jid, handle = await journeys.run({"goal": {"event": f"order_{t}"}, "nodes": [
        {"id": "start", "type": "trigger", "event": f"signup_{t}", "next": "day"},
        {"id": "day", "type": "wait", "seconds": 86400, "next": "nudge"},
        {"id": "nudge", "type": "send", "chain": ["inbox"], "content": {"inbox": {"text": "Come back"}},
         "next": "done"}, exit_node()]})
    user = f"goal-{t}"
    await journeys.track(user, f"signup_{t}")
    await journeys.until(handle, lambda: _status(journeys, jid, "sleeping"))
    await journeys.track(user, f"order_{t}")
    await journeys.until(handle, lambda: _status(journeys, jid, "converted"))
    await journeys.env.sleep(timedelta(days=1, hours=1))
    assert await _status(journeys, jid, "converted")
    assert await plans(journeys, f"journey:{jid}:") == []
    counts = (await journeys.api.get(f"/v1/journeys/{jid}")).json()["counts"]
    assert counts["day"]["converted"] == 1
    await handle.signal(JourneyWorkflow.archive)


async def _status(journeys: Journeys, jid: int, status: str) -> bool:
    return [r.status for r in await journeys.states(jid)] == [status]


async def test_a_wait_until_a_time_of_day_is_in_the_contacts_zone(journeys: Journeys) -> None:
    t = tag()
    user = f"tz-{t}"
    await journeys.track(user, f"hello_{t}")
    contact = await journeys.contact(user)
    async with transaction(journeys.sessions) as s:
        await s.execute(text("UPDATE contacts SET timezone = 'Asia/Shanghai' WHERE id = :c"), {"c": contact})
    jid, handle = await journeys.run({"nodes": [
        {"id": "start", "type": "trigger", "event": f"go_{t}", "next": "nine"},
        {"id": "nine", "type": "wait", "until": "09:00", "next": "mark"},
        {"id": "mark", "type": "update_contact", "traits": {f"woke_{t}": True}, "next": "done"}, exit_node()]})
    await journeys.track(user, f"go_{t}")
    await journeys.until(handle, lambda: _status(journeys, jid, "sleeping"))
    row = (await journeys.states(jid))[0]
    assert row.wake_at == next_time_of_day(row.entered_at, "09:00", zone("Asia/Shanghai"))
    assert row.wake_at.astimezone(zone("Asia/Shanghai")).hour == 9
    await journeys.env.sleep(row.wake_at - row.entered_at + timedelta(minutes=1))
    await journeys.until(handle, lambda: _status(journeys, jid, "exited"))
    assert (await traits(journeys, contact))[f"woke_{t}"] is True
    await handle.signal(JourneyWorkflow.archive)


async def test_reentry_once_and_every_time(journeys: Journeys) -> None:
    t = tag()
    graph = {"nodes": [{"id": "start", "type": "trigger", "event": f"visit_{t}", "next": "done"}, exit_node()]}
    once, h1 = await journeys.run(graph)
    every, h2 = await journeys.run(graph | {"reentry": {"policy": "every_time"}})
    user = f"re-{t}"
    for _ in range(3):
        await journeys.track(user, f"visit_{t}")

    async def entries() -> tuple[list[int], list[int]] | None:
        await h1.signal(JourneyWorkflow.poke)
        a, b = await journeys.states(once), await journeys.states(every)
        return ([r.entry for r in a], [r.entry for r in b]) if a and len(b) == 3 else None

    assert await journeys.until(h2, entries) == ([1], [1, 2, 3])
    for h in (h1, h2):
        await h.signal(JourneyWorkflow.archive)


async def test_a_new_version_leaves_running_contacts_on_theirs(journeys: Journeys) -> None:
    t = tag()

    def graph(v: int) -> dict[str, Any]:
        return {"nodes": [
            {"id": "start", "type": "trigger", "event": f"join_{t}", "next": "wait"},
            {"id": "wait", "type": "wait", "seconds": 3600, "next": "mark"},
            {"id": "mark", "type": "update_contact", "traits": {f"v_{t}": v}, "next": "done"}, exit_node()]}

    jid, handle = await journeys.run(graph(1))
    await journeys.track(f"old-{t}", f"join_{t}")
    await journeys.until(handle, lambda: _status(journeys, jid, "sleeping"))
    r = await journeys.api.put(f"/v1/journeys/{jid}", json={"name": "v2", "graph": graph(2)})
    assert r.status_code == 200, r.text
    await journeys.publish(jid)
    await journeys.track(f"new-{t}", f"join_{t}")

    async def two() -> bool:
        return len(await journeys.states(jid)) == 2

    await journeys.until(handle, two)
    await journeys.env.sleep(timedelta(hours=1, minutes=1))

    async def both_done() -> list[tuple[int, int]] | None:
        rows = await journeys.states(jid)
        if all(r.status == "exited" for r in rows):
            return [(r.version, (await traits(journeys, r.contact_id))[f"v_{t}"]) for r in rows]
        return None

    assert sorted(await journeys.until(handle, both_done)) == [(1, 1), (2, 2)]
    assert [v["version"] for v in (await journeys.api.get(f"/v1/journeys/{jid}")).json()["versions"]] == [1, 2]
    await handle.signal(JourneyWorkflow.archive)


async def test_condition_split_and_grant_nodes(journeys: Journeys) -> None:
    t = tag()
    r = await journeys.api.post("/v1/ledger/programs", json={"name": f"journeys-{t}"})
    assert r.status_code == 201, r.text
    program = r.json()["id"]
    jid, handle = await journeys.run({"nodes": [
        {"id": "start", "type": "trigger", "event": f"buy_{t}", "next": "big"},
        {"id": "big", "type": "condition", "when": "event.properties.amount >= 100", "yes": "ab", "no": "done"},
        {"id": "ab", "type": "split", "branches": [{"percent": 50, "next": "grant"}, {"percent": 50, "next": "done"}]},
        {"id": "grant", "type": "grant", "program_id": program, "amount": 25, "next": "done"}, exit_node()]})
    users = [f"b{i}-{t}" for i in range(8)]
    for i, user in enumerate(users):
        await journeys.track(user, f"buy_{t}", amount=150 if i < 6 else 5)

    async def all_exited() -> bool:
        rows = await journeys.states(jid)
        return len(rows) == 8 and all(r.status == "exited" for r in rows)

    await journeys.until(handle, all_exited)
    counts = (await journeys.api.get(f"/v1/journeys/{jid}")).json()["counts"]
    assert counts["big"] == {"entered": 8, "yes": 6, "no": 2}
    granted = counts["ab"].get("branch:0", 0)
    assert granted + counts["ab"].get("branch:1", 0) == 6
    async with journeys.sessions() as s:
        references = sorted((await s.scalars(text(
            "SELECT reference FROM ledger_postings WHERE program_id = :p ORDER BY reference"), {"p": program})).all())
    ids = [await journeys.contact(u) for u in users[:6]]
    assert len(references) == granted
    assert all(ref.startswith(f"journey:{jid}:1:") and ref.endswith(":1:grant") for ref in references)
    assert {int(ref.split(":")[3]) for ref in references} <= set(ids)
    await handle.signal(JourneyWorkflow.archive)


async def test_a_worker_killed_mid_batch_loses_and_duplicates_nothing(journeys: Journeys, runtime: Runtime) -> None:
    t = tag()
    jid = await journeys.create({"nodes": [
        {"id": "start", "type": "trigger", "event": f"crash_{t}", "next": "hi"},
        {"id": "hi", "type": "send", "chain": ["inbox"], "content": {"inbox": {"text": "hello"}}, "next": "done"},
        exit_node()]})
    await journeys.publish(jid)
    users = [f"c{i}-{t}" for i in range(5)]
    for user in users:
        await journeys.track(user, f"crash_{t}")
    ids = [await journeys.contact(u) for u in users]
    delivery = service_for(runtime.sessions, runtime.channels, runtime.settings)

    class Killed(Exception):
        pass

    # 1. Killed after consuming and advancing, before the commit: nothing happened, the events are still there.
    try:
        async with transaction(journeys.sessions) as s:
            await journey_runtime.consume(s, jid, 1, _now())
            await journey_runtime.advance_due(s, jid, _now())
            raise Killed
    except Killed:
        pass
    assert await journeys.states(jid) == []
    # 2. Killed after the commit, before sending: the sends are recorded with the move.
    sends = []
    for _ in range(100):
        async with transaction(journeys.sessions) as s:
            sends += (await journey_runtime.consume(s, jid, 1, _now())).moved.sends  # entered and moved on at once
            sends += (await journey_runtime.advance_due(s, jid, _now())).sends
        if len(sends) == 5:
            break
        await asyncio.sleep(0.1)
    assert sorted(st.contact_id for st in sends) == sorted(ids)
    # 3. The retried activity finds nothing more to do; the sweeper sends what the dead worker did not.
    activities = JourneyActivities(journeys.sessions, delivery)
    retried = await activities.run_journey(StepInput(jid))
    assert (retried.entered, retried.advanced, retried.sent) == (0, 0, 0)
    await delivery.sweep(only=sends)
    # 4. A second send of the same steps (a replayed activity) sends nothing again.
    again = await delivery.send(sends)
    assert again.sent == 0
    async with journeys.sessions() as s:
        inbox = (await s.execute(text("""
            SELECT contact_id, count(*) FROM inbox_messages WHERE contact_id = ANY(:c) GROUP BY contact_id
        """), {"c": ids})).all()
        history = await s.scalar(text("SELECT count(*) FROM journey_history WHERE journey_id = :j AND node = 'hi'"),
                                 {"j": jid})
    assert sorted(inbox) == sorted((c, 1) for c in ids)
    assert history == 5
    assert all(r.status == "exited" and r.entry == 1 for r in await journeys.states(jid))


def _now() -> datetime:
    return datetime.now(UTC)


async def test_a_date_trait_enters_contacts_on_their_day_in_their_zone(journeys: Journeys) -> None:
    t = tag()
    trait = f"birthday_{t}"
    # The workflows' clock (earlier tests skipped days ahead); in UTC+14, whose date is often ahead of UTC's.
    today = (await journeys.env.get_current_time()).astimezone(zone("Pacific/Kiritimati"))
    users = {"today": f"{today.year - 30}-{today:%m-%d}", "other": "1990-01-01" if today.month != 1 else "1990-06-15"}
    contacts = {}
    for who, born in users.items():
        await journeys.track(f"{who}-{t}", f"hello_{t}")
        contacts[who] = await journeys.contact(f"{who}-{t}")
        async with transaction(journeys.sessions) as s:
            await s.execute(text("""
                UPDATE contacts SET timezone = 'Pacific/Kiritimati',
                                    traits = traits || jsonb_build_object(CAST(:k AS text), CAST(:v AS text))
                WHERE id = :c
            """), {"k": trait, "v": born, "c": contacts[who]})
    jid, handle = await journeys.run({"nodes": [
        {"id": "day", "type": "trigger", "date_trait": trait, "next": "gift"},
        {"id": "gift", "type": "update_contact", "traits": {f"celebrated_{t}": True}, "next": "done"}, exit_node()]})

    async def celebrated() -> list[Any]:
        return [r for r in await journeys.states(jid) if r.status == "exited"]

    rows = await journeys.until(handle, celebrated)
    assert [r.contact_id for r in rows] == [contacts["today"]]
    assert (await traits(journeys, contacts["today"]))[f"celebrated_{t}"] is True
    await journeys.env.sleep(timedelta(hours=2))  # the next scans find nobody new: a date comes once a year
    await handle.signal(JourneyWorkflow.poke)
    assert [r.contact_id for r in await journeys.states(jid)] == [contacts["today"]]
    await handle.signal(JourneyWorkflow.archive)


async def test_an_event_right_after_the_trigger_in_the_same_batch_is_seen_by_the_wait(journeys: Journeys) -> None:
    t = tag()
    jid, handle = await journeys.run({"nodes": [
        {"id": "start", "type": "trigger", "event": f"cart_{t}", "next": "w"},
        {"id": "w", "type": "wait_for_event", "event": f"paid_{t}", "timeout_seconds": 3600, "next": "done",
         "timeout_next": "remind"},
        {"id": "remind", "type": "send", "chain": ["inbox"], "content": {"inbox": {"text": "Your cart"}},
         "next": "done"}, exit_node()]})
    user = f"quick-{t}"
    r = await journeys.ingest.post("/v1/batch", json={"batch": [
        {"type": "track", "userId": user, "event": f"cart_{t}"},
        {"type": "track", "userId": user, "event": f"paid_{t}"}]})
    assert r.status_code == 200, r.text
    await journeys.until(handle, lambda: _status(journeys, jid, "exited"))
    assert await plans(journeys, f"journey:{jid}:") == []
    assert (await journeys.api.get(f"/v1/journeys/{jid}")).json()["counts"]["w"] == {"entered": 1, "event": 1}
    await handle.signal(JourneyWorkflow.archive)
