"""The channels and callback verifiers a process has, built from settings: a provider is there when its
credentials are configured (`nudge dev` points unconfigured ones at the local simulators)."""

from __future__ import annotations

from collections.abc import Iterable

from channels.base import CallbackVerifier, Channel
from channels.breaker import CircuitBreaker
from channels.email import EmailChannel
from channels.http import HttpAdapter
from channels.push import PushCallbacks, PushChannel, ServiceAccount
from channels.sms import SmsChannel, TwilioCallbacks
from channels.webhook import WebhookChannel
from channels.wechat import WechatCallbacks, WechatChannel
from core.settings import Settings


def twilio_callback_url(settings: Settings) -> str:
    """Where Twilio posts status callbacks; Twilio signs this exact URL, so the webhook route verifies with it."""
    return f"{settings.resolved_public_url.rstrip('/')}/v1/webhooks/twilio"


def build_channels(settings: Settings, email: EmailChannel | None = None) -> dict[str, Channel]:
    """The configured channels by name: `email`, `sms`, `push`, `wechat`, `webhook`."""
    timeout, concurrency = settings.channel_timeout_seconds, settings.channel_concurrency
    channels: dict[str, Channel] = {}
    if email is not None:
        channels["email"] = email
    elif settings.smtp_url:
        channels["email"] = EmailChannel(settings.smtp_url, settings.mail_from, concurrency=settings.smtp_concurrency)
    if settings.twilio_account_sid and settings.twilio_auth_token and (
            settings.twilio_from or settings.twilio_messaging_service_sid):
        channels["sms"] = SmsChannel(settings.twilio_base_url, settings.twilio_account_sid, settings.twilio_auth_token,
                                     sender=settings.twilio_from,
                                     messaging_service_sid=settings.twilio_messaging_service_sid,
                                     status_callback=twilio_callback_url(settings), timeout=timeout,
                                     concurrency=concurrency)
    if settings.fcm_service_account_file:
        account = ServiceAccount.from_file(settings.fcm_service_account_file)
        channels["push"] = PushChannel(settings.fcm_base_url, account, timeout=timeout, concurrency=concurrency)
    if settings.wechat_app_id and settings.wechat_app_secret:
        channels["wechat"] = WechatChannel(settings.wechat_base_url, settings.wechat_app_id,
                                           settings.wechat_app_secret, timeout=timeout, concurrency=concurrency)
    if settings.webhook_secret:
        channels["webhook"] = WebhookChannel(settings.webhook_secret, timeout=timeout, concurrency=concurrency)
    return channels


def build_breakers(settings: Settings, channels: Iterable[str]) -> dict[str, CircuitBreaker]:
    """One circuit breaker per channel, for this process (the delivery code consults `allow()` before sending and
    `record()`s each outcome of the retryable class)."""
    return {name: CircuitBreaker(name, threshold=settings.breaker_threshold, window=settings.breaker_window_seconds,
                                 cooldown=settings.breaker_cooldown_seconds) for name in channels}


def build_verifiers(settings: Settings) -> dict[str, CallbackVerifier]:
    """The callback verifiers by provider (`POST /v1/webhooks/{provider}`): `twilio`, `fcm`, `wechat`."""
    tolerance = settings.callback_tolerance_seconds
    verifiers: dict[str, CallbackVerifier] = {}
    if settings.twilio_auth_token:
        verifiers["twilio"] = TwilioCallbacks(settings.twilio_auth_token)
    if settings.fcm_callback_secret:
        verifiers["fcm"] = PushCallbacks(settings.fcm_callback_secret, tolerance=tolerance)
    if settings.wechat_token:
        verifiers["wechat"] = WechatCallbacks(settings.wechat_token, tolerance=tolerance)
    return verifiers


async def close_channels(channels: dict[str, Channel]) -> None:
    for channel in channels.values():
        if isinstance(channel, HttpAdapter):
            await channel.aclose()
