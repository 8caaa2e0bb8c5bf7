"""Issue 17, case 5, from outside: one client's bad events never fail other clients' batches."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import psycopg

from store.db import plain_url


async def test_bad_batches_from_one_client_fail_alone_while_six_others_are_stored_once(
        ingest: httpx.AsyncClient, database_url: str) -> None:
    """Six clients send valid batches while a seventh sends batches holding a value Postgres cannot store, all at
    once so they share the batching writer's groups. The bad batches get a 400 problem+json and store nothing
    (whichever layer refuses them); every valid batch gets a 200 and is stored exactly once."""
    tag = uuid.uuid4().hex[:8]
    for n in range(7):  # known people, so the batches take the grouped hot path
        assert (await ingest.post("/v1/identify", json={"userId": f"{tag}-{n}"})).status_code == 200

    def batch(n: int, k: int, bad: bool = False) -> dict:
        properties = {"note": "nul \u0000 inside"} if bad else {"k": k}
        return {"batch": [{"type": "track", "userId": f"{tag}-{n}", "event": "tap", "messageId": f"{tag}-{n}-{k}-{i}",
                           "properties": properties if i == 2 else {}} for i in range(5)]}

    async def client(n: int, batches: int, bad: bool = False) -> list[httpx.Response]:
        return [await ingest.post("/v1/batch", json=batch(n, k, bad)) for k in range(batches)]

    *good, poisoned = await asyncio.gather(*(client(n, 15) for n in range(6)), client(6, 10, bad=True))
    assert [r.status_code for answers in good for r in answers] == [200] * 90
    assert all(r.json()["inserted"] == 5 for answers in good for r in answers)
    assert [r.status_code for r in poisoned] == [400] * 10
    assert all(r.headers["content-type"] == "application/problem+json" for r in poisoned)
    async with await psycopg.AsyncConnection.connect(plain_url(database_url)) as conn:
        cur = await conn.execute("SELECT message_id, count(*) FROM events WHERE message_id LIKE %s GROUP BY 1",
                                 (f"{tag}-%",))
        stored = dict(await cur.fetchall())
    assert stored == {f"{tag}-{n}-{k}-{i}": 1 for n in range(6) for k in range(15) for i in range(5)}
