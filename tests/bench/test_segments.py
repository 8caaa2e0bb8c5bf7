"""`nudge bench segments` with its output in a pipe (CI, `| tee`): it reports each step in plain lines as it
goes, not only at the end. A tiny run; no figure is asserted (timings never go in tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

NUDGE = str(Path(sys.executable).parent / "nudge")


def test_bench_segments_in_a_pipe_reports_each_step_in_plain_lines(database_url: str) -> None:
    params = {"contacts": 2000, "events": 20_000, "repeat": 1, "es_contacts": 0, "chunk": 10_000}
    args = [NUDGE, "bench", "segments", *(a for k, v in params.items() for a in ("-p", f"{k}={v}"))]
    result = subprocess.run(args, env={**os.environ, "DATABASE_URL": database_url, "COLUMNS": "200"},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for expected in ("Creating and migrating the scratch database", "contacts: 2,000/2,000 (100%), done in",
                     "daily aggregates: 8/8 (100%), done in", "indexes: 5/5 (100%), done in",
                     "VACUUM ANALYZE: done in", "Saving the rule as a segment (one full refresh): done in",
                     "Dropping the scratch database: done in"):
        assert any(line.startswith(expected) for line in lines), f"no line starting {expected!r} in:\n{result.stdout}"
    assert not any(line.startswith("contacts") and "━" in line for line in lines), "no bars drawn into a pipe"
    assert json.loads(lines[-1])["bench"] == "segments"
