"""Settings, read once from the environment (prefix NUDGE_, plus the usual unprefixed URLs).

Nothing set means embedded defaults: Postgres, Temporal and a mail sink are started under `.nudge/`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _env(name: str) -> AliasChoices:
    return AliasChoices(name, f"NUDGE_{name}")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NUDGE_", extra="ignore", populate_by_name=True)

    home: Path = Field(Path(".nudge"), description="Where embedded services keep their data.")

    database_url: str | None = Field(None, validation_alias=_env("DATABASE_URL"))
    temporal_address: str | None = Field(None, validation_alias=_env("TEMPORAL_ADDRESS"))
    temporal_namespace: str = "default"
    temporal_ui_url: str | None = Field(None, description="Temporal UI base URL, for links from the API and "
                                                          "dashboards.")
    smtp_url: str | None = Field(None, validation_alias=_env("SMTP_URL"))
    elasticsearch_url: str | None = Field(None, validation_alias=_env("ELASTICSEARCH_URL"))

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    public_url: str | None = None

    postgres_port: int = 5499
    temporal_port: int = 7233
    temporal_ui_port: int = 8233
    smtp_port: int = 1025

    mail_from: str = "Nudge <nudge@localhost>"
    campaign_batch_size: int = Field(500, ge=1, le=5000)
    smtp_concurrency: int = Field(8, ge=1, le=64)
    # Daily prune (workflows/events_ops.py). A stored event refuses its replays as long as it is kept; only an
    # erased contact's message ids are forgotten, after the dedupe window.
    event_outbox_retention_days: int = Field(7, ge=1, description="Keep outbox rows every consumer has read this long.")
    event_dedupe_window_days: int = Field(30, ge=1, description="How long an erased contact's messageIds still "
                                                                "refuse replays.")
    segment_transitions_retention_days: int = Field(90, ge=1, description="Keep segment enter/exit history this long.")
    # Per API key, per API process (api/limits.py): N replicas let a key through up to N times these. 0 disables.
    rate_limit_api_per_second: float = Field(100, ge=0, description="Requests a second per key on the admin and "
                                                                    "read API (`/v1/...` but the tracking calls).")
    rate_limit_api_burst: int = Field(200, ge=1, description="Requests a key may send at once on that API.")
    rate_limit_ingest_per_second: float = Field(2000, ge=0, description="Requests a second per write key on the "
                                                                        "tracking API (`/v1/track`, `/v1/batch`...).")
    rate_limit_ingest_burst: int = Field(4000, ge=1, description="Requests a write key may send at once.")
    dashboard_session_hours: float = Field(12, gt=0, le=24 * 30, description="A dashboard sign-in lasts this long.")
    log_level: str = "info"
    worker_metrics_port: int | None = Field(None, description="Serve the worker's Prometheus metrics on this port.")

    @property
    def resolved_public_url(self) -> str:
        return self.public_url or f"http://{self.api_host}:{self.api_port}"

    @property
    def mail_dir(self) -> Path:
        return self.home / "mail"


@lru_cache
def get_settings() -> Settings:
    return Settings()
