"""A worker process for the backfill restart test (run as a script, killed and started again by the test):
only the segment activities and the backfill workflow, on the test's own task queue and index."""

from __future__ import annotations

import asyncio
import sys

from temporalio.client import Client
from temporalio.worker import Worker

from activities.segments import SegmentActivities
from store.db import make_engine, make_sessionmaker
from workflows.segments.backfill import SegmentIndexBackfillWorkflow


async def main(database_url: str, temporal: str, elasticsearch_url: str, index: str, queue: str) -> None:
    engine = make_engine(database_url, pool_size=2)
    activities = SegmentActivities(make_sessionmaker(engine), elasticsearch_url, index=index)
    client = await Client.connect(temporal)
    worker = Worker(client, task_queue=queue, workflows=[SegmentIndexBackfillWorkflow],
                    activities=[activities.backfill_index_chunk])
    await worker.run()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
