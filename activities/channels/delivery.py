"""Sending steps through fallback chains: the one service both the send activity and the receipt-window sweeper
use (and the broadcast, the journeys and the benchmark can). Set-based per batch: one transaction claims and
screens the batch (store/channels/records.py), the channels send it, one transaction records what they said;
plans a permanent failure made due again go straight to their next channel, in the same call."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.channels.inbox import InboxChannel
from channels.base import Channel, ErrorClass, Message, SendResult
from channels.breaker import CircuitBreaker
from core.settings import Settings
from domain.channels.caps import parse_caps
from domain.channels.policy import DeliveryPolicy
from domain.channels.quiet import QuietHours
from domain.channels.tokens import LinkToken, Purpose, sign
from domain.channels.tracking import track_html
from store.channels import rates, records
from store.channels.records import Claimed, Job, Outcome, Step
from store.channels.webhooks import link_secret
from store.db import transaction


def policy_from(settings: Settings) -> DeliveryPolicy:
    windows = {}
    for part in filter(None, (p.strip() for p in settings.receipt_windows.split(","))):
        channel, _, seconds = part.partition(":")
        windows[channel.strip()] = timedelta(seconds=float(seconds))
    rates = {c.strip(): float(r) for c, _, r in (p.partition(":") for p in settings.provider_rates.split(",")
                                                  if p.strip())}
    return DeliveryPolicy(caps=parse_caps(settings.frequency_caps), quiet=QuietHours.parse(settings.quiet_hours),
                          default_zone=settings.default_timezone, windows=windows, rates=rates)


@dataclass
class Progress:
    claimed: int = 0
    sent: int = 0
    failed: int = 0
    suppressed: int = 0
    deferred: int = 0
    done: int = 0

    def merge(self, other: Progress) -> None:
        for name in ("claimed", "sent", "failed", "suppressed", "deferred", "done"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def add(self, claimed: Claimed) -> None:
        self.claimed += len(claimed.jobs)
        self.suppressed += claimed.suppressed
        self.deferred += claimed.deferred
        self.done += claimed.done


class DeliveryService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], channels: Mapping[str, Channel],
                 policy: DeliveryPolicy, *, public_url: str = "http://127.0.0.1:8000",
                 breakers: dict[str, CircuitBreaker] | None = None) -> None:
        self.sessions = sessions
        self.channels = channels
        self.policy = policy
        self.breakers = breakers if breakers is not None else {}  # per provider, this process's
        self.public_url = public_url.rstrip("/")
        self._secret: bytes | None = None

    async def send(self, steps: Sequence[Step], *, now: datetime | None = None) -> Progress:
        """Record the steps (idempotent: a retried call finds them) and send each through its chain as far as
        it goes now; what waits for a receipt window or quiet hours is left to the sweeper."""
        now = now or datetime.now(UTC)
        # Recorded and claimed in one write per plan: a retried call finds its plans recorded and claims nothing
        # (a send its first call left unfinished is the sweeper's once the lease runs out).
        async with transaction(self.sessions) as s:
            first = await records.register_claimed(s, self.policy, steps, now)
        return await self._rounds([(st.contact_id, st.key) for st in steps], len(steps), now, first)

    async def send_claimed(self, claimed: Claimed, steps: Sequence[Step], *, now: datetime | None = None) -> Progress:
        """`send` for steps the caller registered and claimed in its own transaction (`records.register_claimed`:
        a journey's move does, with the state change): their jobs go to the channels at once."""
        return await self._rounds([(st.contact_id, st.key) for st in steps], len(steps), now or datetime.now(UTC),
                                  claimed)

    async def sweep(self, *, limit: int = 500, now: datetime | None = None,
                    only: Sequence[Step] | None = None) -> Progress:
        """One batch of due plans: ended receipt windows, failures reported by webhook, ended quiet hours,
        retries and sends whose worker died. With `only`, just those steps' plans (whatever else is due)."""
        scope = None if only is None else [(st.contact_id, st.key) for st in only]
        return await self._rounds(scope, limit, now or datetime.now(UTC))

    async def _rounds(self, only: list[tuple[int, str]] | None, limit: int, now: datetime,
                      first: Claimed | None = None) -> Progress:
        progress = Progress()
        for _ in range(8):  # a chain is at most a few channels long; each round moves every plan one channel on
            if first is not None:  # claimed by the caller's transaction
                claimed, first = first, None
            else:
                async with transaction(self.sessions) as s:
                    await records.by_key(s)
                    claimed = await records.claim(s, self.policy, now, only=only, limit=limit)
            progress.add(claimed)
            if not claimed.jobs:
                break
            if only is None:  # a sweep: its later rounds move on this batch's plans, not plans due since
                only = [(j.contact_id, j.key) for j in claimed.jobs]
            outcomes = await self._deliver(claimed.jobs)
            progress.sent += sum(o.accepted for o in outcomes)
            progress.failed += sum(not o.accepted for o in outcomes)
            async with transaction(self.sessions) as s:
                await records.by_key(s)
                again = await records.record_results(s, self.policy, outcomes, now)
            if not again:
                break
        return progress

    async def _deliver(self, jobs: Sequence[Job]) -> list[Outcome]:
        by_channel: dict[str, list[Job]] = defaultdict(list)
        for job in jobs:
            by_channel[job.channel].append(job)
        secret = await self._link_secret()
        parts = await asyncio.gather(*(self._through(name, batch, secret) for name, batch in by_channel.items()))
        return [o for part in parts for o in part]

    async def _through(self, name: str, jobs: list[Job], secret: bytes) -> list[Outcome]:
        channel = self.channels.get(name)
        if channel is None:
            return [Outcome(j, False, error=f"channel {name} is not configured", error_class="unreachable")
                    for j in jobs]
        throttled: list[Outcome] = []
        rate = self.policy.rates.get(name)
        if rate:
            async with transaction(self.sessions) as s:
                granted = await rates.take(s, name, len(jobs), rate=rate, burst=max(1, int(rate * 2)),
                                           now=datetime.now(UTC))
            jobs, held = jobs[:granted], jobs[granted:]
            throttled = [Outcome(j, False, error=f"{name} rate limit ({rate:g}/s)", error_class="throttled")
                         for j in held]
            if not jobs:
                return throttled
        breaker = self.breakers.setdefault(name, CircuitBreaker(name))
        if not breaker.allow():
            # The provider keeps failing: move on to the fallback channel now, or wait where there is none.
            return [Outcome(j, False, error=f"{name} circuit breaker open: the provider keeps failing",
                            error_class="breaker_open" if j.fallback else "throttled") for j in jobs] + throttled
        messages = [self.message(j, secret) for j in jobs]
        try:
            results = await channel.send_many(messages)
        except Exception as exc:  # noqa: BLE001 - the provider is unreachable: every message is retried later
            breaker.record(False)
            return [Outcome(j, False, error=f"{type(exc).__name__}: {exc}", error_class="retryable")
                    for j in jobs] + throttled
        by_key: dict[str, SendResult] = {r.key: r for r in results}
        for r in results:
            if r.accepted or r.error_class is ErrorClass.RETRYABLE:
                breaker.record(r.accepted)
        outcomes = []
        for j in jobs:
            r = by_key.get(j.message_key)
            if r is None:
                outcomes.append(Outcome(j, False, error="the channel returned no result", error_class="retryable"))
            else:
                outcomes.append(Outcome(j, r.accepted, r.provider_message_id, r.error,
                                        r.error_class.value if r.error_class else None))
        return outcomes + throttled

    def message(self, job: Job, secret: bytes) -> Message:
        c = job.content
        headers = dict(c.get("headers") or {})
        html = c.get("html")
        if job.channel == "email":
            def link(purpose: Purpose, url: str = "") -> str:
                return sign(secret, LinkToken(purpose, job.contact_id, key=job.message_key, channel="email",
                                              topic=job.topic or "", url=url))

            headers.setdefault("List-Unsubscribe", f"<{self.public_url}/u/{link('u')}>")
            headers.setdefault("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
            if html:
                html = track_html(str(html), f"{self.public_url}/v1/t/o/{link('o')}",
                                  lambda target: f"{self.public_url}/v1/t/c/{link('c', target)}")
        return Message(key=job.message_key, to=job.address, subject=str(c.get("subject", "")),
                       text=str(c.get("text", "")), html=html, headers=headers, data=dict(c.get("data") or {}))

    async def _link_secret(self) -> bytes:
        if self._secret is None:
            async with self.sessions() as s:
                self._secret = await link_secret(s)
        return self._secret


def service_for(sessions: async_sessionmaker[AsyncSession], channels: Mapping[str, Channel],
                settings: Settings) -> DeliveryService:
    """The process's delivery service: its configured channels plus the in-app inbox, the settings' rules."""
    return DeliveryService(sessions, {**channels, "inbox": InboxChannel(sessions)}, policy_from(settings),
                           public_url=settings.resolved_public_url)
