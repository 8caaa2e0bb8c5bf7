"""The `nudge` command: run the stack, the API, the worker, migrations, benchmarks and key management.

Each command imports what it runs when it runs, so `nudge --help` answers in 0.4 s rather than the 2.8 s that
importing the API, the worker and the benchmarks takes. None of these imports hides a cycle: the import
contracts (`.importlinter`) see them like any other, and this module is the top of the graph.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from core.settings import Settings, get_settings
from domain.keys import Scope

app = typer.Typer(
    name="nudge", no_args_is_help=True, rich_markup_mode="rich",
    help="Nudge: marketing automation on Temporal and Postgres. Start with [bold]nudge demo[/].",
)
keys_app = typer.Typer(help="Create and revoke API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
import_app = typer.Typer(help="Bulk-load data from files.", no_args_is_help=True)
app.add_typer(import_app, name="import")
segments_app = typer.Typer(help="Maintain the segment search index.", no_args_is_help=True)
app.add_typer(segments_app, name="segments")
console = Console()


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]✗[/] {message}")
    return typer.Exit(1)


@contextlib.contextmanager
def _stack(settings: Settings, *, migrate: bool = True, database_only: bool = False) -> Iterator[Settings]:
    """Settings pointing at a running stack: what is configured is used, the rest is started (and
    stopped on the way out); `database_only` starts Postgres alone."""
    from nudge.embedded import PortInUse
    from nudge.stack import Stack

    stack = Stack(settings, console=console)
    try:
        yield stack.up(migrate=migrate, database_only=database_only)
    except PortInUse as exc:
        raise _fail(str(exc)) from exc
    finally:
        stack.down()


async def _serve(settings: Settings, *, api: bool = True, worker: bool = True, queues: tuple[str, ...] = (),
                 after_start: object = None) -> None:
    """Run the API and/or the worker in this process until Ctrl-C or SIGTERM."""
    import uvicorn

    from api.runtime import Runtime, connect_temporal
    from nudge.app import create_app
    from nudge.embedded import port_open
    from nudge.worker import QUEUES, build_workers, ensure_housekeeping

    if api and port_open(settings.api_port, settings.api_host):
        raise _fail(f"Port {settings.api_port} is already in use (another `nudge dev` or `nudge api`?). "
                    f"Stop it or set NUDGE_API_PORT to a free port.")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    from core.logs import configure

    configure(settings.log_level)
    tasks: list[asyncio.Task[object]] = []
    runtime = Runtime.build(settings)
    workers = []
    if worker:
        client = await connect_temporal(settings)
        workers = build_workers(client, runtime, queues or QUEUES)
        await ensure_housekeeping(client, queues or QUEUES, runtime)
        tasks += [asyncio.create_task(w.run()) for w in workers]
        console.print(f"[green]✓[/] Worker polling {', '.join(queues or QUEUES)}")
        if not api and settings.worker_metrics_port:
            from prometheus_client import start_http_server

            start_http_server(settings.worker_metrics_port, addr=settings.api_host)
            console.print(f"[green]✓[/] Worker metrics on http://{settings.api_host}:{settings.worker_metrics_port}/metrics")
    server = None
    server_task = None
    if api:
        config = uvicorn.Config(create_app(settings), host=settings.api_host, port=settings.api_port,
                                log_level="warning", log_config=None, lifespan="on")  # logs as core.logs renders
        server = uvicorn.Server(config)
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        server_task = asyncio.create_task(server.serve())
        tasks.append(server_task)
        console.print(f"[green]✓[/] API on {settings.resolved_public_url} (docs: {settings.resolved_public_url}/docs)")
    async def then() -> None:
        # after_start returns True to stop once it is done (nudge demo --exit); failing, it stops too
        try:
            done = after_start is not None and await after_start(settings)  # type: ignore[operator]
        except Exception as exc:
            console.print(f"[red]✗[/] {exc.__class__.__name__}: {exc}")
            stop.set()
            raise
        if done:
            stop.set()
        else:
            console.print("[dim]Press Ctrl-C to stop.[/]")

    follow_up = asyncio.create_task(then())
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    console.print("Stopping…")
    follow_up.cancel()
    failed = follow_up.done() and not follow_up.cancelled() and follow_up.exception() is not None
    if server is not None and server_task is not None:
        server.should_exit = True
        await asyncio.wait([server_task], timeout=10)
    for w in workers:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(w.shutdown(), 15)
    for t in tasks:
        if not t.done():
            t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for t in tasks:
        if t.done() and not t.cancelled() and t.exception() is not None:
            raise t.exception()  # type: ignore[misc]
    await runtime.close()
    if failed:
        raise typer.Exit(1)


def _print_bootstrap_key(settings: Settings) -> None:
    """The first start creates an admin key and shows it once."""
    from api.runtime import create_api_key

    token = asyncio.run(create_api_key(settings.database_url or "", "bootstrap admin", [Scope.ADMIN],
                                       unless_admin_exists=True))
    if token:
        console.print(f"\n[bold yellow]Bootstrap admin key[/] (shown once, keep it safe): [bold]{token}[/]\n")


@app.command()
def dev() -> None:
    """Start everything on embedded defaults (Postgres, Temporal, mail sink), migrate, and serve the API + worker."""
    with _stack(get_settings()) as settings:
        _print_bootstrap_key(settings)
        asyncio.run(_serve(settings))


@app.command()
def demo(
    exit_after: Annotated[bool, typer.Option("--exit", help="Stop once the demo broadcast is delivered.")] = False,
) -> None:
    """Like [bold]dev[/], plus demo data and a demo broadcast; prints the URLs to open."""
    from nudge.demo import load_demo

    async def after_start(s: Settings) -> bool:
        await load_demo(s, console)
        return exit_after

    with _stack(get_settings()) as settings:
        _print_bootstrap_key(settings)
        asyncio.run(_serve(settings, after_start=after_start))


@app.command()
def api() -> None:
    """Serve the HTTP API (uses DATABASE_URL and TEMPORAL_ADDRESS; start them with [bold]nudge dev[/] otherwise)."""
    asyncio.run(_serve(get_settings(), worker=False))


@app.command()
def worker(
    queue: Annotated[list[str] | None, typer.Option("--queue", "-q",
                                                    help="Task queue(s) to poll; default all.")] = None,
) -> None:
    """Run the Temporal worker for all task queues (or the ones named)."""
    asyncio.run(_serve(get_settings(), api=False, queues=tuple(queue or ())))


@app.command()
def migrate() -> None:
    """Apply database migrations (to DATABASE_URL, or the embedded Postgres)."""
    with _stack(get_settings(), database_only=True):
        pass  # bringing the database up migrates it


@app.command()
def bench(
    name: Annotated[str, typer.Argument(help="Benchmark name; `nudge bench list` shows them.")],
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="Override a parameter: -p n=2000")] = None,
) -> None:
    """Run a benchmark on the embedded (or configured) stack; prints a table and one JSON line."""
    from bench import registry
    from bench.core import BenchContext

    benches = registry()
    if name == "list":
        for key, module in benches.items():
            console.print(f"[bold]{key}[/]  {module.DESCRIPTION}  [dim]{module.PARAMS}[/]")
        return
    if name not in benches:
        raise _fail(f"Unknown benchmark {name!r}. Known: {', '.join(benches)}.")
    module = benches[name]
    params = dict(module.PARAMS)
    for item in param or []:
        key, _, value = item.partition("=")
        if key not in params:
            raise _fail(f"Unknown parameter {key!r} for {name}. Known: {', '.join(params)}.")
        default = params[key]
        try:  # a tuple parameter takes a comma-separated list: -p per_call=1,32
            params[key] = (tuple(type(default[0])(v) for v in value.split(",")) if isinstance(default, tuple)
                           else type(default)(value))
        except ValueError:
            raise _fail(f"Parameter {key!r} of {name} takes {type(default).__name__} values, not {value!r}.") from None
    # A benchmark that needs only Postgres starts only Postgres: an idle Temporal server costs CPU it would measure.
    with _stack(get_settings(), database_only=getattr(module, "DATABASE_ONLY", False)) as settings:
        result = asyncio.run(module.run(BenchContext(settings=settings, console=console), **params))
    result.show(console)


@import_app.command("contacts")
def import_contacts_command(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                         help="CSV with a header: user_id, email, phone, timezone; "
                                              "other columns become traits.")],
) -> None:
    """Stream a CSV of contacts into Nudge (COPY, then one set-based merge); matching contacts are updated."""
    from rich.progress import BarColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn

    from core.progress import Progress
    from domain.errors import DomainError
    from store.contacts.imports import import_contacts

    configured = get_settings()
    with _stack(configured, database_only=True, migrate=not configured.database_url) as settings, \
            Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
                     console=console) as progress:
        upload = progress.add_task("Uploading", total=file.stat().st_size)
        merge = progress.add_task("Merging", total=None, visible=False)

        def report(stage: str, done: int, total: int) -> None:
            if stage == "upload":
                progress.update(upload, completed=done, total=total)
            else:
                progress.update(merge, visible=True, completed=done, total=total)

        try:
            result = import_contacts(settings.database_url or "", file, progress=report)
        except DomainError as exc:
            raise _fail(f"{file}: {exc}") from exc
    console.print(f"[green]✓[/] {result.rows:,} rows: {result.created:,} contacts created, "
                  f"{result.updated:,} updated in {result.seconds:.1f} s")


@segments_app.command("reindex")
def segments_reindex(
    drop: Annotated[bool, typer.Option("--drop", help="Delete the index first and build it from scratch.")] = False,
    index: Annotated[str | None, typer.Option(help="Index name; default: the one the API and worker use.")] = None,
) -> None:
    """Bulk-index every contact into the Elasticsearch segment index (ELASTICSEARCH_URL) and mark it filled."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from core.progress import Progress
    from store.segments.es import DEFAULT_INDEX, reindex

    configured = get_settings()
    if not configured.elasticsearch_url:
        raise _fail("ELASTICSEARCH_URL is not set: segments are answered by Postgres, there is no index to "
                    "build. Set it to your Elasticsearch 8 server (e.g. http://localhost:9200).")
    name = index or DEFAULT_INDEX
    with _stack(configured, database_only=True, migrate=not configured.database_url) as settings, \
            Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                     console=console) as progress:
        task = progress.add_task(f"Indexing contacts into {name}", total=None)
        try:
            done = asyncio.run(reindex(settings.database_url or "", configured.elasticsearch_url, index=name,
                                       drop=drop, progress=lambda n, total: progress.update(task, completed=n,
                                                                                            total=total)))
        except Exception as exc:  # an unreachable or refusing server: say so, not a traceback
            raise _fail(f"Reindexing {name} failed: {exc.__class__.__name__}: {exc}") from exc
    console.print(f"[green]✓[/] {done:,} contacts indexed into {name}{' (dropped first)' if drop else ''}; "
                  "it answers segment counts now")


