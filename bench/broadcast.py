"""`nudge bench broadcast`: N emails through the whole path (API → Temporal → worker → SMTP), against
the raw aiosmtplib send rate to the same SMTP server in the same run."""

from __future__ import annotations

import asyncio
import time
import uuid
from email.message import EmailMessage

import aiosmtplib
import httpx
import uvicorn
from sqlalchemy import text

from api.runtime import Runtime, connect_temporal
from bench.core import BenchContext, BenchResult
from channels.email import SmtpUrl
from domain.keys import Scope
from nudge.app import create_app
from nudge.embedded import free_port
from nudge.worker import build_workers
from store import keys
from store.db import transaction
from workflows.campaigns import TASK_QUEUE

NAME = "broadcast"
DESCRIPTION = "emails/s through API → CampaignWorkflow → SMTP, vs raw aiosmtplib to the same server"
PARAMS = {"n": 2000, "batch": 500, "concurrency": 8}


async def raw_smtp_rate(smtp_url: str, n: int, concurrency: int) -> float:
    """The physical limit: pre-built messages pushed over `concurrency` aiosmtplib connections."""
    server = SmtpUrl(smtp_url)
    tag = uuid.uuid4().hex[:8]

    def message(i: int) -> EmailMessage:
        m = EmailMessage()
        m["From"], m["To"], m["Subject"] = "bench@localhost", f"raw-{i}@bench.invalid", "raw"
        m["Message-ID"] = f"<raw.{tag}.{i}@bench>"
        m.set_content("Hello from the raw SMTP baseline.")
        return m

    messages = [message(i) for i in range(n)]

    async def lane(chunk: list[EmailMessage]) -> None:
        async with aiosmtplib.SMTP(hostname=server.host, port=server.port) as smtp:
            for m in chunk:
                await smtp.send_message(m)

    started = time.perf_counter()
    await asyncio.gather(*(lane(messages[i::concurrency]) for i in range(concurrency)))
    return n / (time.perf_counter() - started)


async def run(ctx: BenchContext, n: int, batch: int, concurrency: int) -> BenchResult:
    settings = ctx.settings.model_copy(update={"campaign_batch_size": batch, "smtp_concurrency": concurrency,
                                               "api_port": free_port()})
    runtime = Runtime.build(settings)
    client = await connect_temporal(settings)
    workers = build_workers(client, runtime, [TASK_QUEUE])
    worker_tasks = [asyncio.create_task(w.run()) for w in workers]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=settings.api_port,
                                           log_level="warning"))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    server_task = asyncio.create_task(server.serve())
    tag = uuid.uuid4().hex[:8]
    try:
        async with transaction(runtime.sessions) as s:
            token = (await keys.create_key(s, f"bench {tag}", [Scope.ADMIN])).token
            ids = list((await s.scalars(text(
                "INSERT INTO contacts (user_id, email, traits) "
                "SELECT 'bench-' || :tag || '-' || i, 'bench-' || :tag || '-' || i || '@bench.invalid', "
                "jsonb_build_object('first_name', 'Reader ' || i) FROM generate_series(1, :n) i RETURNING id"),
                {"tag": tag, "n": n})).all())
        while not server.started:
            await asyncio.sleep(0.05)
        base = f"http://127.0.0.1:{settings.api_port}"
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as api:
            campaign = (await api.post("/v1/campaigns", json={
                "name": f"Bench {tag}", "subject": "Hi {{ contact.first_name }}",
                "body": "Hello {{ contact.first_name }}, this is campaign {{ campaign.id }}.",
                "audience": {"contact_ids": ids}})).json()
            with ctx.progress() as progress:
                bar = progress.add_task("Broadcasting through Nudge", total=n)
                started = time.perf_counter()
                (await api.post(f"/v1/campaigns/{campaign['id']}/launch")).raise_for_status()
                while True:
                    body = (await api.get(f"/v1/campaigns/{campaign['id']}")).json()
                    progress.update(bar, completed=body["run"]["sent"] + body["run"]["failed"])
                    if body["status"] == "completed":
                        break
                    await asyncio.sleep(0.1)
                elapsed = time.perf_counter() - started
        sent = body["run"]["sent"]
        ctx.console.print("Measuring raw aiosmtplib sends to the same server…")
        limit = await raw_smtp_rate(settings.smtp_url or "", n, concurrency)
    finally:
        server.should_exit = True
        await asyncio.wait([server_task], timeout=10)
        for w in workers:
            await w.shutdown()
        await asyncio.gather(*worker_tasks, return_exceptions=True)
        async with transaction(runtime.sessions) as s:
            await s.execute(text("DELETE FROM deliveries WHERE contact_id = ANY(:ids)"), {"ids": ids})
            await s.execute(text("DELETE FROM contacts WHERE id = ANY(:ids)"), {"ids": ids})
        await runtime.close()
    return BenchResult(
        bench=NAME, value=sent / elapsed, unit="msgs/s", limit_name="raw aiosmtplib", limit=limit,
        params={"n": n, "batch": batch, "concurrency": concurrency},
        rows=[("messages sent", f"{sent:,}"), ("wall time", f"{elapsed:.2f} s"),
              ("batches (activities)", f"{-(-n // batch)}")],
    )
