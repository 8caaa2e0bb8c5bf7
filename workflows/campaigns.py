"""CampaignWorkflow: one per campaign run, sending recipients in a bounded sliding window of batches.

Rule 1 of the design: the workflow never handles a recipient itself; each activity sends a batch. The audience is
snapshotted, then cut into contact-id ranges of at most one batch each, so up to `window` batches run at once on
any workers without ever overlapping (a second worker adds throughput; exactly-once is the deliveries' unique key
and their `queued` status, as before). Pause and cancel act at batch boundaries: batches in flight finish, no new
one starts. The history stays small through continue-as-new, carrying the ranges left and the running totals.

A send-rate cap (`max_per_second`) paces batch starts deterministically: each batch start reserves
`batch_size / max_per_second` seconds, and the next batch waits for a durable timer until that reservation has
passed; the launch also caps the batch size at one second's worth (`paced_batch_size`), so a run never sends faster
than the cap over any stretch longer than one batch (docs/campaigns.md).

A recurring campaign's Temporal Schedule starts this workflow once per occurrence without a run: its first activity
opens the occurrence's numbered run (found again by workflow id on a retry) or skips it. A local-time run sends its
recipients zone slot by zone slot: an activity computes each slot's instant (the workflow never reads a zone), and a
durable timer waits for it before that slot's ranges are cut and sent. An occurrence's snapshot is checked for
template variables its recipients lack before anything is sent (the run then fails with the reason and the campaign
waits for its next occurrence), and once the campaign is over after an occurrence (its last, or cancelled, also from
the Temporal UI) the occurrence deletes the schedule.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError, CancelledError

with workflow.unsafe.imports_passed_through():
    from activities.campaigns import (
        CampaignActivities,
        LocalPlanInput,
        LocalSlot,
        OccurrenceInput,
        PartitionInput,
        RunInput,
        RunTotals,
        ScheduleInput,
        SendBatchInput,
        SendBatchResult,
    )

TASK_QUEUE = "nudge-campaigns"
CAMPAIGN_ID = SearchAttributeKey.for_keyword("CampaignId")
SCHEDULED_AT = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")  # set by a schedule on each occurrence
BATCHES_PER_RUN = 200  # continue-as-new well before the history grows large


@dataclass
class CampaignRunInput:
    campaign_id: int
    run_id: int
    batch_size: int = 500
    after_contact_id: int = 0  # ranges below this are done
    total: int = -1  # -1 until the audience snapshot is taken
    sent: int = 0
    failed: int = 0
    heartbeat_seconds: int = 30  # how soon a batch on a dead worker is retried elsewhere
    window: int = 4  # batches in flight at once
    bounds: list[int] | None = None  # upper contact id of each range still to send; None until partitioned
    paused: bool = False
    cancelled: bool = False
    start_at: float | None = None  # epoch seconds: a scheduled run waits for it (a durable timer) before sending
    max_per_second: int | None = None  # send-rate cap: batch starts are spaced batch_size / max_per_second apart
    next_start: float | None = None  # epoch seconds: with a cap, no batch starts before this (carried over)
    recurring: bool = False  # started by the campaign's schedule: run_id is 0 until the occurrence opens its run
    number: int = 0  # the run's number (shown in progress)
    local_time: str | None = None  # HH:MM: each recipient gets it at this time on their own clock
    default_zone: str = "UTC"  # the zone of recipients without a (known) one
    slots: list[LocalSlot] | None = None  # a local-time run's slots, earliest first; None until planned
    slot: int = 0  # the slot being sent


@dataclass
class CampaignProgress:
    total: int
    sent: int
    failed: int
    paused: bool
    done: bool
    cancelled: bool = False
    in_flight: int = 0
    batches_left: int = 0
    suppressed: int = 0
    holdout: int = 0
    unsent_cancelled: int = 0
    max_per_second: int | None = None
    paced: bool = False  # waiting for the rate cap before the next batch
    number: int = 0
    skipped: bool = False  # an occurrence the campaign was not waiting for (paused, cancelled, completed)
    slots: list[LocalSlot] | None = None  # local time: each slot's zones, instant and when it started
    refused: str | None = None  # an occurrence not sent: its recipients lack a template variable (the reason)


def paced_batch_size(batch_size: int, max_per_second: int | None) -> int:
    """With a cap, a batch holds at most one second's worth of messages, so pacing batch starts paces the sends."""
    return max(1, min(batch_size, max_per_second)) if max_per_second else batch_size


def _cancelled_by(err: BaseException) -> bool:
    """This workflow was cancelled in Temporal: asyncio's error while it waits, or an activity's error caused by the
    cancel while one runs."""
    return isinstance(err, asyncio.CancelledError) or (
        isinstance(err, ActivityError) and isinstance(err.cause, CancelledError))


SEND_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2,
                         maximum_interval=timedelta(seconds=60), non_retryable_error_types=["TemplateProblem"])


