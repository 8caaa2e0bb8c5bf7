"""As root, from a directory only root can enter (a 0700 home, a `mktemp -d` folder), the embedded Postgres starts
without changing any permission outside Nudge's own directories."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from nudge import embedded
from nudge.embedded import PG_SYSTEM_USER, EmbeddedPostgres, free_port, pg_install, reachable

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs Postgres as its unprivileged user: root only")


def _modes(path: Path) -> dict[Path, int]:
    return {p: p.stat().st_mode for p in [path, *path.parents]}


@pytest.fixture
def private_checkout(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A 0700 directory holding a copy of the wheel's Postgres (as a .venv inside a 0700 home does), with
    ROOT_HOME redirected to a throwaway directory so the test leaves nothing behind."""
    base = Path(tempfile.mkdtemp(prefix="nudge-private-"))  # mode 0700
    shared = Path(tempfile.mkdtemp(prefix="nudge-root-home-"))
    shared.chmod(0o755)
    wheel = pg_install()
    site = base / "venv" / "site-packages"  # the wheel's layout: the package beside its .libs
    install = site / wheel.parent.name / wheel.name
    shutil.copytree(wheel, install, symlinks=True, ignore=shutil.ignore_patterns("include"))
    shutil.copytree(wheel.parent.parent / f"{wheel.parent.name}.libs", site / f"{wheel.parent.name}.libs")
    monkeypatch.setattr(embedded, "pg_install", lambda: install)
    monkeypatch.setattr(embedded, "ROOT_HOME", shared / "nudge")
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(shared, ignore_errors=True)


def test_postgres_starts_from_a_0700_directory_without_opening_it(private_checkout: Path) -> None:
    user = pwd.getpwnam(PG_SYSTEM_USER) if _has_user() else None
    home = private_checkout / "checkout" / ".nudge"
    home.mkdir(parents=True)
    before = _modes(home)
    assert private_checkout.stat().st_mode & 0o777 == 0o700
    if user is not None:
        assert not reachable(home, user)

    pg = EmbeddedPostgres(home / "postgres", free_port(), fast_unsafe=True)
    pg.start()
    try:
        with psycopg.connect(pg.admin_url, connect_timeout=5) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert _modes(home) == before, "no directory on the way to the checkout was opened to others"
        assert (home / "postgres").is_symlink(), ".nudge/postgres points at where the cluster lives"
        assert pg.cluster.is_relative_to(embedded.ROOT_HOME / "clusters")
        assert (pg.cluster / "PG_VERSION").exists()
    finally:
        pg.stop()
    assert not pg.is_running()

    again = EmbeddedPostgres(home / "postgres", free_port(), fast_unsafe=True)  # a second start finds the same cluster
    again.start()
    try:
        assert again.cluster == pg.cluster
    finally:
        again.stop()

    # A deleted checkout's relocated cluster is removed by the next relocation, so they never pile up.
    shutil.rmtree(private_checkout / "checkout")
    other = private_checkout / "other" / ".nudge"
    other.mkdir(parents=True)
    third = EmbeddedPostgres(other / "postgres", free_port(), fast_unsafe=True)
    third.start()
    try:
        assert not pg.cluster.exists()
        assert [c.name for c in (embedded.ROOT_HOME / "clusters").iterdir() if c.is_dir()] == [third.cluster.name]
    finally:
        third.stop()


def _has_user() -> bool:
    try:
        pwd.getpwnam(PG_SYSTEM_USER)
        return True
    except KeyError:
        return False
