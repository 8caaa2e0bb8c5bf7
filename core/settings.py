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
    # docs/campaigns.md: when launching needs another key's approval (`never`, `always`, `audience>N`, `incentive`).
    campaign_approval: str = "incentive"
    campaign_window: int = Field(4, ge=1, le=64, description="Batches of one campaign run in flight at once.")
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
    # Delivery rules (docs/deliveries.md): caps across all campaigns and journeys, quiet hours in the contact's zone,
    # how long each channel's receipt may take before the fallback chain moves on.
    frequency_caps: str = Field("", description="e.g. `*:2/1d,*:5/7d,sms:1/1d` (transactional exempt); empty: none.")
    quiet_hours: str = Field("", description="e.g. `21:00-08:00` in each contact's time zone; empty: none.")
    default_timezone: str = Field("UTC", description="The zone of contacts without one (quiet hours).")
    receipt_windows: str = Field("wechat:600,sms:600,push:600", description="Seconds per channel a delivery receipt "
                                                                            "may take before falling back.")
    provider_rates: str = Field("", description="Messages a second per channel across all workers, e.g. "
                                                "`sms:10,wechat:50`; empty: unlimited.")
    # Channels (channels/registry.py, docs/channels.md). A provider is configured when its credentials are set;
    # `nudge dev` points the unconfigured ones at the local simulators (channels/simulators/).
    channel_timeout_seconds: float = Field(10, gt=0, le=120, description="HTTP timeout of one provider call.")
    channel_concurrency: int = Field(16, ge=1, le=256, description="Provider calls in flight per channel.")
    callback_tolerance_seconds: int = Field(300, ge=1, le=86_400, description="Refuse provider callbacks "
                                                                              "timestamped further from now.")
    twilio_base_url: str = "https://api.twilio.com"
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_from: str | None = Field(None, description="Sender number (E.164); or set twilio_messaging_service_sid.")
    twilio_messaging_service_sid: str | None = None
    fcm_base_url: str = "https://fcm.googleapis.com"
    fcm_service_account_file: Path | None = Field(None, description="FCM service-account JSON (project_id, "
                                                                    "client_email, private_key, token_uri).")
    fcm_callback_secret: str | None = Field(None, description="Secret of the Nudge-signed push receipts a relay "
                                                              "(or the simulator) posts to /v1/webhooks/fcm.")
    wechat_base_url: str = "https://api.weixin.qq.com"
    wechat_app_id: str | None = None
    wechat_app_secret: str | None = None
    wechat_token: str | None = Field(None, description="The server-configuration Token WeChat signs callbacks with.")
    webhook_secret: str | None = Field(None, description="HMAC-SHA256 secret of the Nudge-Signature header on "
                                                         "webhook-channel posts; the channel is off without it.")
    breaker_threshold: int = Field(20, ge=1, le=10_000, description="Provider errors within the window that open a "
                                                                   "channel's circuit breaker.")
    breaker_window_seconds: float = Field(30, gt=0, le=3600, description="The breaker counts errors this far back.")
    breaker_cooldown_seconds: float = Field(60, gt=0, le=3600, description="An open breaker refuses sends this long, "
                                                                          "then lets one probe through.")
    simulators: bool = Field(True, description="`nudge dev`/`demo`: simulate the providers left unconfigured.")
    simulator_port: int = Field(8025, ge=0, le=65535, description="Port of the provider simulators (0: any free).")
    simulator_callback_delay: float = Field(2.0, ge=0, le=3600, description="Seconds before a simulator reports "
                                                                            "a delivery.")
    journey_poll_seconds: float = Field(2.0, gt=0, le=3600, description="How soon a journey sees new events "
                                                                       "(trigger, wait-for-event, goal).")
    journey_window_seconds: float = Field(60.0, ge=0, le=3600, description="Wall-clock seconds one journey "
                                                                          "activity keeps polling while idle "
                                                                          "(fewer workflow history events).")
    log_level: str = "info"
    worker_metrics_port: int | None = Field(None, description="Serve the worker's Prometheus metrics on this port.")

    @property
    def resolved_public_url(self) -> str:
        return self.public_url or f"http://{self.api_host}:{self.api_port}"

    @property
    def mail_dir(self) -> Path:
        return self.home / "mail"

    @property
    def simulator_dir(self) -> Path:
        return self.home / "simulators"


@lru_cache
def get_settings() -> Settings:
    return Settings()
