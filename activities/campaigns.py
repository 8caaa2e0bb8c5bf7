"""Campaign activities: open a recurring campaign's occurrence as a numbered run, snapshot the audience, plan a
local-time run's per-zone instants, partition the recipients into non-overlapping ranges, send one batch (each
variant's templates rendered in confined worker processes; a message whose template fails or passes a bound fails
alone), close the run (completed, or cancelled with the unsent recorded)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.channels.delivery import DeliveryService
from activities.heartbeats import heartbeating
from channels.base import ErrorClass, Message, SendResult
from channels.email import EmailChannel
from core.confinement import Confinement
from core.metrics import BATCH_SECONDS, MESSAGES
from domain import templates
from domain.campaigns import FINAL, CampaignStatus, assemble, parts
from domain.campaigns_timing import local_slots, parse_local_time
from store.campaigns import deferred, definitions, occurrences, runs, variables
from store.campaigns.models import Campaign
from store.channels import records
from store.channels.records import Step
from store.db import transaction

log = structlog.get_logger("nudge.campaigns")


@dataclass
class RunInput:
    run_id: int
    cancelled: bool = False  # finish_run: the run was cancelled, its unsent recipients are recorded so


@dataclass
class PartitionInput:
    run_id: int
    size: int
    zones: list[str] | None = None  # a local-time slot's zone names: only their recipients


@dataclass
class OccurrenceInput:
    campaign_id: int
    workflow_id: str  # the occurrence's own (the schedule appends its time): the run is found again on a retry
    scheduled_at: float | None = None  # epoch seconds of the occurrence


@dataclass
class ScheduleInput:
    campaign_id: int


@dataclass
class Occurrence:
    run_id: int  # 0: the campaign was not waiting for an occurrence (paused, cancelled, completed): skipped
    number: int = 0


@dataclass
class LocalPlanInput:
    run_id: int
    local_time: str  # HH:MM
    default_zone: str  # for recipients without a (known) zone
    start: float  # epoch seconds, the workflow's clock: each zone sends at its first local_time at or after it


@dataclass
class LocalSlot:
    zones: list[str]  # the recipients' zone names sending at this instant ("" for none: the default zone)
    due_at: float  # epoch seconds
    started_at: float | None = None  # workflow time when its first batch started


@dataclass
class SendBatchInput:
    run_id: int
    after_contact_id: int
    limit: int
    until_contact_id: int | None = None  # the batch's range is (after, until]: concurrent batches never overlap
    zones: list[str] | None = None  # a local-time slot's zone names: only their recipients


@dataclass
class SendBatchResult:
    last_contact_id: int
    sent: int
    failed: int
    done: bool


@dataclass
class RunTotals:
    total: int
    sent: int
    failed: int
    suppressed: int = 0
    holdout: int = 0
    cancelled: int = 0


class OutcomeRecorder:
    """Records SMTP outcomes while the lanes keep sending: outcomes queue up and one flusher writes whatever has
    gathered in one statement (a round trip per message halved the send rate). A lane waits while `backlog`
    outcomes are unrecorded, so a worker killed mid-batch resends at most `backlog` messages plus one per lane,
    each with its Message-ID (which mailbox providers and the sink file once). Leaving the block flushes the rest."""

    PER_LANE = 2  # unrecorded outcomes allowed per SMTP lane

    def __init__(self, engine: AsyncEngine, backlog: int = 16) -> None:
        self.engine = engine
        self.backlog = backlog
        self.pending: list[runs.Outcome] = []
        self._room = asyncio.Condition()
        self._wake = asyncio.Event()
        self._closing = False
        self._failed: BaseException | None = None
        self._flusher: asyncio.Task[None] | None = None

    async def __aenter__(self) -> OutcomeRecorder:
        self._flusher = asyncio.create_task(self._flush())
        return self

    async def __aexit__(self, *_: object) -> None:
        self._closing = True
        self._wake.set()
        assert self._flusher is not None
        await self._flusher  # raises what a write raised: the activity retries, and resends only the unrecorded

    async def add(self, outcome: runs.Outcome) -> None:
        async with self._room:
            await self._room.wait_for(lambda: len(self.pending) < self.backlog or self._failed is not None)
            if self._failed is not None:
                raise RuntimeError("recording send outcomes failed") from self._failed
            self.pending.append(outcome)
        self._wake.set()

    async def _flush(self) -> None:
        try:
            while not (self._closing and not self.pending):
                await self._wake.wait()
                self._wake.clear()
                while self.pending:
                    group, self.pending = self.pending, []
                    async with self.engine.connect() as conn:
                        await runs.record_outcomes(conn, group)
                    async with self._room:
                        self._room.notify_all()
        except BaseException as exc:
            self._failed = exc
            async with self._room:
                self._room.notify_all()
            raise


class CampaignActivities:
    """`delivery` sends campaigns with a fallback chain (or any channel but email) through the channels' delivery
    service; an email-only campaign keeps the direct path, which records each message as it goes (docs/campaigns.md
    says why)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], email: EmailChannel, outcomes: AsyncEngine,
                 rendering: Confinement | None = None, delivery: DeliveryService | None = None) -> None:
        self.sessions = sessions
        self.email = email
        self.outcomes = outcomes
        self.rendering = rendering or definitions.rendering()
        self.delivery = delivery

    @activity.defn
    async def snapshot_audience(self, params: RunInput) -> int:
        async with transaction(self.sessions) as session:
            return await runs.snapshot_audience(session, params.run_id)

    @activity.defn
    async def open_occurrence(self, params: OccurrenceInput) -> Occurrence:
        at = datetime.fromtimestamp(params.scheduled_at, UTC) if params.scheduled_at is not None else None
        async with transaction(self.sessions) as session:
            run = await occurrences.open_occurrence(session, params.campaign_id, params.workflow_id, at)
        if run is None:
            log.info("occurrence skipped: the campaign is not waiting for one", campaign_id=params.campaign_id,
                     workflow_id=params.workflow_id)
            return Occurrence(0)
        return Occurrence(run.id, run.number)

    @activity.defn
    async def check_variables(self, params: RunInput) -> str | None:
        """An occurrence's snapshot checked for template variables its recipients lack (counted in SQL, each
        variant's parts against its recipients): None, or the reason, the run then closed as failed with it."""
        async with transaction(self.sessions) as session:
            reason = await variables.check_run(session, params.run_id)
            if reason is not None:
                await variables.refuse_run(session, params.run_id, reason)
        if reason is not None:
            log.warning("occurrence not sent: recipients lack a template variable", run_id=params.run_id,
                        reason=reason)
        return reason

    @activity.defn
    async def close_schedule(self, params: ScheduleInput) -> bool:
        """Delete a recurring campaign's Temporal Schedule once the campaign is over (completed after its last
        occurrence, or cancelled, e.g. by cancelling an occurrence's workflow in the Temporal UI): whatever it
        started next would be skipped. True when the campaign is over (the schedule is gone)."""
        async with self.sessions() as session:
            campaign = await definitions.get_campaign(session, params.campaign_id)
        if CampaignStatus(campaign.status) not in FINAL:
            return False
        try:
            await activity.client().get_schedule_handle(occurrences.schedule_id(campaign.id)).delete()
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
        log.info("schedule deleted: the campaign is over", campaign_id=campaign.id, status=campaign.status)
        return True

    @activity.defn
    async def plan_local_sends(self, params: LocalPlanInput) -> list[LocalSlot]:
        """The run's recipients grouped by the instant `local_time` next comes in their zone (domain rule; zone
        data read here so the workflow never touches a time zone)."""
        async with self.sessions() as session:
            names = await runs.queued_zones(session, params.run_id)
        slots = local_slots(names, parse_local_time(params.local_time), params.default_zone,
                            datetime.fromtimestamp(params.start, UTC))
        return [LocalSlot(list(s.zones), s.due.timestamp()) for s in slots]

    @activity.defn
    async def begin_run(self, params: RunInput) -> bool:
        async with transaction(self.sessions) as session:
            return await runs.begin_run(session, params.run_id)

    @activity.defn
    async def partition(self, params: PartitionInput) -> list[int]:
        async with self.sessions() as session:
            return await runs.partition(session, params.run_id, params.size, params.zones)

    @activity.defn
    async def send_batch(self, params: SendBatchInput) -> SendBatchResult:
        async with self.sessions() as session:
            run = await runs.get_run(session, params.run_id)
            campaign = await definitions.get_campaign(session, run.campaign_id)
            page = await runs.queued_page(session, params.run_id, params.after_contact_id, params.limit,
                                          params.until_contact_id, params.zones)
        if not page:
            return SendBatchResult(params.after_contact_id, 0, 0, done=True)
        if list(campaign.chain) != ["email"]:
            return await self._through_chain(campaign, page, params)

        messages, refused = await self._render(campaign, page)
        contact_of = {p.key: p.contact_id for p in page}

        started = time.perf_counter()
        async with OutcomeRecorder(self.outcomes, OutcomeRecorder.PER_LANE * self.email.concurrency) as recorder:
            async def record(result: SendResult) -> None:
                await recorder.add(runs.Outcome(contact_of[result.key], result.key,
                                                "sent" if result.accepted else "failed",
                                                result.provider_message_id, result.error))
                activity.heartbeat(result.key)

            for result in refused:
                log.warning("message not rendered", campaign_id=campaign.id, key=result.key, error=result.error)
                await record(result)
            results = refused + await self.email.send_many(messages, on_result=record)
        BATCH_SECONDS.labels(campaign.channel).observe(time.perf_counter() - started)
        sent = sum(r.accepted for r in results)
        MESSAGES.labels(campaign.channel, "sent").inc(sent)
        MESSAGES.labels(campaign.channel, "failed").inc(len(results) - sent)
        log.info("batch sent", campaign_id=campaign.id, run_id=params.run_id, sent=sent,
                 failed=len(results) - sent, attempt=activity.info().attempt)
        return SendBatchResult(page[-1].contact_id, sent, len(results) - sent, done=len(page) < params.limit)

    async def _through_chain(self, campaign: Campaign, page: list[runs.PendingDelivery],
                             params: SendBatchInput) -> SendBatchResult:
        """Render every channel of the chain for every recipient (confined), hand the batch to the delivery service
        (which records, screens, sends along the chain and leaves receipt windows to the sweeper), then settle the
        deliveries from what it recorded, in one statement."""
        if self.delivery is None:
            raise ApplicationError("This worker has no delivery service for fallback chains.", non_retryable=True)
        variants = {str(v["name"]): v for v in campaign.variants}
        meta = {"id": campaign.id, "name": campaign.name}
        calls, shapes = [], []
        for pending in page:
            v = variants.get(pending.variant or "", {})
            email = {"subject": v.get("subject") or campaign.subject, "body": v.get("body") or campaign.body,
                     "html": v.get("html") or campaign.html}
            context = templates.contact_context(pending.contact, meta | {"variant": pending.variant})
            shape = [(channel, parts(channel, email, campaign.content)) for channel in campaign.chain]
            calls += [(source, context, html) for _, ps in shape for _, source, html in ps]
            shapes.append(shape)
        outcomes = await self.rendering.map(templates.render, calls)
        steps, refused, offset = [], [], 0
        for pending, shape in zip(page, shapes, strict=True):
            content, problems = {}, []
            for channel, ps in shape:
                rendered = outcomes[offset:offset + len(ps)]
                offset += len(ps)
                problems += [f"{channel}.{'.'.join(path)}: the template {out}"
                             for (path, _, _), out in zip(ps, rendered, strict=True) if isinstance(out, BaseException)]
                content[channel] = assemble(channel, campaign.content, [
                    (path, str(out)) for (path, _, _), out in zip(ps, rendered, strict=True)])
            if problems:
                refused.append(SendResult(pending.key, accepted=False, error="; ".join(problems),
                                          error_class=ErrorClass.NON_RETRYABLE))
            else:
                steps.append(Step(pending.contact_id, pending.key, list(campaign.chain), content))
        for result in refused:
            async with self.outcomes.connect() as conn:
                await runs.record_outcome(conn, next(p.contact_id for p in page if p.key == result.key), result.key,
                                          status="failed", provider_message_id=None, error=result.error)
        started = time.perf_counter()
        timeout = activity.info().heartbeat_timeout
        # Beats while the chain sends: a slow batch is not mistaken for a dead worker and retried mid-send.
        async with heartbeating(lambda: None, every=min(5.0, timeout.total_seconds() / 3) if timeout else 5.0):
            progress = await self.delivery.send(steps)
        BATCH_SECONDS.labels("chain").observe(time.perf_counter() - started)
        async with transaction(self.sessions) as session:
            await records.by_key(session)  # 500 key lookups, not a scan of the run's deliveries per batch
            await runs.settle_from_plans(session, [(st.contact_id, st.key) for st in steps])
        log.info("batch handed to the delivery service", campaign_id=campaign.id, run_id=params.run_id,
                 sent=progress.sent, failed=progress.failed, suppressed=progress.suppressed,
                 deferred=progress.deferred, refused=len(refused))
        return SendBatchResult(page[-1].contact_id, progress.sent, progress.failed + len(refused),
                               done=len(page) < params.limit)

    async def _render(self, campaign: Campaign,
                      page: list[runs.PendingDelivery]) -> tuple[list[Message], list[SendResult]]:
        """Every part of every message rendered in the confined workers. A message whose render fails or passes a
        bound is refused on its own (failed, with the reason); the others are sent."""
        variants = {str(v["name"]): v for v in campaign.variants}
        meta = {"id": campaign.id, "name": campaign.name}
        calls, shapes = [], []
        for pending in page:
            v = variants.get(pending.variant or "", {})
            html_source = v.get("html") or campaign.html
            parts = [("subject", v.get("subject") or campaign.subject, False),
                     ("body", v.get("body") or campaign.body, False),
                     *([("html", html_source, True)] if html_source else [])]
            context = templates.contact_context(pending.contact, meta | {"variant": pending.variant})
            calls += [(source, context, html) for _, source, html in parts]
            shapes.append(parts)
        outcomes = await self.rendering.map(templates.render, calls)
        messages, refused = [], []
        offset = 0
        for pending, parts in zip(page, shapes, strict=True):
            rendered = outcomes[offset:offset + len(parts)]
            offset += len(parts)
            problems = [f"{field}: the template {outcome}"
                        for (field, _, _), outcome in zip(parts, rendered, strict=True)
                        if isinstance(outcome, BaseException)]
            if problems:
                refused.append(SendResult(pending.key, accepted=False, error="; ".join(problems),
                                          error_class=ErrorClass.NON_RETRYABLE))
            else:
                messages.append(Message(key=pending.key, to=pending.email, subject=rendered[0], text=rendered[1],
                                        html=rendered[2] if len(parts) > 2 else None))
        return messages, refused

    @activity.defn
    async def finish_run(self, params: RunInput) -> RunTotals:
        async with transaction(self.sessions) as session:
            counts = await runs.finish_run(session, params.run_id, cancelled=params.cancelled)
        return RunTotals(total=counts.total, sent=counts.sent, failed=counts.failed, suppressed=counts.suppressed,
                         holdout=counts.holdout, cancelled=counts.cancelled)

    @activity.defn
    async def settle_deferred(self) -> int:
        """Deferred deliveries whose plans have moved on since, settled again in batches of 5,000 (at most 20 per
        call; the schedule comes back): returns how many."""
        settled = 0
        for _ in range(20):
            async with transaction(self.sessions) as session:
                await records.by_key(session)  # each deferred row's plan and attempts by key
                n = await deferred.settle_deferred(session, limit=5000)
            settled += n
            if n < 5000:
                break
            activity.heartbeat(settled)
        return settled
