"""Long commands in a pipe or a log file, where rich draws nothing until the end: plain progress lines while they
run. On a terminal the bars stay rich's own."""

from __future__ import annotations

import io
import time

from rich.console import Console
from rich.progress import TextColumn

from bench.core import BenchContext
from core.progress import Progress, status
from core.settings import Settings


def _pipe() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=False, width=100), out


def _wait_for(out: io.StringIO, text: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while text not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    return out.getvalue()


def test_a_benchmark_in_a_pipe_prints_plain_progress_lines_while_it_runs() -> None:
    console, out = _pipe()
    with BenchContext(settings=Settings(), console=console, every=0.05).progress() as progress:
        contacts = progress.add_task("contacts", total=1_000_000)
        progress.update(contacts, advance=400_000)
        assert "contacts: 400,000/1,000,000 (40%), after" in _wait_for(out, "contacts: 400,000")
        progress.update(contacts, advance=600_000)
        assert "contacts: 1,000,000/1,000,000 (100%), done in" in out.getvalue()  # at once, not at the next tick
        events = progress.add_task("events", total=None)
        progress.advance(events, 250)
        assert "events: 250, after" in _wait_for(out, "events: 250")
    assert "━" not in out.getvalue(), "no bars drawn into a file"
    assert out.getvalue().count("contacts: 1,000,000/1,000,000") == 1


def test_steps_without_a_count_print_when_they_start_run_and_end() -> None:
    console, out = _pipe()
    with status(console, "Vacuuming…", every=0.05):
        assert _wait_for(out, "still running").startswith("Vacuuming…\n")
        assert "Vacuuming (still running, 0 s)" in out.getvalue()
    assert out.getvalue().splitlines()[-1].startswith("Vacuuming: done in ")


def test_on_a_terminal_progress_stays_rich_bars() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    with Progress(TextColumn("{task.description}"), console=console, every=0.01) as progress:
        task = progress.add_task("contacts", total=10)
        progress.update(task, advance=10)
        time.sleep(0.05)
    assert "contacts: 10/10" not in out.getvalue() and "contacts" in out.getvalue()
