"""The Segment-compatible tracking API through real HTTP and Postgres."""

from __future__ import annotations

import asyncio
import gzip
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import psycopg

from store.db import plain_url


def _tag() -> str:
    return uuid.uuid4().hex[:10]


async def _contact_of(api: httpx.AsyncClient, kind: str, value: str) -> dict:
    r = await api.get("/v1/contacts", params={"identity": f"{kind}:{value}"})
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert len(items) == 1, items
    return items[0]


async def _events(api: httpx.AsyncClient, contact_id: int) -> list[dict]:
    r = await api.get(f"/v1/contacts/{contact_id}/events", params={"limit": 500})
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def test_track_call_is_stored_for_the_user(ingest: httpx.AsyncClient, api: httpx.AsyncClient) -> None:
    user = f"u-{_tag()}"
    r = await ingest.post("/v1/track", json={"userId": user, "event": "order_paid", "properties": {"amount": 120}})
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True, "received": 1, "inserted": 1}
    contact = await _contact_of(api, "user_id", user)
    assert contact["last_seen_at"] is not None
    [event] = await _events(api, contact["id"])
    assert (event["type"], event["event"], event["properties"]) == ("track", "order_paid", {"amount": 120})


async def test_replayed_batch_creates_no_duplicates(ingest: httpx.AsyncClient, api: httpx.AsyncClient) -> None:
    anon = f"a-{_tag()}"
    batch = {"batch": [{"type": "track", "anonymousId": anon, "event": "app_open", "messageId": f"{anon}-{i}"}
                       for i in range(20)]}
    first = await ingest.post("/v1/batch", json=batch)
    again = await ingest.post("/v1/batch", json=batch)
    assert first.json()["inserted"] == 20
    assert again.status_code == 200 and again.json()["inserted"] == 0
    contact = await _contact_of(api, "anonymous_id", anon)
    assert len(await _events(api, contact["id"])) == 20


async def test_a_replay_after_a_merge_or_mixed_with_new_events_stores_only_the_new_ones(
        ingest: httpx.AsyncClient, api: httpx.AsyncClient) -> None:
    user, anon = f"u-{_tag()}", f"a-{_tag()}"
    early = {"batch": [{"type": "track", "anonymousId": anon, "event": "browse", "messageId": f"{anon}-{i}"}
                       for i in range(3)]}
    identify = {"type": "identify", "userId": user, "anonymousId": anon, "messageId": f"{anon}-identify",
                "traits": {"plan": "pro"}}
    assert (await ingest.post("/v1/batch", json=early)).json()["inserted"] == 3
    assert (await ingest.post("/v1/batch", json={"batch": [identify]})).json()["inserted"] == 1
    # The anonymous history now lives on the user's contact; the replays find it there.
    assert (await ingest.post("/v1/batch", json=early)).json() == {"success": True, "received": 3, "inserted": 0}
    assert (await ingest.post("/v1/batch", json={"batch": [identify]})).json()["inserted"] == 0
    mixed = {"batch": [*early["batch"][1:],
                       {"type": "track", "userId": user, "event": "buy", "messageId": f"{anon}-new"}]}
    assert (await ingest.post("/v1/batch", json=mixed)).json() == {"success": True, "received": 3, "inserted": 1}
    contact = await _contact_of(api, "user_id", user)
    events = await _events(api, contact["id"])
    assert sorted(e["message_id"] for e in events) == sorted([f"{anon}-{i}" for i in range(3)]
                                                             + [f"{anon}-identify", f"{anon}-new"])

