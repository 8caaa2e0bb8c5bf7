"""Campaign activities: snapshot the audience, send one batch, close the run."""

from __future__ import annotations

import time
from dataclasses import dataclass

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from channels.base import Message, SendResult
from channels.email import EmailChannel
from core.metrics import BATCH_SECONDS, MESSAGES
from domain import templates
from domain.errors import DomainError
from store.campaigns import definitions, runs
from store.db import transaction

log = structlog.get_logger("nudge.campaigns")


@dataclass
class RunInput:
    run_id: int


@dataclass
class SendBatchInput:
    run_id: int
    after_contact_id: int
    limit: int


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


class CampaignActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], email: EmailChannel, outcomes: AsyncEngine) -> None:
        self.sessions = sessions
        self.email = email
        self.outcomes = outcomes

    @activity.defn
    async def snapshot_audience(self, params: RunInput) -> int:
        async with transaction(self.sessions) as session:
            return await runs.snapshot_audience(session, params.run_id)

    @activity.defn
    async def send_batch(self, params: SendBatchInput) -> SendBatchResult:
        async with self.sessions() as session:
            run = await runs.get_run(session, params.run_id)
            campaign = await definitions.get_campaign(session, run.campaign_id)
            page = await runs.queued_page(session, params.run_id, params.after_contact_id, params.limit)
        if not page:
            return SendBatchResult(params.after_contact_id, 0, 0, done=True)

        meta = {"id": campaign.id, "name": campaign.name}
        messages = []
        for pending in page:
            context = templates.contact_context(pending.contact, meta)
            try:
                messages.append(Message(
                    key=pending.key, to=pending.email,
                    subject=templates.render(campaign.subject, context),
                    text=templates.render(campaign.body, context),
                    html=templates.render(campaign.html, context, html=True) if campaign.html else None,
                ))
            except DomainError as exc:
                raise ApplicationError(str(exc), non_retryable=True, type="TemplateProblem") from exc
        contact_of = {p.key: p.contact_id for p in page}

        async def record(result: SendResult) -> None:
            # Recorded message by message, so a crash right after a send leaves at most that one unrecorded.
            async with self.outcomes.connect() as conn:
                await runs.record_outcome(
                    conn, contact_of[result.key], result.key,
                    status="sent" if result.accepted else "failed",
                    provider_message_id=result.provider_message_id, error=result.error,
                )
            activity.heartbeat(result.key)

        started = time.perf_counter()
        results = await self.email.send_many(messages, on_result=record)
        BATCH_SECONDS.labels(campaign.channel).observe(time.perf_counter() - started)
        sent = sum(r.accepted for r in results)
        MESSAGES.labels(campaign.channel, "sent").inc(sent)
        MESSAGES.labels(campaign.channel, "failed").inc(len(results) - sent)
        log.info("batch sent", campaign_id=campaign.id, run_id=params.run_id, sent=sent,
                 failed=len(results) - sent, attempt=activity.info().attempt)
        return SendBatchResult(page[-1].contact_id, sent, len(results) - sent, done=len(page) < params.limit)

    @activity.defn
    async def finish_run(self, params: RunInput) -> RunTotals:
        async with transaction(self.sessions) as session:
            counts = await runs.finish_run(session, params.run_id)
        return RunTotals(total=counts.total, sent=counts.sent, failed=counts.failed)
