"""The embedded stack: reuse of running services, clear port conflicts, clean Ctrl-C, the mail sink."""

from __future__ import annotations

import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path

import httpx
import psycopg
import pytest

from nudge.embedded import (
    EmbeddedPostgres,
    EmbeddedTemporal,
    MailSink,
    PortInUse,
    free_port,
    port_open,
    shared_buffers_mb,
)


def _occupy() -> tuple[socket.socket, int]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s, s.getsockname()[1]


def test_the_buffer_cache_is_an_eighth_of_memory_between_256_mb_and_2_gb() -> None:
    gib = 2**30
    assert shared_buffers_mb(1 * gib) == 256
    assert shared_buffers_mb(8 * gib) == 1024
    assert shared_buffers_mb(24 * gib) == 2048
    assert shared_buffers_mb(0) == 256
    assert 256 <= shared_buffers_mb() <= 2048


def test_postgres_is_reused_when_already_running(tmp_path: Path) -> None:
    first = EmbeddedPostgres(tmp_path / "pg", free_port(), fast_unsafe=True)
    first.start()
    try:
        second = EmbeddedPostgres(tmp_path / "pg", first.port)
        second.start()
        assert first.started_here and not second.started_here
        assert second.is_running()
        with psycopg.connect(first.admin_url) as conn:
            row = conn.execute("SELECT setting::bigint * 8 / 1024 FROM pg_settings"
                               " WHERE name = 'shared_buffers'").fetchone()
        assert row is not None and row[0] == shared_buffers_mb()
    finally:
        first.stop()
    assert not first.is_running()


def test_busy_ports_give_an_actionable_message(tmp_path: Path) -> None:
    sock, port = _occupy()
    with sock:
        with pytest.raises(PortInUse, match=f"Port {port} is already in use.*NUDGE_POSTGRES_PORT"):
            EmbeddedPostgres(tmp_path / "pg", port).start()
        with pytest.raises(PortInUse, match="TEMPORAL_ADDRESS"):
            EmbeddedTemporal(None, port, None, tmp_path / "t.log").start()
        with pytest.raises(PortInUse, match="SMTP_URL"):
            MailSink(tmp_path / "mail", port).start()


def test_mail_sink_files_each_message_id_once(tmp_path: Path) -> None:
    sink = MailSink(tmp_path / "mail", free_port())
    sink.start()
    try:
        mail = EmailMessage()
        mail["From"], mail["To"], mail["Subject"], mail["Message-ID"] = "a@x", "b@x", "hi", "<k.1@x>"
        mail.set_content("body")
        with smtplib.SMTP(sink.host, sink.port) as smtp:
            smtp.send_message(mail)
            smtp.send_message(mail)
        assert (sink.received, sink.duplicates, len(sink.messages())) == (2, 1, 1)
        assert sink.messages()[0]["Subject"] == "hi"
    finally:
        sink.stop()


def test_nudge_demo_delivers_serves_its_urls_and_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    ports = {"NUDGE_API_PORT": free_port(), "NUDGE_POSTGRES_PORT": free_port(), "NUDGE_TEMPORAL_PORT": free_port(),
             "NUDGE_TEMPORAL_UI_PORT": free_port(), "NUDGE_SMTP_PORT": free_port()}
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TEMPORAL_ADDRESS", "SMTP_URL")}
    env |= {k: str(v) for k, v in ports.items()} | {"NUDGE_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    nudge = str(Path(sys.executable).parent / "nudge")
    proc = subprocess.Popen([nudge, "demo"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Press Ctrl-C" in line:
                break
        output = "".join(lines)
        assert "Nudge demo is running" in output, output
        assert "300 coins for daily check-ins, 100 imported (expiring this month)" in output, output
        assert "Coins: 3 ¥10 coupons bought for 15 coins each" in output, output  # the redemption saga ran
        urls = set(re.findall(r"(http://127\.0\.0\.1:\d+/[\w/.-]*)", output))
        assert len(urls) >= 4, output
        for url in urls:
            assert httpx.get(url, timeout=10, follow_redirects=True).status_code == 200, url
        key = re.search(r"Bootstrap admin key.*?(nk_\w+_[\w-]+)", output, re.S)
        assert key, output
        mail = [f for f in (tmp_path / "home" / "mail").glob("*.eml")]
        assert len(mail) == 40, "every demo contact gets the demo broadcast"

        # A second `nudge dev` from the same home reuses the services and refuses the busy API port.
        again = subprocess.run([nudge, "dev"], env=env, capture_output=True, text=True, timeout=60)
        assert again.returncode == 1
        for service in ("Postgres reused", "Temporal reused", "Mail sink reused"):
            assert service in again.stdout, again.stdout
        assert "already in use" in again.stdout and "NUDGE_API_PORT" in again.stdout, again.stderr[-3000:]
        api = f"http://127.0.0.1:{ports['NUDGE_API_PORT']}"
        assert httpx.get(f"{api}/healthz", timeout=5).json()["status"] == "ok"  # the first one is unharmed

        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, "".join(lines) + (rest or "")
    for name in ("NUDGE_API_PORT", "NUDGE_POSTGRES_PORT", "NUDGE_TEMPORAL_PORT", "NUDGE_SMTP_PORT"):
        assert not port_open(ports[name]), f"{name} still open after Ctrl-C"
