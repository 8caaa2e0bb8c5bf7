"""Pause, resume and archive on the real runtime (events through the ingest API, JourneyWorkflow on the
time-skipping server): a pause holds every contact where it is and lets nobody in, resume moves them on and enters
what came meanwhile; archiving ends every contact still in the journey — exited with reason `archived`, a history
row, the node's `exited` count — and the workflow completes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from store.db import transaction
from store.journeys import definitions, runtime
from tests.workflows.journeys.conftest import Journeys, tag
from workflows.journeys.runtime import JourneyWorkflow


async def _traits(j: Journeys, contact: int) -> dict[str, Any]:
    async with j.sessions() as s:
        return dict(await s.scalar(text("SELECT traits FROM contacts WHERE id = :c"), {"c": contact}))


async def _where(j: Journeys, jid: int) -> dict[str, tuple[str, str, str | None]]:
    """user → (node, status, exit_reason) of the latest entry."""
    return {r.user_id: (r.node, r.status, r.exit_reason) for r in await j.states(jid)}


async def test_a_pause_holds_contacts_where_they_are_and_resume_moves_them_on(journeys: Journeys) -> None:
    t = tag()
    jid, handle = await journeys.run({"nodes": [
        {"id": "start", "type": "trigger", "event": f"join_{t}", "next": "hour"},
        {"id": "hour", "type": "wait", "seconds": 3600, "next": "mark"},
        {"id": "mark", "type": "update_contact", "traits": {f"woke_{t}": True}, "next": "done"},
        {"id": "done", "type": "exit"}]})
    early, late = f"early-{t}", f"late-{t}"
    await journeys.track(early, f"join_{t}")

    async def early_sleeping() -> bool:
        return await _where(journeys, jid) == {early: ("hour", "sleeping", None)}

    await journeys.until(handle, early_sleeping)
    r = await journeys.api.post(f"/v1/journeys/{jid}/pause")
    assert r.status_code == 200 and r.json()["status"] == "paused"
    await handle.signal(JourneyWorkflow.pause)  # the API signalled `journey:{id}`; this test's run has its own id

    async def paused() -> bool:
        return (await handle.query(JourneyWorkflow.progress)).status == "paused"

    await journeys.until(handle, paused)
    await journeys.track(late, f"join_{t}")  # arrives during the pause: kept, not entered
    await journeys.env.sleep(timedelta(hours=2))  # the early contact's wait is long over
    # The moves themselves refuse a paused journey, whoever calls them: nobody enters, nobody moves on.
    async with transaction(journeys.sessions) as s:
        assert (await runtime.consume(s, jid, 1, datetime.now(UTC) + timedelta(hours=3))).entered == 0
        assert (await runtime.advance_due(s, jid, datetime.now(UTC) + timedelta(hours=3))).contacts == 0
    assert await _where(journeys, jid) == {early: ("hour", "sleeping", None)}
    early_id = await journeys.contact(early)
    assert f"woke_{t}" not in await _traits(journeys, early_id)

    assert (await journeys.api.post(f"/v1/journeys/{jid}/resume")).json()["status"] == "live"
    await handle.signal(JourneyWorkflow.resume)

    async def moved_on() -> bool:
        return await _where(journeys, jid) == {early: ("done", "exited", None), late: ("hour", "sleeping", None)}

    await journeys.until(handle, moved_on)
    assert (await _traits(journeys, early_id))[f"woke_{t}"] is True
    await handle.signal(JourneyWorkflow.archive)
    await handle.result()


async def test_archiving_ends_every_contact_still_in_the_journey_and_the_workflow(journeys: Journeys) -> None:
    t = tag()
    jid, handle = await journeys.run({"nodes": [
        {"id": "start", "type": "trigger", "event": f"cart_{t}", "next": "big"},
        {"id": "big", "type": "condition", "when": "event.properties.total > 100", "yes": "day", "no": "pay"},
        {"id": "day", "type": "wait", "seconds": 86400, "next": "remind"},
        {"id": "pay", "type": "wait_for_event", "event": f"paid_{t}", "timeout_seconds": 3600, "next": "done",
         "timeout_next": "remind"},
        {"id": "remind", "type": "send", "chain": ["inbox"], "content": {"inbox": {"text": "Your cart"}},
         "next": "done"},
        {"id": "done", "type": "exit"}]})
    sleeper, waiter, payer = f"sleeper-{t}", f"waiter-{t}", f"payer-{t}"
    await journeys.track(sleeper, f"cart_{t}", total=500)
    await journeys.track(waiter, f"cart_{t}", total=5)
    await journeys.track(payer, f"cart_{t}", total=5)

    async def all_in() -> bool:
        return len(await journeys.states(jid)) == 3

    await journeys.until(handle, all_in)
    await journeys.track(payer, f"paid_{t}")

    async def payer_out() -> bool:
        return (await _where(journeys, jid)).get(payer) == ("done", "exited", None)

    await journeys.until(handle, payer_out)

    r = await journeys.api.post(f"/v1/journeys/{jid}/archive")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "archived"
    assert body["waiting"] == {}
    assert body["counts"]["day"]["exited"] == 1 and body["counts"]["pay"]["exited"] == 1
    assert body["counts"]["done"]["exited"] == 1  # the payer, who left by the exit node
    assert await _where(journeys, jid) == {sleeper: ("day", "exited", "archived"),
                                           waiter: ("pay", "exited", "archived"),
                                           payer: ("done", "exited", None)}
    async with journeys.sessions() as s:
        ended = list(await s.execute(text("""
            SELECT wake_at, waiting_event FROM journey_states WHERE journey_id = :j AND exit_reason = 'archived'
        """), {"j": jid}))
    assert ended and all(row == (None, None) for row in ended)
    history = (await journeys.api.get(f"/v1/contacts/{await journeys.contact(waiter)}/journeys")).json()
    assert history[0]["status"] == "exited" and history[0]["exit_reason"] == "archived"
    assert [(s["node"], s["outcome"], s["reason"]) for s in history[0]["steps"]][-2:] == [
        ("pay", "entered", None), ("pay", "exited", "archived")]

    await handle.signal(JourneyWorkflow.archive)
    assert (await handle.result()).status == "archived"
    # Nothing moves or enters afterwards, even if a pass ran late: no reminder at the timeout, no new entry.
    await journeys.track(f"newcomer-{t}", f"cart_{t}", total=5)
    async with transaction(journeys.sessions) as s:
        later = datetime.now(UTC) + timedelta(days=2)
        assert (await runtime.consume(s, jid, 1, later)).entered == 0
        assert (await runtime.advance_due(s, jid, later)).contacts == 0
    assert len(await journeys.states(jid)) == 3
    async with journeys.sessions() as s:
        assert await s.scalar(text("SELECT count(*) FROM delivery_plans WHERE key LIKE :k"),
                              {"k": f"journey:{jid}:%"}) == 0
    assert (await journeys.api.post(f"/v1/journeys/{jid}/archive")).status_code == 409


async def test_an_archive_too_large_for_its_request_is_finished_by_the_workflow(
        journeys: Journeys, monkeypatch: pytest.MonkeyPatch) -> None:
    """The archive's own transaction ends `ARCHIVE_AT_ONCE` contacts (one here); the journey's passes end the rest
    (two), each with its history row and count, and only then does the workflow complete."""
    t = tag()
    monkeypatch.setattr(definitions, "ARCHIVE_AT_ONCE", 1)
    jid, handle = await journeys.run({"nodes": [
        {"id": "start", "type": "trigger", "event": f"cart_{t}", "next": "day"},
        {"id": "day", "type": "wait", "seconds": 86400, "next": "done"},
        {"id": "done", "type": "exit"}]})
    for i in range(3):
        await journeys.track(f"sleeper-{i}-{t}", f"cart_{t}")

    async def all_in() -> bool:
        return len(await journeys.states(jid)) == 3

    await journeys.until(handle, all_in)
    r = await journeys.api.post(f"/v1/journeys/{jid}/archive")
    assert r.status_code == 200 and r.json()["status"] == "archived", r.text
    assert sorted(s.status for s in await journeys.states(jid)) == ["exited", "sleeping", "sleeping"]

    await handle.signal(JourneyWorkflow.archive)
    totals = await handle.result()
    assert totals.status == "archived" and totals.ended == 2
    assert {(s.node, s.status, s.exit_reason) for s in await journeys.states(jid)} == {("day", "exited", "archived")}
    body = (await journeys.api.get(f"/v1/journeys/{jid}")).json()
    assert body["counts"]["day"]["exited"] == 3 and body["waiting"] == {}
