"""Campaign activities: snapshot the audience, send one batch (rendered in confined worker processes; a message
whose template fails or passes a bound fails alone), close the run."""

from __future__ import annotations

import time
from dataclasses import dataclass

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio import activity

from channels.base import ErrorClass, Message, SendResult
from channels.email import EmailChannel
from core.confinement import Confinement
from core.metrics import BATCH_SECONDS, MESSAGES
from domain import templates
from store.campaigns import definitions, runs
from store.campaigns.models import Campaign
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
    def __init__(self, sessions: async_sessionmaker[AsyncSession], email: EmailChannel, outcomes: AsyncEngine,
                 rendering: Confinement | None = None) -> None:
        self.sessions = sessions
        self.email = email
        self.outcomes = outcomes
        self.rendering = rendering or definitions.rendering()

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

        messages, refused = await self._render(campaign, page)
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

        for result in refused:
            log.warning("message not rendered", campaign_id=campaign.id, key=result.key, error=result.error)
            await record(result)

        started = time.perf_counter()
        results = refused + await self.email.send_many(messages, on_result=record)
        BATCH_SECONDS.labels(campaign.channel).observe(time.perf_counter() - started)
        sent = sum(r.accepted for r in results)
        MESSAGES.labels(campaign.channel, "sent").inc(sent)
        MESSAGES.labels(campaign.channel, "failed").inc(len(results) - sent)
        log.info("batch sent", campaign_id=campaign.id, run_id=params.run_id, sent=sent,
                 failed=len(results) - sent, attempt=activity.info().attempt)
        return SendBatchResult(page[-1].contact_id, sent, len(results) - sent, done=len(page) < params.limit)

    async def _render(self, campaign: Campaign,
                      page: list[runs.PendingDelivery]) -> tuple[list[Message], list[SendResult]]:
        """Every part of every message rendered in the confined workers. A message whose render fails or passes a
        bound is refused on its own (failed, with the reason); the others are sent."""
        parts = [("subject", campaign.subject, False), ("body", campaign.body, False),
                 *([("html", campaign.html, True)] if campaign.html else [])]
        meta = {"id": campaign.id, "name": campaign.name}
        calls = []
        for pending in page:
            context = templates.contact_context(pending.contact, meta)
            calls += [(source, context, html) for _, source, html in parts]
        outcomes = await self.rendering.map(templates.render, calls)
        messages, refused = [], []
        for index, pending in enumerate(page):
            rendered = outcomes[index * len(parts):(index + 1) * len(parts)]
            problems = [f"{field}: the template {outcome}"
                        for (field, _, _), outcome in zip(parts, rendered, strict=True)
                        if isinstance(outcome, BaseException)]
            if problems:
                refused.append(SendResult(pending.key, accepted=False, error="; ".join(problems),
                                          error_class=ErrorClass.NON_RETRYABLE))
            else:
                messages.append(Message(key=pending.key, to=pending.email, subject=rendered[0], text=rendered[1],
                                        html=rendered[2] if campaign.html else None))
        return messages, refused

    @activity.defn
    async def finish_run(self, params: RunInput) -> RunTotals:
        async with transaction(self.sessions) as session:
            counts = await runs.finish_run(session, params.run_id)
        return RunTotals(total=counts.total, sent=counts.sent, failed=counts.failed)
