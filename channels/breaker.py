"""A circuit breaker per provider: after `threshold` provider errors (retryable class) within `window` seconds
it opens, refusing sends for `cooldown` seconds; then it is half-open and lets one probe through, which closes
it on success and reopens it on failure. Pure state over an injected clock; one per provider per process."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(self, provider: str, *, threshold: int = 20, window: float = 30, cooldown: float = 60,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if threshold < 1 or window <= 0 or cooldown <= 0:
            raise ValueError("threshold must be ≥ 1, window and cooldown > 0")
        self.provider = provider
        self.threshold = threshold
        self.window = window
        self.cooldown = cooldown
        self.clock = clock
        self._errors: deque[float] = deque()
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self.clock() - self._opened_at < self.cooldown:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    def allow(self) -> bool:
        """Whether a send may go to this provider now. Half-open, only the first caller gets through (the
        probe) until its outcome is recorded."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN or self._probing:
            return False
        self._probing = True
        return True

    def record(self, success: bool) -> None:
        """The outcome of a send: success, or a provider error (only retryable-class errors count; a permanent
        refusal of one message says nothing about the provider's health, so do not record it)."""
        now = self.clock()
        if self._opened_at is not None:
            if not self._probing:
                return  # the outcome of a send started before the breaker opened: only the probe decides
            self._probing = False
            if success:
                self._opened_at = None
                self._errors.clear()
            else:
                self._opened_at = now
            return
        if success:
            return
        self._errors.append(now)
        while self._errors and now - self._errors[0] > self.window:
            self._errors.popleft()
        if len(self._errors) >= self.threshold:
            self._opened_at = now
            self._errors.clear()
