"""Per-key request rate limits: a key over its rate gets a 429 problem+json with Retry-After. The admin and read API
and the tracking API each have their own limit (settings `rate_limit_*`; 0 disables one).

The state is in this process: one float per key that sent requests (GCRA, a token bucket kept as the time its bucket
will be full again), checked and updated with no I/O and no lock (the event loop runs one request's check at a time).
That costs under a microsecond per request on the ingest hot path, where a shared limiter would cost a round trip
to Postgres (or to Redis, which Nudge does not run) per request. The price: with N API replicas behind a balancer a
key gets up to N times the limit, so a deployment that needs an exact total sets the per-process limit to the total
divided by its replicas. Limits count authenticated requests only, keyed by the key's prefix, so the state is
bounded by the number of keys and a flood of bad keys costs nobody's budget (it is refused by the key check).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import HTTPException, Request

from core.settings import Settings


class RateLimit:
    """`per_second` requests a second per key, `burst` of them at once. With `per_second` 0 every request passes."""

    def __init__(self, name: str, per_second: float, burst: int, *, setting: str,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000) -> None:
        self.name, self.per_second, self.burst, self.setting = name, per_second, burst, setting
        self.interval = 1 / per_second if per_second > 0 else 0.0  # seconds one request uses of a key's bucket
        # How far ahead of now a key may have spent, with a thousandth of a request against float rounding.
        self.window = self.interval * (burst + 0.001)
        self.clock, self.max_keys = clock, max_keys
        self.full_at: dict[str, float] = {}  # key -> when its bucket is full again (GCRA's theoretical arrival time)

    def wait(self, key: str) -> float:
        """Take one request from `key`'s bucket and return 0, or return the seconds until one is there (and take
        nothing: a refused request costs no budget)."""
        if not self.interval:
            return 0.0
        now = self.clock()
        full_at = self.full_at.get(key, now)
        spent = (full_at if full_at > now else now) + self.interval
        if spent - now > self.window:
            return spent - now - self.window
        if len(self.full_at) >= self.max_keys and key not in self.full_at:
            self._forget_full(now)
        self.full_at[key] = spent
        return 0.0

    def check(self, key: str) -> None:
        """Count one request from `key`, or refuse it with a 429 that says when to retry."""
        if (wait := self.wait(key)) > 0:
            raise HTTPException(
                429, f"This API key sent more than {self.per_second:g} requests a second (bursts of {self.burst}) to "
                     f"the {self.name}; send again after the Retry-After seconds. The limit is per key and is set by "
                     f"NUDGE_{self.setting.upper()}.",
                headers={"Retry-After": str(max(1, math.ceil(wait)))})

    def _forget_full(self, now: float) -> None:
        """Drop the keys whose bucket is full again: forgetting them changes nothing. Reached only with more keys
        sending than `max_keys` (each is a valid key, so in practice never)."""
        self.full_at = {k: t for k, t in self.full_at.items() if t > now}
        if len(self.full_at) >= self.max_keys:  # all of them busy: keep the limit, not the memory
            self.full_at.clear()


@dataclass
class Limits:
    api: RateLimit     # admin and read: every /v1 route behind api.deps.require_scope
    ingest: RateLimit  # the tracking calls (api.events.WriteKeys)

    @classmethod
    def from_settings(cls, settings: Settings, clock: Callable[[], float] = time.monotonic) -> Limits:
        return cls(
            api=RateLimit("API", settings.rate_limit_api_per_second, settings.rate_limit_api_burst,
                          setting="rate_limit_api_per_second", clock=clock),
            ingest=RateLimit("tracking API", settings.rate_limit_ingest_per_second, settings.rate_limit_ingest_burst,
                             setting="rate_limit_ingest_per_second", clock=clock),
        )


def limits(request: Request) -> Limits:
    """The app's limits (nudge.app.create_app puts them in `app.state`)."""
    return request.app.state.limits  # type: ignore[no-any-return]
