"""Progress of long commands (benchmarks, imports, reindexing): rich's bars and spinners on a terminal; plain
lines elsewhere (a pipe, a CI log), where rich draws nothing until the end: one per running task every
`every` seconds, one as each task finishes, and a line as each `status` step starts and ends."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

from rich import progress as rich_progress
from rich.console import Console


class Progress(rich_progress.Progress):
    def __init__(self, *columns: Any, console: Console, every: float = 10.0, **kwargs: Any) -> None:
        disable = kwargs.pop("disable", False)
        self.plain = not console.is_terminal and not disable
        super().__init__(*columns, console=console, disable=disable or self.plain, **kwargs)
        self.every = every
        self._done: set[rich_progress.TaskID] = set()  # finished tasks already reported
        self._lines = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def start(self) -> None:
        super().start()
        if self.plain and self._ticker is None:
            self._stop.clear()
            self._ticker = threading.Thread(target=self._tick, name="progress-lines", daemon=True)
            self._ticker.start()

    def stop(self) -> None:
        if self._ticker is not None:
            self._stop.set()
            self._ticker.join()
            self._ticker = None
            self._report(running=True)  # where each task ended up
        super().stop()

    def update(self, task_id: rich_progress.TaskID, **kwargs: Any) -> None:  # type: ignore[override]
        super().update(task_id, **kwargs)
        if self.plain:
            self._report(running=False)

    def advance(self, task_id: rich_progress.TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        if self.plain:
            self._report(running=False)

    def _tick(self) -> None:
        while not self._stop.wait(self.every):
            self._report(running=True)

    def _report(self, *, running: bool) -> None:
        """Finished tasks not reported yet; with `running`, every started task still going too."""
        with self._lines:
            for task in self.tasks:
                if not task.visible or task.id in self._done or not (task.finished or running and task.started):
                    continue
                if task.finished:
                    self._done.add(task.id)
                self.console.print(_line(task), markup=False, highlight=False, soft_wrap=True)


def _line(task: rich_progress.Task) -> str:
    done = f"{task.completed:,.0f}"
    if task.total:
        done += f"/{task.total:,.0f} ({100 * task.completed / task.total:.0f}%)"
    state = "done in" if task.finished else "after"
    return f"{task.description}: {done}, {state} {task.elapsed or 0:.0f} s"


@contextlib.contextmanager
def status(console: Console, message: str, *, every: float = 30.0) -> Iterator[None]:
    """A spinner with `message` on a terminal; elsewhere a line when the step starts, every `every` seconds
    while it runs, and when it ends."""
    if console.is_terminal:
        with console.status(message):
            yield
        return
    started = time.monotonic()
    message = message.rstrip("…. ")
    console.print(f"{message}…", markup=False, highlight=False, soft_wrap=True)
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(every):
            console.print(f"{message} (still running, {time.monotonic() - started:.0f} s)", markup=False,
                          highlight=False, soft_wrap=True)

    ticker = threading.Thread(target=tick, name="status-lines", daemon=True)
    ticker.start()
    try:
        yield
    finally:
        stop.set()
        ticker.join()
    console.print(f"{message}: done in {time.monotonic() - started:.1f} s", markup=False, highlight=False,
                  soft_wrap=True)
