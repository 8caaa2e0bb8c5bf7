"""Log lines as `nudge dev` and `nudge demo` print them: readable when stdout is a terminal (a person watches
the check marks), JSON lines otherwise; Nudge's structlog events and the libraries' logging records alike."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections.abc import Iterator

import pytest
import structlog

from core.logs import UVICORN, configure

ANSI = re.compile(r"\x1b\[[0-9;]*m")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in ("", *UVICORN)]
    saved = [(lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    yield
    for lg, (handlers, level, propagate) in zip(loggers, saved, strict=True):
        lg.handlers, lg.propagate = handlers, propagate
        lg.setLevel(level)
    structlog.reset_defaults()


def _console(monkeypatch: pytest.MonkeyPatch, *, terminal: bool) -> io.StringIO:
    """Stdout a terminal or not; what the process writes to stderr is returned (set in the test itself: pytest's
    own capture replaces sys.stderr after fixtures run)."""
    monkeypatch.setattr(sys, "stdout", _Terminal() if terminal else io.StringIO())
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    return stderr


def _log_like_a_broadcast() -> None:
    structlog.get_logger("nudge.campaigns").info("batch sent", campaign_id=1, run_id=1, sent=3, failed=0)
    logging.getLogger("temporalio.worker").warning("Worker shutting down")
    logging.getLogger("httpx").info("HTTP Request: POST http://127.0.0.1:8000/v1/batch")  # libraries: warnings only


def test_logs_are_readable_when_stdout_is_a_terminal_whatever_stderr_is(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = _console(monkeypatch, terminal=True)
    configure("info")
    _log_like_a_broadcast()
    lines = ANSI.sub("", stderr.getvalue()).splitlines()
    assert len(lines) == 2, lines
    batch, worker = lines
    assert "batch sent" in batch and "campaign_id=1" in batch and "sent=3" in batch and not batch.startswith("{")
    assert "Worker shutting down" in worker and "warning" in worker and "temporalio.worker" in worker


def test_logs_are_json_lines_when_stdout_is_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = _console(monkeypatch, terminal=False)
    configure("info")
    _log_like_a_broadcast()
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    batch, worker, failure = (json.loads(line) for line in stderr.getvalue().splitlines())
    assert batch["event"] == "batch sent" and batch["level"] == "info" and batch["sent"] == 3 and batch["timestamp"]
    assert worker == worker | {"event": "Worker shutting down", "level": "warning", "logger": "temporalio.worker"}
    assert failure["event"] == "Exception in ASGI application" and "RuntimeError: boom" in failure["exception"]