@keys_app.command("create")
def keys_create(
    scope: Annotated[list[Scope], typer.Option("--scope", "-s", help="admin, ingest, read or approve (repeatable).")],
    name: Annotated[str, typer.Option(help="A label to recognise the key by.")] = "cli",
) -> None:
    """Create an API key and print it once."""
    from api.runtime import create_api_key

    configured = get_settings()
    with _stack(configured, database_only=True, migrate=not configured.database_url) as settings:
        token = asyncio.run(create_api_key(settings.database_url or "", name, list(scope)))
    console.print(f"[green]✓[/] Created a key with scope(s) {', '.join(scope)}: [bold]{token}[/]")
    console.print("[dim]It is stored hashed and cannot be shown again.[/]")


@keys_app.command("revoke")
def keys_revoke(
    key: Annotated[str, typer.Argument(help="The key, or its public prefix (the part after `nk_`).")],
) -> None:
    """Revoke an API key: it stops working at once, and so do dashboard sessions opened with it."""
    from api.runtime import revoke_api_key

    configured = get_settings()
    with _stack(configured, database_only=True, migrate=not configured.database_url) as settings:
        revoked = asyncio.run(revoke_api_key(settings.database_url or "", key))
    if not revoked:
        raise _fail("No live key has that prefix (it may be revoked already); nothing changed.")
    console.print("[green]✓[/] Revoked; requests with it now get 401, and its dashboard sessions are closed.")


if __name__ == "__main__":
    app()
