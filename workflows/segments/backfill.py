"""Filling the Elasticsearch segment index: one workflow per index (`segments-index-backfill:{index}`)
that indexes every contact in chunks of contact ids. The cursor is saved in the index after each chunk and
carried by heartbeats within one, so a worker that dies mid-backfill costs at most one batch of work: the
retried activity resumes from its last heartbeat, a new run of the workflow from the saved cursor."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.segments import BackfillChunkInput, BackfillChunkResult, SegmentActivities

RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2, maximum_interval=timedelta(minutes=1))
MAX_CHUNKS = 200  # per run, then continue-as-new (a chunk adds ~6 history events)


def backfill_workflow_id(index: str) -> str:
    return f"segments-index-backfill:{index}"


@dataclass
class BackfillInput:
    index: str
    chunk: int = 20_000
    batch_size: int = 2000
    heartbeat_seconds: int = 60
    indexed: int = 0  # totals carried across continue-as-new
    chunks: int = 0
    resumed: int = 0


@dataclass
class BackfillProgress:
    index: str
    after: int = 0        # contact id up to which the index is filled
    indexed: int = 0      # documents written (a resumed batch counts twice)
    chunks: int = 0
    resumed: int = 0      # chunk attempts that resumed from a heartbeat (after a worker died mid-chunk)
    done: bool = False


@workflow.defn
class SegmentIndexBackfillWorkflow:
    @workflow.init
    def __init__(self, params: BackfillInput) -> None:
        self.progress_ = BackfillProgress(params.index, indexed=params.indexed, chunks=params.chunks,
                                          resumed=params.resumed)

    @workflow.run
    async def run(self, params: BackfillInput) -> BackfillProgress:
        p = self.progress_
        for _ in range(MAX_CHUNKS):
            chunk: BackfillChunkResult = await workflow.execute_activity_method(
                SegmentActivities.backfill_index_chunk,
                BackfillChunkInput(params.index, limit=params.chunk, batch_size=params.batch_size),
                start_to_close_timeout=timedelta(minutes=30), retry_policy=RETRY,
                heartbeat_timeout=timedelta(seconds=params.heartbeat_seconds),
            )
            p.resumed += chunk.resumed
            p.after, p.indexed, p.chunks = chunk.after, p.indexed + chunk.indexed, p.chunks + 1
            if chunk.done:
                p.done = True
                return p
        workflow.continue_as_new(BackfillInput(params.index, params.chunk, params.batch_size,
                                               params.heartbeat_seconds, p.indexed, p.chunks, p.resumed))

    @workflow.query
    def progress(self) -> BackfillProgress:
        return self.progress_
