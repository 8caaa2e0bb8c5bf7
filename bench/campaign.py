"""`nudge bench campaign`: N recipients through the whole campaign path — a manual segment snapshotted into the
run, CampaignWorkflow's sliding window of batches, the activities rendering each message and handing it to the
delivery service (records, screening, attempts) — to a `bench` channel that only records what it is given. The
limit is a raw multi-row insert of the same number of delivery rows into a scratch table in the same run."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Sequence

from sqlalchemy import text
from temporalio.common import SearchAttributePair

from api.runtime import Runtime, connect_temporal
from bench.core import BenchContext, BenchResult
from channels.base import Message, SendResult
from nudge.worker import build_workers
from store.campaigns import definitions, runs
from store.db import transaction
from workflows.campaigns import BATCHES_PER_RUN, CAMPAIGN_ID, TASK_QUEUE, CampaignRunInput, CampaignWorkflow
from workflows.schedules import kind

NAME = "campaign"
DESCRIPTION = "recipients/s from segment snapshot to recorded delivery (bench channel), vs a raw insert of the rows"
PARAMS = {"recipients": 20000, "batch": 500, "window": 4}


class RecordingChannel:
    """Accepts every message at once: what remains is Nudge's own cost."""

    name = "bench"

    def __init__(self) -> None:
        self.received = 0

    async def send_many(self, messages: Sequence[Message]) -> list[SendResult]:
        self.received += len(messages)
        return [SendResult(m.key, accepted=True, provider_message_id=f"bench-{m.key}") for m in messages]


async def raw_insert_rate(runtime: Runtime, contact_ids: list[int], campaign_id: int) -> float:
    """The limit: the same delivery rows written by one INSERT … SELECT into a scratch copy of `deliveries`."""
    async with transaction(runtime.sessions) as s:
        await s.execute(text("CREATE TEMP TABLE bench_deliveries (LIKE deliveries INCLUDING ALL) ON COMMIT DROP"))
        started = time.perf_counter()
        await s.execute(text("""
            INSERT INTO bench_deliveries (contact_id, key, campaign_id, run_id, step, channel, status, sent_at)
            SELECT c, 'delivery:' || :cid || ':s1:' || c, :cid, 0, 's1', 'bench', 'sent', now()
            FROM unnest(CAST(:ids AS bigint[])) c
        """), {"cid": campaign_id, "ids": contact_ids})
        return len(contact_ids) / (time.perf_counter() - started)


async def run(ctx: BenchContext, recipients: int, batch: int, window: int) -> BenchResult:
    settings = ctx.settings
    runtime = Runtime.build(settings)
    channel = RecordingChannel()
    runtime.channels["bench"] = channel
    client = await connect_temporal(settings)
    workers = build_workers(client, runtime, [TASK_QUEUE])
    worker_tasks = [asyncio.create_task(w.run()) for w in workers]
    tag = uuid.uuid4().hex[:8]
    ids: list[int] = []
    campaign_id = 0
    try:
        with ctx.status(f"Creating {recipients:,} contacts and a manual segment of them…"):
            async with transaction(runtime.sessions) as s:
                ids = list((await s.scalars(text(
                    "INSERT INTO contacts (user_id, traits) SELECT 'bench-c-' || :tag || '-' || i, "
                    "jsonb_build_object('first_name', 'Reader ' || i) FROM generate_series(1, :n) i RETURNING id"),
                    {"tag": tag, "n": recipients})).all())
                segment_id = int(await s.scalar(text(
                    "INSERT INTO segments (name, kind) VALUES (:n, 'manual') RETURNING id"), {"n": f"bench {tag}"}))
                await s.execute(text("INSERT INTO segment_members (contact_id, segment_id, entered_at) "
                                     "SELECT c, :sid, now() FROM unnest(CAST(:ids AS bigint[])) c"),
                                {"sid": segment_id, "ids": ids})
                campaign = await definitions.create_campaign(
                    s, name=f"Bench {tag}", channel="bench", subject="Hi {{ contact.first_name }}",
                    body="Hello {{ contact.first_name }}, campaign {{ campaign.id }}.", html=None, contact_ids=[],
                    segment_ids=[segment_id], chain=["bench"], content={})
                campaign_id = campaign.id
                run_row = await runs.start_run(s, campaign_id)
        with ctx.progress() as progress:
            bar = progress.add_task("Campaign through Nudge", total=recipients)
            started = time.perf_counter()
            handle = await client.start_workflow(
                CampaignWorkflow.run,
                CampaignRunInput(campaign_id=campaign_id, run_id=run_row.id, batch_size=batch, window=window),
                id=run_row.workflow_id, task_queue=TASK_QUEUE,
                search_attributes=kind("campaign", SearchAttributePair(CAMPAIGN_ID, str(campaign_id))),
                static_summary=f"Campaign #{campaign_id} (bench {tag}), run 1: bench",
            )
            result = asyncio.create_task(handle.result())
            while not result.done():
                progress.update(bar, completed=channel.received)
                await asyncio.wait([result], timeout=0.5)
            final = result.result()
            elapsed = time.perf_counter() - started
            progress.update(bar, completed=channel.received)
        history = await handle.fetch_history()
        batches = math.ceil(recipients / batch)
        runs_count = math.ceil(batches / BATCHES_PER_RUN)  # continue-as-new every BATCHES_PER_RUN batches
        ctx.console.print("Measuring a raw insert of the same delivery rows…")
        limit = await raw_insert_rate(runtime, ids, campaign_id)
    finally:
        for w in workers:
            await w.shutdown()
        await asyncio.gather(*worker_tasks, return_exceptions=True)
        if ids:
            async with transaction(runtime.sessions) as s:
                params = {"ids": ids, "k": f"delivery:{campaign_id}:%"}
                for table in ("delivery_attempts", "delivery_plans", "frequency_log"):
                    await s.execute(text(f"DELETE FROM {table} WHERE contact_id = ANY(:ids) AND key LIKE :k"), params)
                await s.execute(text("DELETE FROM delivery_provider_ids WHERE contact_id = ANY(:ids)"), params)
                await s.execute(text("DELETE FROM deliveries WHERE contact_id = ANY(:ids)"), params)
                await s.execute(text("DELETE FROM segment_members WHERE contact_id = ANY(:ids)"), params)
                await s.execute(text("DELETE FROM contacts WHERE id = ANY(:ids)"), params)
        await runtime.close()
    return BenchResult(
        bench=NAME, value=final.sent / elapsed, unit="msgs/s", limit_name="raw insert of the delivery rows",
        limit=limit, params={"recipients": recipients, "batch": batch, "window": window},
        rows=[("recipients", f"{recipients:,}"), ("messages recorded", f"{final.sent:,}"),
              ("wall time", f"{elapsed:.2f} s"), ("batches (activities)", f"{batches:,}"),
              ("workflow runs (continue-as-new)", f"{runs_count}"),
              ("history events (last run)", f"{len(history.events):,}")],
    )