async def test_gzip_batch_is_accepted(ingest: httpx.AsyncClient) -> None:
    body = gzip.compress(orjson.dumps({"batch": [{"type": "page", "anonymousId": _tag(), "name": "Home"}]}))
    r = await ingest.post("/v1/batch", content=body, headers={"Content-Encoding": "gzip",
                                                              "Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert r.json()["inserted"] == 1


async def test_segment_python_library_round_trip(api_url: str, ingest_key: str, api: httpx.AsyncClient) -> None:
    from segment.analytics import Client

    user, anon = f"seg-{_tag()}", f"anon-{_tag()}"

    def send() -> list[Exception]:
        errors: list[Exception] = []
        client = Client(write_key=ingest_key, host=api_url, gzip=True, max_retries=1,
                        on_error=lambda e, batch: errors.append(e))
        client.page(anonymous_id=anon, name="Pricing", properties={"path": "/pricing"})
        client.identify(user_id=user, anonymous_id=anon, traits={"email": f"{user}@example.com", "plan": "pro"})
        client.track(user_id=user, event="order_paid", properties={"amount": 250})
        client.flush()
        client.join()
        return errors

    assert await asyncio.to_thread(send) == []
    contact = await _contact_of(api, "user_id", user)
    assert contact["traits"]["plan"] == "pro" and contact["email"] == f"{user}@example.com"
    events = await _events(api, contact["id"])
    assert sorted(e["type"] for e in events) == ["identify", "page", "track"]
    assert (await _contact_of(api, "anonymous_id", anon))["id"] == contact["id"]


async def test_rudderstack_python_sdk_round_trip(api_url: str, ingest_key: str, api: httpx.AsyncClient) -> None:
    from rudderstack.analytics import Client

    user = f"rud-{_tag()}"

    def send() -> list[Exception]:
        errors: list[Exception] = []
        client = Client(write_key=ingest_key, host=api_url, max_retries=1, on_error=lambda e, batch: errors.append(e))
        client.identify(user_id=user, traits={"plan": "free"})
        client.track(user_id=user, event="app_open", properties={"screen": "home"})
        client.screen(user_id=user, name="Home")
        client.flush()
        client.join()
        return errors

    assert await asyncio.to_thread(send) == []
    contact = await _contact_of(api, "user_id", user)
    assert sorted(e["type"] for e in await _events(api, contact["id"])) == ["identify", "screen", "track"]


async def test_identify_merges_anonymous_history_into_the_known_contact(
        ingest: httpx.AsyncClient, api: httpx.AsyncClient) -> None:
    user, anon = f"u-{_tag()}", f"a-{_tag()}"
    await ingest.post("/v1/track", json={"userId": user, "event": "signup"})
    for i in range(3):
        await ingest.post("/v1/page", json={"anonymousId": anon, "name": f"p{i}"})
    anonymous = await _contact_of(api, "anonymous_id", anon)
    known = await _contact_of(api, "user_id", user)
    assert anonymous["id"] != known["id"]

    r = await ingest.post("/v1/identify", json={"userId": user, "anonymousId": anon, "traits": {"plan": "pro"}})
    assert r.status_code == 200, r.text

    merged = await _contact_of(api, "anonymous_id", anon)
    assert merged["id"] == known["id"]
    assert sorted(e["type"] for e in await _events(api, known["id"])) == ["identify", "page", "page", "page", "track"]
    # The old id forwards to the survivor, so links held elsewhere keep working.
    assert (await api.get(f"/v1/contacts/{anonymous['id']}")).json()["id"] == known["id"]


async def test_alias_links_a_previous_anonymous_id(ingest: httpx.AsyncClient, api: httpx.AsyncClient) -> None:
    user, anon = f"u-{_tag()}", f"a-{_tag()}"
    await ingest.post("/v1/track", json={"anonymousId": anon, "event": "viewed"})
    r = await ingest.post("/v1/alias", json={"userId": user, "previousId": anon})
    assert r.status_code == 200, r.text
    contact = await _contact_of(api, "user_id", user)
    assert {e["type"] for e in await _events(api, contact["id"])} == {"track", "alias"}


async def test_timestamps_are_corrected_for_device_clock_skew(ingest: httpx.AsyncClient,
                                                              api: httpx.AsyncClient) -> None:
    user = f"u-{_tag()}"
    # The device clock runs a year behind; the event happened 60 s before the device sent it.
    batch = {"sentAt": "2020-01-01T00:01:00Z", "batch": [
        {"type": "track", "userId": user, "event": "late", "timestamp": "2020-01-01T00:00:00Z"}]}
    before = datetime.now(UTC)
    assert (await ingest.post("/v1/batch", json=batch)).status_code == 200
    after = datetime.now(UTC)
    [event] = await _events(api, (await _contact_of(api, "user_id", user))["id"])
    stamp = datetime.fromisoformat(event["timestamp"])
    assert before - timedelta(seconds=61) <= stamp <= after - timedelta(seconds=59)


async def test_invalid_event_in_a_batch_stores_nothing(ingest: httpx.AsyncClient, api: httpx.AsyncClient) -> None:
    user = f"u-{_tag()}"
    batch = {"batch": [{"type": "track", "userId": user, "event": "ok"}, {"type": "track", "event": "no-id"}]}
    r = await ingest.post("/v1/batch", json=batch)
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "userId" in r.json()["detail"] and "event 1" in r.json()["detail"]
    assert (await api.get("/v1/contacts", params={"user_id": user})).json()["items"] == []


async def test_size_limits_answer_400_and_413_and_store_nothing(ingest: httpx.AsyncClient,
                                                                api: httpx.AsyncClient) -> None:
    user = f"u-{_tag()}"
    big = "x" * (33 * 1024)
    r = await ingest.post("/v1/track", json={"userId": user, "event": "big", "properties": {"blob": big}})
    assert r.status_code == 413 and "32 KB" in r.json()["detail"]
    one_big = {"batch": [{"type": "track", "userId": user, "event": "e", "properties": {"blob": big}}]}
    r = await ingest.post("/v1/batch", json=one_big)
    assert r.status_code == 400 and "Event 0" in r.json()["detail"]
    huge = {"batch": [{"type": "track", "userId": user, "event": "e", "properties": {"blob": "y" * 20_000}}
                      for _ in range(30)]}
    r = await ingest.post("/v1/batch", json=huge)
    assert r.status_code == 413 and "500 KB" in r.json()["detail"]
    assert (await api.get("/v1/contacts", params={"user_id": user})).json()["items"] == []


async def test_ingest_needs_an_ingest_key_and_an_ingest_key_cannot_read(
        api_url: str, read_key: str, ingest_key: str) -> None:
    event = {"userId": f"u-{_tag()}", "event": "x"}
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as client:
        assert (await client.post("/v1/track", json=event)).status_code == 401
        assert (await client.post("/v1/track", json=event, auth=(read_key, ""))).status_code == 403
        bearer = {"Authorization": f"Bearer {ingest_key}"}
        assert (await client.post("/v1/track", json=event, headers=bearer)).status_code == 200
        assert (await client.get("/v1/contacts", headers=bearer)).status_code == 403
        assert (await client.delete("/v1/contacts/1", headers=bearer)).status_code == 403


async def test_write_key_errors_are_problems_that_say_what_to_send_and_store_nothing(
        api_url: str, api: httpx.AsyncClient) -> None:
    user = f"u-{_tag()}"
    event = {"userId": user, "event": "x"}
    garbled = {"Authorization": "Basic %%%not-base64"}
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as client:
        for headers, auth in (({}, None), (garbled, None), ({"Authorization": "Digest abc"}, None),
                              ({}, ("nk_unknown_secret", ""))):
            r = await client.post("/v1/batch", json={"batch": [event]}, headers=headers, auth=auth)
            assert r.status_code == 401, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.headers["www-authenticate"] == "Basic"
            assert "write key" in r.json()["detail"]
        metrics = (await client.get("/metrics")).text
    assert 'nudge_http_requests_total{method="POST",route="/v1/batch",status="401"}' in metrics
    r = await api.get("/v1/contacts", params={"identity": f"user_id:{user}"})
    assert r.status_code == 200 and r.json()["items"] == []


async def test_concurrent_requests_are_grouped_without_losing_or_doubling(
        ingest: httpx.AsyncClient, api: httpx.AsyncClient) -> None:
    user = f"u-{_tag()}"
    await ingest.post("/v1/identify", json={"userId": user})
    replayed = {"batch": [{"type": "track", "userId": user, "event": "tap", "messageId": f"{user}-{i}"}
                          for i in range(30)]}
    newcomers = [{"batch": [{"type": "track", "anonymousId": f"{user}-anon-{j}", "event": "tap"}]} for j in range(4)]
    answers = await asyncio.gather(*(ingest.post("/v1/batch", json=b) for b in [replayed] * 4 + newcomers))
    assert all(a.status_code == 200 for a in answers)
    assert sum(a.json()["inserted"] for a in answers[:4]) == 30
    assert all(a.json()["inserted"] == 1 for a in answers[4:])
    contact = await _contact_of(api, "user_id", user)
    assert len([e for e in await _events(api, contact["id"]) if e["type"] == "track"]) == 30


async def test_a_batch_whose_database_session_dies_mid_statement_is_stored_whole_or_never(
        ingest: httpx.AsyncClient, api: httpx.AsyncClient, database_url: str) -> None:
    """A crash mid-batch: the writer's backend is killed while its statement waits on the contact's row lock,
    its events already inserted but not committed. The API retries on a new connection and every attempt is
    killed the same way, so it answers 503 with Retry-After; nothing of the batch exists. The client's retry
    then stores it once, with its aggregates, and a second retry stores nothing."""
    user = f"u-{_tag()}"
    assert (await ingest.post("/v1/identify", json={"userId": user})).status_code == 200
    contact = await _contact_of(api, "user_id", user)
    batch = {"batch": [{"type": "track", "userId": user, "event": "order_paid", "messageId": f"{user}-{i}"}
                       for i in range(25)]}
    url = plain_url(database_url)
    async with await psycopg.AsyncConnection.connect(url) as locker, \
            await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
        await locker.execute("SELECT FROM contacts WHERE id = %s FOR UPDATE", (contact["id"],))
        locker_pid = locker.info.backend_pid
        send = asyncio.create_task(ingest.post("/v1/batch", json=batch))
        killed: set[int] = set()
        while not send.done():
            cur = await admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))"
                " AND application_name = 'nudge-ingest'", (locker_pid,))
            for (pid,) in await cur.fetchall():
                if pid not in killed:
                    await admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
                    killed.add(pid)
            await asyncio.sleep(0.01)
        answer = send.result()
        await locker.rollback()
        assert answer.status_code == 503, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.headers["retry-after"] == "1"
        assert "send the same batch again" in answer.json()["detail"]
        assert len(killed) == 4  # the first attempt and the API's three retries, each on a fresh connection

        stored = ("SELECT (SELECT count(*) FROM events WHERE contact_id = %(c)s AND type = 'track'),"
                  " (SELECT coalesce(sum(count), 0) FROM contact_event_daily WHERE contact_id = %(c)s)")
        assert await (await admin.execute(stored, {"c": contact["id"]})).fetchone() == (0, 0)
        assert (await _contact_of(api, "user_id", user))["last_seen_at"] == contact["last_seen_at"]
        again = await ingest.post("/v1/batch", json=batch)
        assert again.status_code == 200 and again.json()["inserted"] == 25, again.text
        assert (await ingest.post("/v1/batch", json=batch)).json()["inserted"] == 0
        assert await (await admin.execute(stored, {"c": contact["id"]})).fetchone() == (25, 25)


