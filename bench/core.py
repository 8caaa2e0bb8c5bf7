"""What every benchmark shares: its context (settings, console, progress) and its result."""

from __future__ import annotations

import json
import os
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from core.progress import Progress, status
from core.settings import Settings


@dataclass
class BenchContext:
    settings: Settings  # points at a running stack (embedded or configured)
    console: Console = field(default_factory=Console)
    every: float = 10.0  # seconds between plain progress lines when the console is not a terminal

    def progress(self) -> Progress:
        """Bars on a terminal; plain lines in a pipe or a log (a benchmark may run for minutes)."""
        return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=self.console, transient=False, every=self.every)

    def status(self, message: str) -> AbstractContextManager[None]:
        """A step without a count: a spinner on a terminal; plain lines as it starts, runs and ends elsewhere."""
        return status(self.console, message, every=3 * self.every)


@dataclass
class BenchResult:
    bench: str
    value: float
    unit: str
    limit_name: str | None = None
    limit: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    rows: list[tuple[str, str]] = field(default_factory=list)  # extra figures for the table

    @property
    def ratio(self) -> float | None:
        return round(self.value / self.limit, 3) if self.limit else None

    def json_line(self) -> str:
        body: dict[str, Any] = {"bench": self.bench, "value": round(self.value, 1), "unit": self.unit}
        if self.limit is not None:
            body |= {"limit_name": self.limit_name, "limit": round(self.limit, 1), "ratio": self.ratio}
        body["params"] = self.params
        return json.dumps(body)

    def show(self, console: Console) -> None:
        table = Table(title=f"nudge bench {self.bench}")
        table.add_column("measure")
        table.add_column("value", justify="right")
        table.add_row(f"[bold]{self.bench}[/]", f"[bold]{self.value:,.1f} {self.unit}[/]")
        if self.limit is not None:
            table.add_row(f"limit: {self.limit_name}", f"{self.limit:,.1f} {self.unit}")
            table.add_row("ratio", f"{self.ratio:.3f}")
        for name, value in self.rows:
            table.add_row(name, value)
        console.print(table)
        print(self.json_line(), flush=True)


def tree_cpu(root: int) -> float:
    """CPU seconds (user + system) used so far by a process and its live descendants (Linux /proc; 0 elsewhere,
    and 0 for pid 0: a database configured elsewhere is not counted)."""
    if not root:
        return 0.0
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    children: dict[int, list[int]] = {}
    used: dict[int, float] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        used[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += used.get(pid, 0.0)
        todo += children.get(pid, [])
    return total
