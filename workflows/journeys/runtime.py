"""JourneyWorkflow: one per journey (`journey:{id}`, `NudgeKind=journey`, `JourneyId`), never one per contact.

Started when the journey is first published; long-lived. Each round is one `run_journey` activity that consumes
the journey's new events, advances its due contacts in batches and sends; it returns when the next contact is
due. The workflow then sleeps on a durable timer until that moment, or the poll interval (new events), whichever
comes first — or until a signal: `poke` (a new version, new events), `pause`, `resume`, `archive`. It passes its
own clock (`workflow.now()`) to the activity, so in the time-skipping test server a one-day wait passes in
milliseconds and every decision is made at the workflow's time. Continue-as-new when the history grows. After an
archive the passes end, in batches, the contacts the archive's own transaction left (a large journey), then the
workflow completes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey, SearchAttributePair

with workflow.unsafe.imports_passed_through():
    from activities.journeys import JourneyActivities, StepInput, StepResult

TASK_QUEUE = "nudge-journeys"
JOURNEY_ID = SearchAttributeKey.for_keyword("JourneyId")
RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2, maximum_interval=timedelta(minutes=1))
HEARTBEAT = timedelta(seconds=60)
SLOWEST_PASS = timedelta(minutes=30)
ARCHIVE_DRAINS = "archive-drains"  # the patch: after an archive, passes end the contacts it left, then completion


def workflow_id(journey_id: int) -> str:
    return f"journey:{journey_id}"


def journey_attribute(journey_id: int) -> SearchAttributePair[str]:
    return SearchAttributePair(JOURNEY_ID, str(journey_id))


def summary(journey_id: int, name: str) -> str:
    return f"Journey {journey_id}: {name[:80]}"


@dataclass
class JourneyInput:
    journey_id: int
    poll_seconds: float = 2.0     # how soon new events are seen without a poke
    window_seconds: float = 0.0   # >0: the activity itself polls (wall clock) this long while idle
    batch_size: int = 1000
    rounds: int = 2000            # per run, then continue-as-new
    wall_clock: bool = False      # True: the activity reads the wall clock (production with a window)


@dataclass
class JourneyTotals:
    rounds: int = 0
    entered: int = 0
    resumed: int = 0
    converted: int = 0
    advanced: int = 0
    sent: int = 0
    ended: int = 0  # contacts an archive left, ended by the passes after it
    status: str = "live"


@workflow.defn
class JourneyWorkflow:
    @workflow.init
    def __init__(self, params: JourneyInput) -> None:
        self.totals = JourneyTotals()
        self.poked = False
        self.paused = False
        self.archived = False

    @workflow.signal
    def poke(self) -> None:
        self.poked = True

    @workflow.signal
    def pause(self) -> None:
        self.paused = True

    @workflow.signal
    def resume(self) -> None:
        self.paused = False
        self.poked = True

    @workflow.signal
    def archive(self) -> None:
        self.archived = True

    @workflow.query
    def progress(self) -> JourneyTotals:
        return self.totals

    @workflow.run
    async def run(self, params: JourneyInput) -> JourneyTotals:
        t = self.totals
        stale = False  # a pass after the archive signal still found the journey live
        for _ in range(params.rounds):
            # An archive ends its first contacts itself; the passes end the rest, then the workflow completes
            # (a run started before that change completes at once, as it did).
            if self.archived and not workflow.patched(ARCHIVE_DRAINS):
                t.status = "archived"
                return t
            if self.paused and not self.archived:
                t.status = "paused"
                await workflow.wait_condition(lambda: not self.paused or self.archived)
                continue
            self.poked = False
            done: StepResult = await workflow.execute_activity_method(
                JourneyActivities.run_journey,
                StepInput(params.journey_id, None if params.wall_clock else workflow.now(), params.batch_size,
                          window_seconds=params.window_seconds, poll_seconds=params.poll_seconds),
                start_to_close_timeout=timedelta(seconds=params.window_seconds) + SLOWEST_PASS,
                heartbeat_timeout=HEARTBEAT, retry_policy=RETRY)
            t.rounds += 1
            t.entered, t.resumed, t.converted = t.entered + done.entered, t.resumed + done.resumed, \
                t.converted + done.converted
            t.advanced, t.sent, t.status = t.advanced + done.advanced, t.sent + done.sent, done.status
            t.ended += done.ended
            if done.status == "missing" or (done.status == "archived" and not done.more):
                return t
            if done.status == "archived":
                continue
            if self.archived and done.status == "live" and workflow.patched(ARCHIVE_DRAINS):
                # Signalled, but this pass read the journey before the archive committed: one more pass ends the
                # rest. A second live answer means the journey was never archived: the signal alone ends the run.
                if stale:
                    t.status = "archived"
                    return t
                stale = True
                continue
            if done.status == "paused":
                self.paused = True
                continue
            if done.more:
                continue
            wait = timedelta(seconds=params.poll_seconds)
            if done.next_wake is not None:
                wait = max(timedelta(0), min(wait, done.next_wake - workflow.now()))
            if wait > timedelta(0):
                try:
                    await workflow.wait_condition(lambda: self.poked or self.paused or self.archived, timeout=wait)
                except TimeoutError:
                    pass
            if workflow.info().is_continue_as_new_suggested():
                break
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(params)
