"""Run the mail sink as its own process (`python -m nudge.mailsink DIR PORT`).

In its own process it does not compete for the GIL with the API and worker, which caps a shared-process
sink at a few dozen messages per second under concurrent senders.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

from nudge.embedded import MailSink, _wait_for_port, ensure_sink_port_free, port_open, reusable_pid


class MailSinkProcess:
    def __init__(self, directory: Path, port: int, host: str = "127.0.0.1") -> None:
        self.directory, self.port, self.host = directory, port, host
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.directory / "sink.pid"

    def start(self) -> None:
        if reusable_pid(self.pid_file) and port_open(self.port, self.host):
            return  # reuse the sink an earlier `nudge dev` started from this home
        ensure_sink_port_free(self.port, self.host)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen([sys.executable, "-m", "nudge.mailsink", str(self.directory), str(self.port)],
                                        start_new_session=True)
        self.pid_file.write_text(str(self.process.pid))
        _wait_for_port(self.port, 20, "The mail sink")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.process = None
            self.pid_file.unlink(missing_ok=True)


def main() -> None:
    directory, port = Path(sys.argv[1]), int(sys.argv[2])
    sink = MailSink(directory, port)
    sink.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    sink.stop()


if __name__ == "__main__":
    main()