async def test_the_timeline_is_in_event_time_order_and_pages_without_gaps(
        ingest: httpx.AsyncClient, api: httpx.AsyncClient) -> None:
    """Events sent newest first (so their ids run against time) come back newest first by timestamp, two per
    page, each exactly once; equal timestamps are ordered by id. A made-up cursor is a 422."""
    user = f"u-{_tag()}"
    base = datetime(2026, 1, 1, tzinfo=UTC)
    stamps = [base + timedelta(minutes=m) for m in (50, 40, 30, 30, 20, 10, 0)]
    batch = [{"type": "track", "userId": user, "event": f"e{n}", "timestamp": t.isoformat()}
             for n, t in enumerate(stamps)]
    assert (await ingest.post("/v1/batch", json={"batch": batch})).status_code == 200
    contact = await _contact_of(api, "user_id", user)
    seen, before = [], None
    while True:
        params = {"limit": 2} | ({"before": before} if before else {})
        r = await api.get(f"/v1/contacts/{contact['id']}/events", params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        seen += page["items"]
        before = page["next_before"]
        assert before is None or "+" not in before  # URL-safe as it is
        if before is None:
            break
    keys = [(datetime.fromisoformat(e["timestamp"]), e["id"]) for e in seen]
    assert keys == sorted(keys, reverse=True) and len({e["id"] for e in seen}) == len(batch) == len(seen)
    assert [e["event"] for e in seen[:2]] == ["e0", "e1"]
    for bad in ("12", "yesterday~5", "2026-01-01T00:00:00~x"):
        r = await api.get(f"/v1/contacts/{contact['id']}/events", params={"before": bad})
        assert r.status_code == 422, (bad, r.text)
