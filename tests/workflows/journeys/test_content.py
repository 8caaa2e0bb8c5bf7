"""Personalised sends end to end: the send node's templates are rendered per contact (its traits, the triggering
event) in the confined workers; a contact whose render passes a bound fails that send alone (`render_failed` in its
history and counts, no delivery plan) and moves on, while the others are sent."""

from __future__ import annotations

from sqlalchemy import text

from tests.workflows.journeys.conftest import Journeys, tag
from workflows.journeys.runtime import JourneyWorkflow


async def test_send_content_is_rendered_per_contact_and_a_failed_render_fails_that_send_alone(
        journeys: Journeys) -> None:
    t = tag()
    jid, handle = await journeys.run({"nodes": [
        {"id": "start", "type": "trigger", "event": f"cart_{t}", "next": "name"},
        {"id": "name", "type": "update_contact", "traits": {"first_name": "Ada"}, "next": "note"},
        {"id": "note", "type": "send", "chain": ["inbox"],
         "content": {"inbox": {"title": "Hi {{ contact.first_name }}",
                               "text": "{{ event.properties.item }}: {{ 'x' * event.properties.n }}"}},
         "next": "done"},
        {"id": "done", "type": "exit"}]})
    good, bad = f"good-{t}", f"bad-{t}"
    await journeys.track(good, f"cart_{t}", item="shoes", n=3)
    await journeys.track(bad, f"cart_{t}", item="hat", n=10_000_000)  # renders past the 1,000,000-character bound

    async def both_exited() -> bool:
        rows = await journeys.states(jid)
        return len(rows) == 2 and all(r.status == "exited" for r in rows)

    await journeys.until(handle, both_exited)
    good_id, bad_id = await journeys.contact(good), await journeys.contact(bad)
    async with journeys.sessions() as s:
        sent = {r.key: r.content for r in await s.execute(text(
            "SELECT key, content FROM delivery_plans WHERE key LIKE :p"), {"p": f"journey:{jid}:%"})}
    assert sent == {f"journey:{jid}:1:{good_id}:1:note": {"inbox": {"title": "Hi Ada", "text": "shoes: xxx"}}}
    history = (await journeys.api.get(f"/v1/contacts/{bad_id}/journeys")).json()
    assert [(s["node"], s["outcome"]) for s in history[0]["steps"]] == [
        ("start", "entered"), ("name", "entered"), ("note", "entered"), ("note", "render_failed"),
        ("done", "entered"), ("done", "exited")]
    counts = (await journeys.api.get(f"/v1/journeys/{jid}")).json()["counts"]
    assert counts["note"] == {"entered": 2, "render_failed": 1}
    await handle.signal(JourneyWorkflow.archive)
    await handle.result()
