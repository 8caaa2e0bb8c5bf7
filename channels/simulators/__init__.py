"""Local provider simulators for SMS (Twilio), push (FCM HTTP v1) and WeChat template messages: real HTTP servers
on 127.0.0.1 speaking the providers' wire formats, keeping inboxes, and posting signed delivery callbacks after a
delay. `nudge dev`/`nudge demo` start them for the providers that are not configured; the tests start them from
a session fixture. Each simulator lives under its own base URL: `{url}/twilio`, `{url}/fcm`, `{url}/wechat`."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from channels.simulators.core import Action, Behaviour, SimulatorServer, read_inbox
from channels.simulators.fcm import FcmSimulator
from channels.simulators.twilio import TwilioSimulator
from channels.simulators.wechat import WechatSimulator

__all__ = ["Action", "Behaviour", "FcmSimulator", "PROVIDERS", "Simulators", "TwilioSimulator", "WechatSimulator",
           "read_inbox"]

PROVIDERS = ("twilio", "fcm", "wechat")
SIM_SENDER = "+15005550000"


class Simulators:
    """The three simulators on one server. `nudge_url` is Nudge's public URL: FCM receipts and WeChat events go
    to `{nudge_url}/v1/webhooks/fcm|wechat` (Twilio's go to each message's `StatusCallback`)."""

    def __init__(self, directory: Path, *, port: int = 0, nudge_url: str | None = None,
                 callback_delay: float = 1.0) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        base = nudge_url.rstrip("/") if nudge_url else None
        self.twilio = TwilioSimulator(directory, callback_delay=callback_delay)
        self.fcm = FcmSimulator(directory, callback_url=f"{base}/v1/webhooks/fcm" if base else None,
                                callback_delay=callback_delay)
        self.wechat = WechatSimulator(directory, callback_url=f"{base}/v1/webhooks/wechat" if base else None,
                                      callback_delay=callback_delay, token=secrets.token_hex(8))
        self.server = SimulatorServer([self.twilio, self.fcm, self.wechat], port=port)
        self.fcm.base_url = self.base_url("fcm")
        self.service_account_file = self.fcm.write_service_account(directory / "fcm-service-account.json")

    @property
    def url(self) -> str:
        return self.server.url

    def base_url(self, provider: str) -> str:
        return f"{self.server.url}/{provider}"

    def start(self) -> Simulators:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> Simulators:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def settings(self) -> dict[str, Any]:
        """Settings fields that point Nudge's channels and callback verifiers at these simulators."""
        return {
            "twilio_base_url": self.base_url("twilio"), "twilio_account_sid": self.twilio.account_sid,
            "twilio_auth_token": self.twilio.auth_token, "twilio_from": SIM_SENDER,
            "fcm_base_url": self.base_url("fcm"), "fcm_service_account_file": self.service_account_file,
            "fcm_callback_secret": self.fcm.callback_secret,
            "wechat_base_url": self.base_url("wechat"), "wechat_app_id": self.wechat.app_id,
            "wechat_app_secret": self.wechat.app_secret, "wechat_token": self.wechat.token,
        }
