"""Run pure functions on untrusted input in worker processes with a CPU-time, memory and wall-clock bound.

A runaway call costs one worker process, never the caller: the event loop only awaits a thread that waits on a
pipe, and the computation holds another process's GIL. Inside the worker, a CPU timer (SIGPROF) interrupts Python
code past `cpu_seconds`, and RLIMIT_AS makes an allocation past `memory_bytes` a MemoryError; a single C call that
never returns to Python (a huge integer power, say) ignores the timer, so the parent kills the worker after
`wall_seconds` and starts another. Workers are fresh interpreters (`python -c`), neither forked (the API and
the Temporal worker are multi-threaded, and forking them is unsafe) nor multiprocessing's `spawn` (which re-runs
the parent's main module in every worker).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

try:
    import resource
except ImportError:  # pragma: no cover - not on Linux or macOS
    resource = None  # type: ignore[assignment]


@dataclass(frozen=True)
class Limits:
    cpu_seconds: float
    memory_bytes: int
    wall_seconds: float


class Exceeded(Exception):
    """A call passed a limit of its worker. `bound` is "cpu", "memory", "wall" or "crash"; the message reads
    after "the call ..." (e.g. "took more than 1 s of CPU time")."""

    def __init__(self, bound: str, message: str) -> None:
        super().__init__(message)
        self.bound = bound


def _describe(bound: str, limits: Limits) -> Exceeded:
    return Exceeded(bound, {
        "cpu": f"took more than {limits.cpu_seconds:g} s of CPU time",
        "memory": f"needed more than {limits.memory_bytes // 2**20} MB of memory",
        "wall": f"did not finish within {limits.wall_seconds:g} s",
        "crash": "crashed its worker process",
    }[bound])


# ----------------------------------------------------------------------------------------------- worker side

class _OutOfCpu(BaseException):
    """Raised by the SIGPROF handler. A BaseException, so the called code's `except Exception` cannot swallow it."""


def _out_of_cpu(signum: int, frame: object) -> None:
    raise _OutOfCpu


def _limit_memory(budget: int) -> None:
    """Allow `budget` bytes of address space beyond what the freshly started worker already maps."""
    if resource is None:
        return
    try:
        with open("/proc/self/statm") as statm:
            mapped = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        mapped = 0
    try:
        resource.setrlimit(resource.RLIMIT_AS, (mapped + budget, mapped + budget))
    except (ValueError, OSError):  # pragma: no cover - a platform that refuses RLIMIT_AS (macOS may)
        pass


def _call(fn: Callable[..., Any], args: tuple[Any, ...], limits: Limits) -> tuple[str, Any]:
    try:
        signal.setitimer(signal.ITIMER_PROF, limits.cpu_seconds)
        try:
            return "ok", fn(*args)
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
    except _OutOfCpu:
        return "cpu", None
    except MemoryError:
        return "memory", None
    except Exception as exc:  # noqa: BLE001 - handed back to the caller as the call's outcome
        return "error", exc


