"""The FCM HTTP v1 adapter against the FCM simulator: the OAuth token exchange (signed JWT), its caching and
refresh, the message format, error classes, and the Nudge-signed receipts."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime

import httpx

from channels.base import Channel, ErrorClass, Message, ReceiptStatus
from channels.push import PushCallbacks, PushChannel, ServiceAccount
from channels.simulators import Simulators
from tests.channels.conftest import start_receiver


def key() -> str:
    return f"delivery:{uuid.uuid4().hex}"


def device() -> str:
    return f"dev-{uuid.uuid4().hex}:APA91b"


def fresh_channel(simulators: Simulators, **kwargs: object) -> PushChannel:
    return PushChannel(simulators.base_url("fcm"), ServiceAccount.from_file(simulators.service_account_file),
                       **kwargs)  # type: ignore[arg-type]


async def test_message_arrives_in_fcm_v1_format(channels: dict[str, Channel], simulators: Simulators) -> None:
    k, token = key(), device()
    message = Message(key=k, to=token, subject="Flash sale", text="50% off until midnight",
                      data={"data": {"deeplink": "app://sale", "count": 3}})
    [result] = await channels["push"].send_many([message])
    assert result.accepted
    assert result.provider_message_id and result.provider_message_id.startswith("projects/nudge-simulator/messages/")
    [sent] = [m for m in simulators.fcm.inbox.read() if m["key"] == k]
    assert sent["to"] == token
    assert sent["notification"] == {"title": "Flash sale", "body": "50% off until midnight"}
    assert sent["data"] == {"deeplink": "app://sale", "count": "3", "nudge_key": k}


async def test_the_access_token_is_fetched_once_cached_and_refreshed_when_refused(simulators: Simulators) -> None:
    channel = fresh_channel(simulators)
    try:
        before = simulators.fcm.stats["token_requests"]
        results = await channel.send_many([Message(key=key(), to=device(), text="x") for _ in range(5)])
        assert all(r.accepted for r in results)
        assert simulators.fcm.stats["token_requests"] == before + 1  # one exchange for five concurrent sends
        await channel.send_many([Message(key=key(), to=device(), text="x")])
        assert simulators.fcm.stats["token_requests"] == before + 1
        simulators.fcm.expire_tokens()  # FCM answers 401: the adapter fetches a new token and retries once
        [result] = await channel.send_many([Message(key=key(), to=device(), text="x")])
        assert result.accepted
        assert simulators.fcm.stats["token_requests"] == before + 2
    finally:
        await channel.aclose()


async def test_a_token_near_its_expiry_is_replaced_before_use(simulators: Simulators) -> None:
    now = [time.time() - 3600 + 59]  # the simulator checks the assertion's iat/exp against its own clock
    channel = fresh_channel(simulators, clock=lambda: now[0])
    try:
        first = await channel.access_token()
        now[0] += 3600 - 59  # the first token (3600 s) is now inside the refresh margin
        assert await channel.access_token() != first
    finally:
        await channel.aclose()


async def test_a_forged_service_account_gets_no_token(simulators: Simulators) -> None:
    info = json.loads(simulators.service_account_file.read_text())
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    info["private_key"] = other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()).decode()
    channel = PushChannel(simulators.base_url("fcm"), ServiceAccount(info))
    try:
        [result] = await channel.send_many([Message(key=key(), to=device(), text="x")])
    finally:
        await channel.aclose()
    assert result.error_class is ErrorClass.NON_RETRYABLE and "invalid_grant" in (result.error or "")


async def test_fcm_errors_are_classified(channels: dict[str, Channel]) -> None:
    tokens = {"none": None, "unregistered": "unregistered-device", "invalid": "invalid-device", "short": "abc",
              "sender mismatch": "reject-device", "quota": "busy-device"}
    results = await channels["push"].send_many([Message(key=key(), to=t, text="x") for t in tokens.values()])
    assert dict(zip(tokens, (r.error_class for r in results), strict=True)) == {
        "none": ErrorClass.UNREACHABLE, "unregistered": ErrorClass.UNREACHABLE, "invalid": ErrorClass.UNREACHABLE,
        "short": ErrorClass.UNREACHABLE, "sender mismatch": ErrorClass.NON_RETRYABLE, "quota": ErrorClass.RETRYABLE}
    assert "UNREGISTERED" in (results[1].error or "")


async def test_receipts_arrive_signed_after_the_delay(simulators: Simulators) -> None:
    receiver = start_receiver()
    try:
        previous = simulators.fcm.callback_url
        simulators.fcm.callback_url = f"{receiver.url}/v1/webhooks/fcm"
        channel = fresh_channel(simulators)
        try:
            results = await channel.send_many([Message(key=key(), to=t, text="x")
                                               for t in ("silent-device", device(), "undelivered-device")])
        finally:
            simulators.fcm.callback_url = previous
            await channel.aclose()
        posted = await receiver.wait_for("/v1/webhooks/fcm", 2)
    finally:
        assert receiver.server is not None
        receiver.server.stop()
    verifier = PushCallbacks(simulators.fcm.callback_secret)
    receipts = {r.provider_message_id: r for p in posted
                for r in verifier.parse_callback(p.url, p.headers, p.body, datetime.now(UTC))}
    silent, delivered, undelivered = (r.provider_message_id for r in results)
    assert receipts[delivered].status is ReceiptStatus.DELIVERED and receipts[delivered].key == results[1].key
    assert receipts[undelivered].status is ReceiptStatus.FAILED
    assert silent not in receipts and len(posted) == 2


async def test_the_simulator_validates_like_fcm(simulators: Simulators) -> None:
    channel = fresh_channel(simulators)
    try:
        token = await channel.access_token()
        url = f"{simulators.base_url('fcm')}/v1/projects/nudge-simulator/messages:send"
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as client:
            no_target = await client.post(url, json={"message": {"notification": {"title": "t"}}})
            bad_data = await client.post(url, json={"message": {"token": device(), "data": {"n": 1}}})
            other_project = await client.post(url.replace("nudge-simulator", "other"),
                                              json={"message": {"token": device()}})
        async with httpx.AsyncClient() as anonymous:
            unauthenticated = await anonymous.post(url, json={"message": {"token": device()}})
    finally:
        await channel.aclose()
    assert [r.status_code for r in (no_target, bad_data, other_project, unauthenticated)] == [400, 400, 403, 401]
    assert bad_data.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert unauthenticated.json()["error"]["status"] == "UNAUTHENTICATED"
