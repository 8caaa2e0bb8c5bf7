"""Logging for the long-running commands: structlog's events and the standard library's records (Temporal's SDK,
uvicorn) rendered alike on stderr. Readable lines when stdout is a terminal (a person watches `nudge dev` or
`nudge demo` between its check marks), one JSON object per line otherwise (a log collector reads them)."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

# Libraries speak only at this level or above, however verbose Nudge's own logs are (httpx logs every request
# at INFO, for instance).
LIBRARIES = logging.WARNING
UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access")


class _Stderr:
    """structlog's PrintLogger, writing to whatever `sys.stderr` is at the time: rich's live displays (the
    spinners of `nudge demo`) swap it to print a line above themselves instead of through them."""

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


class _StderrHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(self.format(record), file=sys.stderr, flush=True)
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)


def configure(level: str = "info", *, readable: bool | None = None) -> None:
    """Set up structlog and the root logger; `readable` defaults to whether stdout is a terminal."""
    readable = sys.stdout.isatty() if readable is None else readable
    rendering: list[Any] = ([structlog.dev.ConsoleRenderer(colors=readable)] if readable else
                            [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()])
    stamped: list[Any] = [structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso", utc=True)]
    levelno = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, *stamped, *rendering],
        wrapper_class=structlog.make_filtering_bound_logger(levelno),
        logger_factory=lambda *args: _Stderr(),
        cache_logger_on_first_use=True,
    )
    handler = _StderrHandler()
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *stamped],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *rendering],
    ))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(max(levelno, LIBRARIES))
    for name in UVICORN:  # uvicorn's own configuration, if it ran first, prints around this handler
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
