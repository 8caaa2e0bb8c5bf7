"""The Temporal worker: one `Worker` per task queue, all in this process by default."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

import workflows.campaigns_deferred
import workflows.events
import workflows.ledger.operations
import workflows.promotions.sweep
import workflows.segments.refresh
from activities.campaigns import CampaignActivities
from activities.channels.delivery import service_for
from activities.channels.sweeper import DeliveryActivities
from activities.events import EventsOpsActivities, Retention
from activities.journeys import JourneyActivities
from activities.ledger.operations import LedgerOpsActivities
from activities.ledger.redemptions import RedemptionActivities
from activities.promotions.orders import OrderActivities
from activities.segments import SegmentActivities
from activities.tasks.notify import RewardNotifier
from activities.tasks.progress import TaskActivities
from activities.tasks.rewards import RewardActivities
from api.journeys.starts import ensure_live_journeys
from api.runtime import Runtime
from store.tasks.grants import TaskGrants
from workflows.campaigns import TASK_QUEUE as CAMPAIGNS_QUEUE
from workflows.campaigns import CampaignWorkflow
from workflows.campaigns_deferred import CampaignsDeferredWorkflow
from workflows.channels.sweeper import TASK_QUEUE as CHANNELS_QUEUE
from workflows.channels.sweeper import DeliverySweeperWorkflow, ensure_sweeper
from workflows.events import TASK_QUEUE as EVENTS_QUEUE
from workflows.events import EventsPruneWorkflow
from workflows.journeys.runtime import TASK_QUEUE as JOURNEYS_QUEUE
from workflows.journeys.runtime import JourneyWorkflow
from workflows.ledger.operations import ExpiryWorkflow, ReconciliationWorkflow, RetentionWorkflow
from workflows.ledger.redemptions import TASK_QUEUE as LEDGER_QUEUE
from workflows.ledger.redemptions import RedemptionWorkflow
from workflows.promotions.orders import TASK_QUEUE as PROMOTIONS_QUEUE
from workflows.promotions.orders import OrderWorkflow
from workflows.promotions.sweep import PromotionsSweepWorkflow
from workflows.segments.backfill import SegmentIndexBackfillWorkflow
from workflows.segments.changes import SegmentChangesConsumerWorkflow, SegmentChangesWorkflow
from workflows.segments.refresh import TASK_QUEUE as SEGMENTS_QUEUE
from workflows.segments.refresh import SegmentRefreshLoopWorkflow, SegmentRefreshWorkflow
from workflows.tasks.issuance import RewardIssuanceWorkflow
from workflows.tasks.lifecycle import TaskLifecycleWorkflow
from workflows.tasks.progress import TASK_QUEUE as TASKS_QUEUE
from workflows.tasks.progress import RewardDispatcherWorkflow, TaskProgressConsumer, ensure_workflows

QUEUES = (CAMPAIGNS_QUEUE, SEGMENTS_QUEUE, LEDGER_QUEUE, EVENTS_QUEUE, TASKS_QUEUE, PROMOTIONS_QUEUE, CHANNELS_QUEUE,
          JOURNEYS_QUEUE)


def build_workers(client: Client, runtime: Runtime, queues: Sequence[str] = QUEUES) -> list[Worker]:
    unknown = set(queues) - set(QUEUES)
    if unknown:
        raise ValueError(f"Unknown task queue(s): {', '.join(sorted(unknown))}. Known: {', '.join(QUEUES)}.")
    workers = []
    if CAMPAIGNS_QUEUE in queues:
        campaigns = CampaignActivities(runtime.sessions, runtime.email, runtime.outcomes,
                                       delivery=service_for(runtime.sessions, runtime.channels, runtime.settings))
        workers.append(Worker(
            client, task_queue=CAMPAIGNS_QUEUE, workflows=[CampaignWorkflow, CampaignsDeferredWorkflow],
            activities=[campaigns.open_occurrence, campaigns.snapshot_audience, campaigns.plan_local_sends,
                        campaigns.begin_run, campaigns.partition, campaigns.send_batch, campaigns.finish_run,
                        campaigns.check_variables, campaigns.close_schedule, campaigns.settle_deferred],
            max_concurrent_activities=20,
            # A run's batches go through the task queue to whichever worker polls, not eagerly to the process
            # running the workflow: a second worker process then adds throughput (docs/campaigns.md).
            disable_eager_activity_execution=True,
        ))
    if SEGMENTS_QUEUE in queues:
        segments = SegmentActivities(runtime.sessions, runtime.settings.elasticsearch_url)
        # SegmentChangesWorkflow and SegmentRefreshWorkflow were started by Schedules that start-up now deletes;
        # they stay registered so runs an older release left in flight can finish.
        workers.append(Worker(
            client, task_queue=SEGMENTS_QUEUE,
            workflows=[SegmentChangesConsumerWorkflow, SegmentRefreshLoopWorkflow, SegmentRefreshWorkflow,
                       SegmentChangesWorkflow, SegmentIndexBackfillWorkflow],
            activities=[segments.follow_changes, segments.refresh_segments, segments.consume_changes,
                        segments.backfill_index_chunk],
            max_concurrent_activities=5,  # the changes consumer holds one for minutes at a time
            graceful_shutdown_timeout=timedelta(seconds=5),  # time for it to hand its step back
        ))
    if LEDGER_QUEUE in queues:
        ledger = RedemptionActivities(runtime.sessions)
        ops = LedgerOpsActivities(runtime.sessions, archive_dir=runtime.settings.home / "archive", grants=TaskGrants())
        workers.append(Worker(
            client, task_queue=LEDGER_QUEUE,
            workflows=[RedemptionWorkflow, ReconciliationWorkflow, ExpiryWorkflow, RetentionWorkflow],
            activities=[ledger.hold_points, ledger.reserve_stock, ledger.issue_coupons, ledger.fulfil,
                        ledger.commit_hold, ledger.void_hold, ledger.release_stock, ledger.revoke_coupons,
                        ledger.record_status, ops.void_timed_out_holds, ops.reconcile_accounts,
                        ops.reconcile_postings, ops.reconcile_programs, ops.reconcile_grants, ops.expiry_programs,
                        ops.expire_batch, ops.retention_plan, ops.archive_month],
            max_concurrent_activities=20,
        ))
    if EVENTS_QUEUE in queues:
        s = runtime.settings
        ops_events = EventsOpsActivities(runtime.sessions, Retention.from_days(
            outbox=s.event_outbox_retention_days, dedupe=s.event_dedupe_window_days,
            transitions=s.segment_transitions_retention_days))
        workers.append(Worker(client, task_queue=EVENTS_QUEUE, workflows=[EventsPruneWorkflow],
                              activities=[ops_events.prune_chunk], max_concurrent_activities=2))
    if TASKS_QUEUE in queues:
        notifier = RewardNotifier(runtime.sessions, service_for(runtime.sessions, runtime.channels, runtime.settings))
        tasks = TaskActivities(runtime.sessions, notifier)
        rewards = RewardActivities(runtime.sessions, notifier)
        workers.append(Worker(
            client, task_queue=TASKS_QUEUE,
            workflows=[TaskProgressConsumer, RewardDispatcherWorkflow, RewardIssuanceWorkflow, TaskLifecycleWorkflow],
            activities=[tasks.follow_progress, tasks.claim_grant_batches, tasks.task_state, tasks.change_status,
                        tasks.lapse_unclaimed, rewards.begin_issuance, rewards.post_rewards, rewards.issue_benefits,
                        rewards.notify_rewarded, rewards.finish_issuance, rewards.reverse_postings,
                        rewards.release_budget],
            max_concurrent_activities=20,  # the progress consumer and the dispatcher each hold one for minutes
            graceful_shutdown_timeout=timedelta(seconds=5),
        ))
    if PROMOTIONS_QUEUE in queues:
        promotions = OrderActivities(runtime.sessions)
        workers.append(Worker(client, task_queue=PROMOTIONS_QUEUE, workflows=[OrderWorkflow, PromotionsSweepWorkflow],
                              activities=[promotions.release_order, promotions.sweep_reservations,
                                          promotions.expire_coupons],
                              max_concurrent_activities=20))
    if CHANNELS_QUEUE in queues:
        deliveries = DeliveryActivities(runtime.sessions, service_for(runtime.sessions, runtime.channels,
                                                                      runtime.settings),
                                        callback_tolerance=timedelta(seconds=runtime.settings.callback_tolerance_seconds))
        workers.append(Worker(client, task_queue=CHANNELS_QUEUE, workflows=[DeliverySweeperWorkflow],
                              activities=[deliveries.send_steps, deliveries.sweep_deliveries],
                              max_concurrent_activities=10,  # the sweeper holds one for minutes at a time
                              graceful_shutdown_timeout=timedelta(seconds=5)))
    if JOURNEYS_QUEUE in queues:
        journeys = JourneyActivities(runtime.sessions, service_for(runtime.sessions, runtime.channels,
                                                                   runtime.settings),
                                     default_zone=runtime.settings.default_timezone)
        workers.append(Worker(client, task_queue=JOURNEYS_QUEUE, workflows=[JourneyWorkflow],
                              activities=[journeys.run_journey],
                              max_concurrent_activities=20,  # one per live journey, each held for a window
                              graceful_shutdown_timeout=timedelta(seconds=5)))
    return workers


async def ensure_housekeeping(client: Client, queues: Sequence[str] = QUEUES, runtime: Runtime | None = None) -> None:
    """Create the Schedules and start the long-lived workflows of the domains this process works for
    (idempotent; every process may call it). With `runtime` (database access), live journeys' workflows too."""
    if CAMPAIGNS_QUEUE in queues:
        await workflows.campaigns_deferred.ensure_schedules(client)  # deferred deliveries settled again (10 min)
    if LEDGER_QUEUE in queues:
        await workflows.ledger.operations.ensure_schedules(client)  # reconciliation, expiry, retention
    if SEGMENTS_QUEUE in queues:
        await workflows.segments.refresh.ensure_schedules(client)  # changes consumer, time-based refresh (long-lived)
    if EVENTS_QUEUE in queues:
        await workflows.events.ensure_schedules(client)  # daily prune of outbox, dedupe and segment transitions
    if PROMOTIONS_QUEUE in queues:
        await workflows.promotions.sweep.ensure_schedules(client)  # coupon expiry, reservation leak sweep
    if TASKS_QUEUE in queues:
        await ensure_workflows(client)  # task progress consumer and reward dispatcher (long-lived)
    if CHANNELS_QUEUE in queues:
        await ensure_sweeper(client)  # receipt windows, webhook failures, quiet hours (long-lived)
    if JOURNEYS_QUEUE in queues and runtime is not None:
        await ensure_live_journeys(client, runtime.sessions, runtime.settings)  # journey:{id} of each live journey


async def run_workers(workers: Sequence[Worker]) -> None:
    await asyncio.gather(*(w.run() for w in workers))
