"""The `nudge` command line against the test database: help, keys, import, bench listing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg

from api.deps import KNOWN_KEYS
from core.settings import Settings

NUDGE = str(Path(sys.executable).parent / "nudge")


def _run(args: list[str], database_url: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "DATABASE_URL": database_url, "COLUMNS": "200", **env}
    return subprocess.run([NUDGE, *args], env=full_env, capture_output=True, text=True, timeout=120)


def test_help_lists_every_command(database_url: str) -> None:
    out = _run(["--help"], database_url).stdout
    for command in ("dev", "demo", "api", "worker", "migrate", "bench", "keys", "import"):
        assert command in out


def test_keys_create_prints_a_working_key_once(database_url: str, api_url: str) -> None:
    result = _run(["keys", "create", "--scope", "read", "--name", "cli test"], database_url)
    assert result.returncode == 0, result.stdout + result.stderr
    token = next(w for w in result.stdout.split() if w.startswith("nk_"))
    assert httpx.get(f"{api_url}/v1/contacts", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert httpx.post(f"{api_url}/v1/contacts", json={},
                      headers={"Authorization": f"Bearer {token}"}).status_code == 403


def test_keys_revoke_stops_a_key_within_the_api_s_key_memory(database_url: str, api_url: str) -> None:
    """A revoked key stops working within `KNOWN_KEYS.ttl` (1 s) in every API process: each remembers valid keys
    that long (api/deps.py), and `keys revoke` runs in another process."""
    created = _run(["keys", "create", "--scope", "read", "--name", "to revoke"], database_url)
    token = next(w for w in created.stdout.split() if w.startswith("nk_"))
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{api_url}/v1/contacts", headers=headers).status_code == 200
    prefix = token.split("_")[1]
    revoked = _run(["keys", "revoke", prefix], database_url)
    assert revoked.returncode == 0, revoked.stdout + revoked.stderr
    deadline = time.monotonic() + KNOWN_KEYS.ttl + 1.0
    while (status := httpx.get(f"{api_url}/v1/contacts", headers=headers).status_code) == 200 \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    assert status == 401
    again = _run(["keys", "revoke", token], database_url)
    assert again.returncode == 1 and "nothing changed" in again.stdout


def test_import_contacts_streams_a_csv_and_reports(database_url: str, tmp_path: Path) -> None:
    csv = tmp_path / "people.csv"
    csv.write_text("user_id,email,plan\n" + "".join(f"cli-{i},cli-{i}@example.com,pro\n" for i in range(250)))
    result = _run(["import", "contacts", str(csv)], database_url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "250 rows: 250 contacts created, 0 updated" in result.stdout
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*), min(traits->>'plan') FROM contacts WHERE user_id LIKE 'cli-%'").fetchone()
    assert row == (250, "pro")


def test_import_of_a_file_without_identifiers_fails_clearly_and_writes_nothing(database_url: str,
                                                                               tmp_path: Path) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text("nickname\nbob\n")
    with psycopg.connect(database_url) as conn:
        before = conn.execute("SELECT count(*) FROM contacts").fetchone()
    result = _run(["import", "contacts", str(csv)], database_url)
    assert result.returncode == 1
    assert "needs at least one of the columns user_id, email" in result.stdout
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM contacts").fetchone() == before


def test_bench_list_and_unknown_bench(database_url: str) -> None:
    listed = _run(["bench", "list"], database_url).stdout
    for name in ("broadcast", "ingest", "ledger", "segments"):
        assert name in listed
    unknown = _run(["bench", "nope"], database_url)
    assert unknown.returncode == 1 and "Unknown benchmark 'nope'" in unknown.stdout


def test_bench_ledger_runs_both_call_sizes_and_cleans_up(database_url: str, settings: Settings) -> None:
    """A tiny run of the real benchmark (no figure is asserted: timings never go in tests), so the bench code
    cannot rot: it prints its JSON line with a rate per call size, and leaves no bench rows behind."""
    import json

    env = {"TEMPORAL_ADDRESS": settings.temporal_address or "", "SMTP_URL": settings.smtp_url or ""}
    args = ["bench", "ledger", "-p", "accounts=300", "-p", "seconds=1", "-p", "pgbench_seconds=1",
            "-p", "pgbench_scale=1", "-p", "history_months=3", "-p", "spends=3", "-p", "per_call=1,8"]
    result = _run(args, database_url, **env)
    assert result.returncode == 0, result.stdout + result.stderr
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["bench"] == "ledger" and line["limit"] > 0
    assert set(line["params"]["rates"]) == {"1", "8"} and min(line["params"]["rates"].values()) > 0
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM ledger_programs WHERE name LIKE 'bench-%'").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM contacts WHERE user_id LIKE 'bench-ledger-%'").fetchone() == (0,)


def test_bench_parameters_of_the_wrong_type_fail_clearly(database_url: str) -> None:
    result = _run(["bench", "ledger", "-p", "per_call=one"], database_url)
    assert result.returncode == 1
    assert "Parameter 'per_call' of ledger takes tuple values, not 'one'" in result.stdout
