"""Bring the embedded stack up for `nudge dev`, `nudge demo` and `nudge bench`, and down again.

Whatever is configured (DATABASE_URL, TEMPORAL_ADDRESS, SMTP_URL) is used as is; whatever is not is
started under settings.home. Services already running from the same home are reused, and only the
services this process started are stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.console import Console

from channels.simulators import Simulators
from core.settings import Settings
from nudge.embedded import EmbeddedPostgres, EmbeddedTemporal, free_port, port_open
from nudge.mailsink import MailSinkProcess
from store.migrate import upgrade


@dataclass
class Stack:
    settings: Settings
    console: Console = field(default_factory=Console)
    postgres: EmbeddedPostgres | None = None
    temporal: EmbeddedTemporal | None = None
    sink: MailSinkProcess | None = None
    simulators: Simulators | None = None

    def up(self, *, migrate: bool = True, database_only: bool = False) -> Settings:
        """Start what is not configured and return settings that point at everything."""
        s = self.settings
        s.home.mkdir(parents=True, exist_ok=True)
        updates: dict[str, object] = {}
        with self.console.status("Starting the embedded stack…"):
            if not s.database_url:
                self.postgres = EmbeddedPostgres(s.home.resolve() / "pg", s.postgres_port)
                self.postgres.start()
                updates["database_url"] = self.postgres.url
                self._say("Postgres", f"127.0.0.1:{s.postgres_port}", self.postgres.started_here)
            if not s.temporal_address and not database_only:
                self.temporal = EmbeddedTemporal(s.home / "temporal.db", s.temporal_port, s.temporal_ui_port,
                                                 s.home / "temporal.log")
                self.temporal.start()
                updates["temporal_address"] = self.temporal.address
                updates["temporal_ui_url"] = f"http://127.0.0.1:{s.temporal_ui_port}"
                self._say("Temporal", f"{self.temporal.address}, UI on :{s.temporal_ui_port}",
                          self.temporal.process is not None)
            if not s.smtp_url and not database_only:
                self.sink = MailSinkProcess(s.mail_dir, s.smtp_port)
                self.sink.start()
                updates["smtp_url"] = self.sink.url
                self._say("Mail sink", f"127.0.0.1:{s.smtp_port}, inbox in {s.mail_dir}", self.sink.process is not None)
            simulated = simulated_providers(s)
            if simulated and s.simulators and not database_only:
                port = s.simulator_port
                if port == 0 or port_open(port):  # taken (another `nudge dev`?): any port the stack does not use
                    taken = {s.api_port, s.postgres_port, s.temporal_port, s.temporal_ui_port, s.smtp_port}
                    port = next(p for p in iter(free_port, None) if p not in taken)
                self.simulators = Simulators(s.simulator_dir, port=port, nudge_url=s.resolved_public_url,
                                             callback_delay=s.simulator_callback_delay).start()
                updates.update({k: v for k, v in self.simulators.settings().items() if k.split("_")[0] in simulated})
                where = ", ".join(f"{p} {self.simulators.base_url(p)}" for p in simulated)
                self._say("Provider simulators", f"{where}; inboxes in {s.simulator_dir}", True)
        self.settings = s.model_copy(update=updates)
        if migrate:
            with self.console.status("Applying database migrations…"):
                upgrade(self.settings.database_url or "")
            self.console.print("[green]✓[/] Database schema is up to date")
        return self.settings

    def _say(self, what: str, where: str, started: bool) -> None:
        verb = "started" if started else "reused"
        self.console.print(f"[green]✓[/] {what} {verb} on {where}")

    def down(self) -> None:
        if self.simulators is not None:
            self.simulators.stop()
        if self.sink is not None:
            self.sink.stop()
        if self.temporal is not None:
            self.temporal.stop()
        if self.postgres is not None and self.postgres.started_here:
            self.postgres.stop()


def simulated_providers(s: Settings) -> list[str]:
    """The providers whose credentials are not configured: `nudge dev` points them at the simulators."""
    missing = {
        "twilio": not (s.twilio_account_sid and s.twilio_auth_token),
        "fcm": not s.fcm_service_account_file,
        "wechat": not (s.wechat_app_id and s.wechat_app_secret),
    }
    return [provider for provider, unset in missing.items() if unset]
