"""The WeChat template-message adapter against the WeChat simulator: token fetch, caching and refresh on expiry,
the message format, `client_msg_id` de-duplication, errcode classes, and signed TEMPLATESENDJOBFINISH events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from channels.base import Channel, ErrorClass, Message, ReceiptStatus
from channels.simulators import Simulators
from channels.wechat import WechatCallbacks, WechatChannel
from tests.channels.conftest import start_receiver

TEMPLATE = {"template_id": "ngqIpbwh8bUfcSsECmogfXcV14J0tQlEpBO27izEYtY"}


def key() -> str:
    return f"delivery:{uuid.uuid4().hex}"


def openid() -> str:
    return "oLVPpjq" + uuid.uuid4().hex[:21]


def fresh_channel(simulators: Simulators, **kwargs: object) -> WechatChannel:
    return WechatChannel(simulators.base_url("wechat"), simulators.wechat.app_id, simulators.wechat.app_secret,
                         **kwargs)  # type: ignore[arg-type]


async def test_template_message_arrives_in_wechats_format(channels: dict[str, Channel],
                                                          simulators: Simulators) -> None:
    k, to = key(), openid()
    message = Message(key=k, to=to, subject="订单已发货", text="感谢您的惠顾", data={
        **TEMPLATE, "url": "https://shop.example/orders/42",
        "fields": {"first": "您的订单已发货", "keyword1": "SF123456", "keyword2": {"value": "顺丰", "color": "#173177"},
                   "remark": "感谢您的惠顾"}})
    [result] = await channels["wechat"].send_many([message])
    assert result.accepted and result.provider_message_id and result.provider_message_id.isdigit()
    [sent] = [m for m in simulators.wechat.inbox.read() if m["key"] == k]
    assert (sent["id"], sent["to"], sent["template_id"], sent["url"]) == (
        result.provider_message_id, to, TEMPLATE["template_id"], "https://shop.example/orders/42")
    assert sent["data"] == {"first": {"value": "您的订单已发货"}, "keyword1": {"value": "SF123456"},
                            "keyword2": {"value": "顺丰", "color": "#173177"}, "remark": {"value": "感谢您的惠顾"}}


async def test_a_resent_key_is_one_wechat_message(channels: dict[str, Channel], simulators: Simulators) -> None:
    message = Message(key=key(), to=openid(), data=TEMPLATE)
    first = await channels["wechat"].send_many([message])
    again = await channels["wechat"].send_many([message])
    assert first[0].provider_message_id == again[0].provider_message_id
    assert len([m for m in simulators.wechat.inbox.read() if m["key"] == message.key]) == 1


async def test_the_access_token_is_cached_and_refreshed_once_when_expired(simulators: Simulators) -> None:
    channel = fresh_channel(simulators)
    try:
        before = simulators.wechat.stats["token_requests"]
        results = await channel.send_many([Message(key=key(), to=openid(), data=TEMPLATE) for _ in range(4)])
        assert all(r.accepted for r in results)
        await channel.send_many([Message(key=key(), to=openid(), data=TEMPLATE)])
        assert simulators.wechat.stats["token_requests"] == before + 1
        simulators.wechat.expire_tokens()  # the next send answers 42001: refresh, then send again
        [result] = await channel.send_many([Message(key=key(), to=openid(), data=TEMPLATE)])
        assert result.accepted
        assert simulators.wechat.stats["token_requests"] == before + 2
    finally:
        await channel.aclose()


async def test_wrong_app_credentials_are_refused(simulators: Simulators) -> None:
    channel = WechatChannel(simulators.base_url("wechat"), simulators.wechat.app_id, "wrong")
    try:
        [result] = await channel.send_many([Message(key=key(), to=openid(), data=TEMPLATE)])
    finally:
        await channel.aclose()
    assert result.error_class is ErrorClass.NON_RETRYABLE and "40125" in (result.error or "")


async def test_wechat_errcodes_are_classified(channels: dict[str, Channel]) -> None:
    messages = {
        "no openid": Message(key=key(), to=None, data=TEMPLATE),
        "no template": Message(key=key(), to=openid()),
        "not subscribed": Message(key=key(), to="unreachable-" + openid(), data=TEMPLATE),
        "invalid openid": Message(key=key(), to="invalid-" + openid(), data=TEMPLATE),
        "malformed openid": Message(key=key(), to="not an openid!", data=TEMPLATE),
        "bad template": Message(key=key(), to="reject-" + openid(), data=TEMPLATE),
        "rate limited": Message(key=key(), to="busy-" + openid(), data=TEMPLATE),
    }
    results = dict(zip(messages, await channels["wechat"].send_many(list(messages.values())), strict=True))
    assert {name: r.error_class for name, r in results.items()} == {
        "no openid": ErrorClass.UNREACHABLE, "no template": ErrorClass.NON_RETRYABLE,
        "not subscribed": ErrorClass.UNREACHABLE, "invalid openid": ErrorClass.UNREACHABLE,
        "malformed openid": ErrorClass.UNREACHABLE, "bad template": ErrorClass.NON_RETRYABLE,
        "rate limited": ErrorClass.RETRYABLE}
    assert "43004" in (results["not subscribed"].error or "") and "45009" in (results["rate limited"].error or "")


async def test_a_wechat_that_does_not_answer_in_time_is_retryable(simulators: Simulators) -> None:
    channel = fresh_channel(simulators, timeout=0.2)
    try:
        [result] = await channel.send_many([Message(key=key(), to="timeout-" + openid(), data=TEMPLATE)])
    finally:
        await channel.aclose()
    assert result.error_class is ErrorClass.RETRYABLE


async def test_send_job_finish_events_arrive_signed_and_verify(simulators: Simulators) -> None:
    receiver = start_receiver()
    previous = simulators.wechat.callback_url
    simulators.wechat.callback_url = f"{receiver.url}/v1/webhooks/wechat"
    channel = fresh_channel(simulators)
    try:
        results = await channel.send_many([Message(key=key(), to=to, data=TEMPLATE) for to in (
            "silent-" + openid(), openid(), "undelivered-" + openid())])
        posted = await receiver.wait_for("/v1/webhooks/wechat", 2)
    finally:
        simulators.wechat.callback_url = previous
        await channel.aclose()
        assert receiver.server is not None
        receiver.server.stop()
    verifier = WechatCallbacks(simulators.wechat.token)
    receipts = {r.provider_message_id: r for p in posted
                for r in verifier.parse_callback(p.url, p.headers, p.body, datetime.now(UTC))}
    silent, delivered, blocked = (r.provider_message_id for r in results)
    assert receipts[delivered].status is ReceiptStatus.DELIVERED and receipts[delivered].channel == "wechat"
    assert receipts[blocked].status is ReceiptStatus.FAILED and receipts[blocked].error == "user block"
    assert silent not in receipts and len(posted) == 2
