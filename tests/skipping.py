"""Temporal's time-skipping test server (the Java one installed beside the interpreter, or on PATH), for tests that
skip through workflow timers."""

from __future__ import annotations

import shutil
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from temporalio.testing import WorkflowEnvironment


def server_binary() -> str:
    found = Path(sys.executable).with_name("temporal-test-server")
    return str(found) if found.exists() else shutil.which("temporal-test-server") or "temporal-test-server"


@asynccontextmanager
async def time_skipping() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping environment, shut down on the way out."""
    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=server_binary())
    try:
        yield env
    finally:
        await env.shutdown()
