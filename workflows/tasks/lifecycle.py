"""TaskLifecycleWorkflow: one per task (`task:{id}`), from approval to its end; few of them, each long-lived.

approved → active when the task's start time comes (at once without one) → ended when its end time comes.
Paused ⇄ active is the marketer's (the API) or the progress engine's (budget exhausted: auto-pause with an alert);
the API signals `refresh` after every change so the timers are recomputed. Between changes it wakes every
`lapse_every_seconds` to lapse unclaimed rewards whose claim window closed (period rollover needs no timer:
period keys come from event times). Start and end times come from an activity and are compared with
`workflow.now()`, so the timers are deterministic (and skip in the time-skipping test server).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.tasks.progress import StatusChange, TaskActivities, TaskRef, TaskState

TASK_QUEUE = "nudge-tasks"
RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))


def workflow_id(task_id: int) -> str:
    return f"task:{task_id}"


@dataclass
class LifecycleInput:
    task_id: int
    lapse_every_seconds: float = 3600.0
    rounds: int = 500  # per run, then continue-as-new


@workflow.defn
class TaskLifecycleWorkflow:
    @workflow.init
    def __init__(self, params: LifecycleInput) -> None:
        self.changed = False
        self.status = "approved"

    @workflow.signal
    def refresh(self) -> None:
        self.changed = True

    async def _state(self, task_id: int) -> TaskState:
        state: TaskState = await workflow.execute_activity_method(
            TaskActivities.task_state, TaskRef(task_id), start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RETRY)
        self.status = state.status
        return state

    async def _set(self, task_id: int, status: str) -> None:
        self.status = await workflow.execute_activity_method(
            TaskActivities.change_status, StatusChange(task_id, status), start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RETRY)

    @workflow.run
    async def run(self, params: LifecycleInput) -> str:
        for _ in range(params.rounds):
            self.changed = False  # before the read: a change signalled during it wakes the wait below
            state = await self._state(params.task_id)
            now = workflow.now().timestamp()
            starts_in = state.starts_at - now if state.starts_at is not None else None
            ends_in = state.ends_at - now if state.ends_at is not None else None
            if state.status == "ended":
                return "ended"
            if state.status in ("active", "paused") and ends_in is not None and ends_in <= 0:
                await self._set(params.task_id, "ended")
                continue
            if state.status == "approved" and (starts_in is None or starts_in <= 0):
                await self._set(params.task_id, "active")
                continue
            waits = [params.lapse_every_seconds]
            if state.status == "approved" and starts_in is not None:
                waits.append(starts_in)
            if ends_in is not None:
                waits.append(ends_in)
            woke = await self._wait(min(waits))
            if not woke:
                await workflow.execute_activity_method(
                    TaskActivities.lapse_unclaimed, TaskRef(params.task_id, workflow.now().timestamp()),
                    start_to_close_timeout=timedelta(minutes=5), retry_policy=RETRY)
            if workflow.info().is_continue_as_new_suggested():
                break
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(params)

    async def _wait(self, seconds: float) -> bool:
        """True when a signal woke it, False when the time ran out."""
        try:
            await workflow.wait_condition(lambda: self.changed, timeout=timedelta(seconds=max(seconds, 0.001)))
        except TimeoutError:
            return False
        return True

    @workflow.query
    def current_status(self) -> str:
        return self.status
