"""The webhook channel against a real receiver: the signed JSON post, the delivery header, status classes."""

from __future__ import annotations

import json
import time
import uuid

from channels.base import Channel, ErrorClass, Message
from channels.webhook import WebhookChannel
from domain.channels.signatures import verify_nudge
from tests.channels.conftest import Receiver


def key() -> str:
    return f"delivery:{uuid.uuid4().hex}"


async def test_posts_signed_json_with_the_delivery_key(channels: dict[str, Channel], receiver: Receiver) -> None:
    k, path = key(), f"/hooks/{uuid.uuid4().hex}"
    body = {"event": "cart_abandoned", "contact": {"id": 42}, "items": ["茶"]}
    [result] = await channels["webhook"].send_many([Message(key=k, to=receiver.url + path, data=body)])
    assert result.accepted
    [posted] = receiver.to(path)
    assert json.loads(posted.body) == body
    assert posted.headers["content-type"] == "application/json"
    assert posted.headers["nudge-delivery"] == k
    verify_nudge("whsec_test", posted.headers["nudge-signature"], posted.body, int(time.time()), 300)


async def test_receiver_statuses_are_classified(channels: dict[str, Channel], receiver: Receiver) -> None:
    statuses = {"gone": 410, "bad": 400, "unauthorized": 401, "throttled": 429, "down": 503}
    run = uuid.uuid4().hex
    for name, status in statuses.items():
        receiver.status[f"/{run}/{name}"] = status
    messages = [Message(key=key(), to=f"{receiver.url}/{run}/{name}", data={"n": 1}) for name in statuses]
    messages.append(Message(key=key(), to="ftp://example.com/hook"))
    messages.append(Message(key=key(), to=None))
    results = await channels["webhook"].send_many(messages)
    assert [r.error_class for r in results] == [
        ErrorClass.UNREACHABLE, ErrorClass.NON_RETRYABLE, ErrorClass.NON_RETRYABLE, ErrorClass.RETRYABLE,
        ErrorClass.RETRYABLE, ErrorClass.UNREACHABLE, ErrorClass.UNREACHABLE]


async def test_an_unreachable_endpoint_is_retryable() -> None:
    channel = WebhookChannel("s", timeout=1)
    try:
        [result] = await channel.send_many([Message(key=key(), to="http://127.0.0.1:9/hook", data={})])
    finally:
        await channel.aclose()
    assert result.error_class is ErrorClass.RETRYABLE
