"""Heartbeats for long activities: the long-lived consumers poll inside one activity for minutes at a time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from temporalio import activity


@contextlib.asynccontextmanager
async def heartbeating(details: Callable[[], object], every: float = 5.0) -> AsyncIterator[None]:
    """Heartbeat every few seconds while the body runs, however long one of its batches takes: a dead worker is
    noticed within the heartbeat timeout, and a slow batch is not mistaken for one. `details()` is what a retry
    of the activity finds in its heartbeat details."""
    async def beat() -> None:
        while True:
            activity.heartbeat(details())
            await asyncio.sleep(every)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