@workflow.defn
class CampaignWorkflow:
    @workflow.init
    def __init__(self, params: CampaignRunInput) -> None:
        self.state = params
        self.paused = params.paused
        self.cancelled = params.cancelled
        self.done = False
        self.in_flight = 0
        self.paced = False
        self.skipped = False
        self.started = 0  # batches started by this execution (continue-as-new after BATCHES_PER_RUN)
        self.totals: RunTotals | None = None
        self.batches: list[asyncio.Task[None]] = []
        self.refused: str | None = None

    @workflow.run
    async def run(self, params: CampaignRunInput) -> CampaignProgress:
        return await self._occurrence() if self.state.recurring else await self._run()

    async def _occurrence(self) -> CampaignProgress:
        """One occurrence of a recurring campaign: opened (or skipped), run, and, when the campaign is over after it
        (completed by its `until`, or cancelled: also by cancelling this workflow in the Temporal UI), its schedule
        deleted, so no occurrence is started only to be skipped."""
        s = self.state
        opened = True
        if s.run_id == 0:
            try:
                opened = await self._open_occurrence()
            except (asyncio.CancelledError, ActivityError) as err:
                if not _cancelled_by(err):
                    raise
                # Cancelled while opening: the activity may have opened the run (it commits); opening again finds it
                # (or opens it), so it closes as cancelled with the campaign rather than staying open.
                self.cancelled = True
                opened = await self._open_occurrence()
        if not opened:
            progress = self.progress()
        elif self.cancelled and s.total < 0:  # cancelled while opening: nothing snapshotted, nothing to send
            progress = await self._finish()
        else:
            progress = await self._run()
        if workflow.patched("campaign-close-schedule"):
            await workflow.execute_activity_method(
                CampaignActivities.close_schedule, ScheduleInput(s.campaign_id),
                start_to_close_timeout=timedelta(minutes=1), retry_policy=SEND_RETRY,
            )
        return progress

    async def _run(self) -> CampaignProgress:
        s = self.state
        if s.start_at is not None and s.total < 0 and not await self._wait_for_start(s.start_at):
            return await self._finish()
        try:
            return await self._send_all()
        except (asyncio.CancelledError, ActivityError) as err:
            # Cancelled in Temporal (the UI) outside the window: close the run as the cancel signal does.
            if not _cancelled_by(err):
                raise
            self.cancelled = True
            await workflow.wait_condition(lambda: self.in_flight == 0)
            return await self._finish()

    async def _send_all(self) -> CampaignProgress:
        s = self.state
        if s.total < 0:
            s.total = await workflow.execute_activity_method(
                CampaignActivities.snapshot_audience, RunInput(s.run_id),
                start_to_close_timeout=timedelta(minutes=10), retry_policy=SEND_RETRY,
            )
            if s.recurring and workflow.patched("campaign-occurrence-variables"):
                # Members change between occurrences: an occurrence whose recipients lack a template variable
                # sends nothing (the run fails with the reason; the campaign waits for the next occurrence).
                self.refused = await workflow.execute_activity_method(
                    CampaignActivities.check_variables, RunInput(s.run_id),
                    start_to_close_timeout=timedelta(minutes=5), retry_policy=SEND_RETRY,
                )
                if self.refused is not None:
                    return await self._finish()
        if s.local_time is not None and s.slots is None:
            s.slots = await workflow.execute_activity_method(
                CampaignActivities.plan_local_sends,
                LocalPlanInput(s.run_id, s.local_time, s.default_zone, workflow.now().timestamp()),
                start_to_close_timeout=timedelta(minutes=1), retry_policy=SEND_RETRY,
            )
        while not self.cancelled:
            if s.bounds is None:
                if s.slots is not None:
                    if s.slot >= len(s.slots):
                        break
                    slot = s.slots[s.slot]
                    if not await self._sleep_until(slot.due_at):
                        break
                    slot.started_at = workflow.now().timestamp()
                s.after_contact_id = 0  # each slot's ranges start over
                s.bounds = await workflow.execute_activity_method(
                    CampaignActivities.partition, PartitionInput(s.run_id, s.batch_size, self._zones()),
                    start_to_close_timeout=timedelta(minutes=10), retry_policy=SEND_RETRY,
                )
            try:
                await self._window()
            except asyncio.CancelledError:
                self.cancelled = True  # the workflow was cancelled in Temporal: stop as the cancel signal does
            await workflow.wait_condition(lambda: self.in_flight == 0)
            if self.cancelled:
                break
            if s.bounds:
                await workflow.wait_condition(workflow.all_handlers_finished)
                s.paused, s.cancelled = self.paused, self.cancelled
                workflow.continue_as_new(s)
            if s.slots is None:
                break
            s.slot, s.bounds = s.slot + 1, None
        return await self._finish()

    def _zones(self) -> list[str] | None:
        s = self.state
        return s.slots[s.slot].zones if s.slots is not None else None

    async def _open_occurrence(self) -> bool:
        """The schedule started this occurrence: open its numbered run, or skip it (False) when the campaign is not
        waiting for one."""
        info = workflow.info()
        at = info.typed_search_attributes.get(SCHEDULED_AT)
        occurrence = await workflow.execute_activity_method(
            CampaignActivities.open_occurrence,
            OccurrenceInput(self.state.campaign_id, info.workflow_id, at.timestamp() if at else None),
            start_to_close_timeout=timedelta(minutes=1), retry_policy=SEND_RETRY,
        )
        if occurrence.run_id == 0:
            self.skipped = self.done = True
            return False
        self.state.run_id, self.state.number = occurrence.run_id, occurrence.number
        return True

    async def _sleep_until(self, at: float) -> bool:
        """A durable timer until `at` (epoch seconds), cut short by a cancel; False if cancelled."""
        delay = at - workflow.now().timestamp()
        if delay > 0:
            try:
                await workflow.wait_condition(lambda: self.cancelled, timeout=timedelta(seconds=delay))
            except TimeoutError:
                pass
            except asyncio.CancelledError:
                self.cancelled = True
        return not self.cancelled

    async def _wait_for_start(self, start_at: float) -> bool:
        """Sleep until the scheduled time (or a cancel), then move the campaign to running; False if cancelled."""
        if not await self._sleep_until(start_at):
            return False
        self.state.start_at = None
        begun = await workflow.execute_activity_method(
            CampaignActivities.begin_run, RunInput(self.state.run_id),
            start_to_close_timeout=timedelta(minutes=1), retry_policy=SEND_RETRY,
        )
        self.cancelled = self.cancelled or not begun
        return not self.cancelled

    async def _finish(self) -> CampaignProgress:
        s = self.state
        self.totals = await workflow.execute_activity_method(
            CampaignActivities.finish_run, RunInput(s.run_id, cancelled=self.cancelled),
            start_to_close_timeout=timedelta(minutes=1), retry_policy=SEND_RETRY,
        )
        self.done = True
        s.total, s.sent, s.failed = self.totals.total, self.totals.sent, self.totals.failed
        return self.progress()

    async def _window(self) -> None:
        """Start batches, range after range, keeping at most `window` in flight, until none is left, the run is
        cancelled or it is time to continue as new."""
        s = self.state
        while s.bounds and self.started < BATCHES_PER_RUN:
            await workflow.wait_condition(
                lambda: self.cancelled or (not self.paused and self.in_flight < max(s.window, 1)))
            if self.cancelled:
                return
            if await self._pace():
                continue  # the cap's timer fired: look at pause, cancel and the window again before starting
            until = s.bounds.pop(0)
            if s.max_per_second:
                s.next_start = workflow.now().timestamp() + s.batch_size / s.max_per_second
            self.in_flight += 1  # counted now, not when the task first runs, so the window is never overfilled
            self.batches.append(asyncio.create_task(self._send(s.after_contact_id, until)))
            s.after_contact_id = until
            self.started += 1

    async def _pace(self) -> bool:
        """With a rate cap, wait (a durable timer, cut short by a cancel) until the next batch may start; True if it
        waited."""
        s = self.state
        if not s.max_per_second or s.next_start is None:
            return False
        delay = s.next_start - workflow.now().timestamp()
        if delay < 0.001:  # a timer's microsecond rounding never costs another turn
            return False
        self.paced = True
        try:
            await workflow.wait_condition(lambda: self.cancelled, timeout=timedelta(seconds=delay))
        except TimeoutError:
            pass
        finally:
            self.paced = False
        return True

    async def _send(self, after: int, until: int) -> None:
        s = self.state
        try:
            batch: SendBatchResult = await workflow.execute_activity_method(
                CampaignActivities.send_batch, SendBatchInput(s.run_id, after, s.batch_size, until, self._zones()),
                start_to_close_timeout=timedelta(minutes=10), heartbeat_timeout=timedelta(seconds=s.heartbeat_seconds),
                retry_policy=SEND_RETRY,
            )
            s.sent, s.failed = s.sent + batch.sent, s.failed + batch.failed
        finally:
            self.in_flight -= 1

    @workflow.signal
    def pause(self) -> None:
        self.paused = True

    @workflow.signal
    def resume(self) -> None:
        self.paused = False

    @workflow.signal
    def cancel(self) -> None:
        """Stop at the next batch boundary; the run closes as cancelled."""
        self.cancelled = True

    @workflow.query
    def progress(self) -> CampaignProgress:
        s = self.state
        t = self.totals
        return CampaignProgress(
            total=max(s.total, 0), sent=s.sent, failed=s.failed, paused=self.paused, done=self.done,
            cancelled=self.cancelled, in_flight=self.in_flight, batches_left=len(s.bounds or []),
            suppressed=t.suppressed if t else 0, holdout=t.holdout if t else 0,
            unsent_cancelled=t.cancelled if t else 0, max_per_second=s.max_per_second, paced=self.paced,
            number=s.number, skipped=self.skipped, slots=s.slots, refused=self.refused,
        )