def serve(fd: int) -> None:
    """The worker's loop: receive its limits, then (fn, calls) jobs; send back one (status, value) per call."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group; the parent decides
    signal.signal(signal.SIGPROF, _out_of_cpu)
    conn = Connection(fd)
    limits: Limits = conn.recv()
    _limit_memory(limits.memory_bytes)
    while True:
        try:
            fn, calls = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        for args in calls:
            outcome = _call(fn, args, limits)
            try:
                conn.send(outcome)
            except (EOFError, OSError):
                return
            except Exception as exc:  # noqa: BLE001 - the result would not pickle
                conn.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))


# ----------------------------------------------------------------------------------------------- parent side

# A worker's whole start-up: the parent's import path, then this module's loop on the inherited socket.
_BOOT = ("import json, sys; sys.path[:0] = json.loads(sys.argv[2]); "
         "import core.confinement as c; c.serve(int(sys.argv[1]))")


@dataclass(eq=False)
class _Worker:
    process: subprocess.Popen[bytes]
    conn: Connection
    calls: int = 0
    spent: bool = False  # hit the memory limit: replaced after the current job

    def stop(self, kill: bool) -> None:
        """Kill a worker that may be stuck in a call; let an idle one exit on the closed pipe."""
        if kill:
            self.process.kill()
        self.conn.close()
        try:
            self.process.wait(0.5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


class Confinement:
    """A few worker processes behind as many dispatch threads; each thread owns one worker, so a job never waits
    for a lock and a killed worker is replaced by the thread that saw it die."""

    def __init__(self, limits: Limits, processes: int | None = None, calls_per_process: int = 10_000) -> None:
        self.limits = limits
        self.processes = processes or max(1, min(4, os.cpu_count() or 1))
        self.calls_per_process = calls_per_process
        self._threads = ThreadPoolExecutor(self.processes, thread_name_prefix="confinement")
        self._local = threading.local()
        self._workers: set[_Worker] = set()
        self._lock = threading.Lock()

    async def map(self, fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Call `fn(*args)` for each args in a worker; each outcome is the return value, the exception it raised,
        or an `Exceeded`. `fn` and its arguments must pickle (a module-level function, plain values)."""
        if not calls:
            return []
        loop = asyncio.get_running_loop()
        size = math.ceil(len(calls) / self.processes)
        chunks = [list(calls[i:i + size]) for i in range(0, len(calls), size)]
        parts = await asyncio.gather(*(loop.run_in_executor(self._threads, self._run, fn, chunk) for chunk in chunks))
        return [outcome for part in parts for outcome in part]

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(*args)` in a worker: its value, or the exception it raised (or `Exceeded`) raised here."""
        (outcome,) = await self.map(fn, [args])
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def close(self) -> None:
        self._threads.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            workers, self._workers = self._workers, set()
        for worker in workers:
            worker.stop(kill=False)

    # Runs in a dispatch thread: blocking is the point.
    def _run(self, fn: Callable[..., Any], calls: list[tuple[Any, ...]]) -> list[Any]:
        outcomes: list[Any] = []
        while len(outcomes) < len(calls):
            worker = self._worker()
            pending = calls[len(outcomes):]
            try:
                worker.conn.send((fn, pending))
            except (BrokenPipeError, EOFError, ConnectionResetError):
                self._retire(worker, kill=True)
                if worker.calls == 0:  # a worker that cannot even start: fail the call rather than loop
                    outcomes.append(_describe("crash", self.limits))
                continue  # one that died while idle: start another
            for _ in pending:
                outcome = self._receive(worker)
                outcomes.append(outcome)
                worker.calls += 1
                if isinstance(outcome, Exceeded) and outcome.bound in ("wall", "crash"):
                    self._retire(worker, kill=True)  # the rest of the job goes to a fresh worker
                    break
            else:
                if worker.spent or worker.calls >= self.calls_per_process:
                    self._retire(worker, kill=False)
        return outcomes

    def _receive(self, worker: _Worker) -> Any:
        try:
            if not worker.conn.poll(self.limits.wall_seconds):
                return _describe("wall", self.limits)
            status, value = worker.conn.recv()
        except (EOFError, OSError):
            return _describe("crash", self.limits)
        except Exception as exc:  # noqa: BLE001 - an outcome that pickled in the worker but does not unpickle here
            return RuntimeError(f"the call's outcome could not be read: {type(exc).__name__}: {exc}")
        if status in ("ok", "error"):
            return value
        worker.spent = worker.spent or status == "memory"
        return _describe(status, self.limits)

    def _worker(self) -> _Worker:
        worker: _Worker | None = getattr(self._local, "worker", None)
        if worker is None:
            parent, child = socket.socketpair()
            with child:
                # Isolated mode and an environment without the parent's secrets (DATABASE_URL, SMTP_URL...):
                # whatever a template might escape into holds nothing worth taking.
                process = subprocess.Popen(
                    [sys.executable, "-I", "-c", _BOOT, str(child.fileno()),
                     json.dumps([p for p in sys.path if p])],
                    pass_fds=[child.fileno()], stdin=subprocess.DEVNULL, close_fds=True,
                    env={"PATH": os.environ.get("PATH", os.defpath), "PYTHONUTF8": "1"})
            worker = _Worker(process, Connection(parent.detach()))
            worker.conn.send(self.limits)
            self._local.worker = worker
            with self._lock:
                self._workers.add(worker)
        return worker

    def _retire(self, worker: _Worker, kill: bool) -> None:
        self._local.worker = None
        with self._lock:
            self._workers.discard(worker)
        worker.stop(kill)


_shared: dict[Limits, Confinement] = {}
_shared_lock = threading.Lock()


def shared(limits: Limits) -> Confinement:
    """The process-wide confinement for these limits, started on first use (its workers on first call)."""
    with _shared_lock:
        if limits not in _shared:
            _shared[limits] = Confinement(limits)
        return _shared[limits]
