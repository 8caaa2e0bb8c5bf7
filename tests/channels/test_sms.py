"""The Twilio adapter against the Twilio simulator: wire format, idempotency, error classes, status callbacks."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from channels.base import Channel, ErrorClass, Message, ReceiptStatus
from channels.simulators import Simulators
from channels.sms import SmsChannel, TwilioCallbacks
from core.settings import Settings
from tests.channels.conftest import Receiver


def key() -> str:
    return f"delivery:{uuid.uuid4().hex}"


def number() -> str:
    return f"+4915{uuid.uuid4().int % 10**9:09d}"


async def test_message_arrives_in_twilios_format_with_the_key_as_idempotency_token(
        channels: dict[str, Channel], simulators: Simulators, receiver: Receiver) -> None:
    k, to = key(), number()
    [result] = await channels["sms"].send_many([Message(key=k, to=to, text="Your code is 1234 — 春节快乐")])
    assert result.accepted and result.provider_message_id and result.provider_message_id.startswith("SM")
    [sent] = [m for m in simulators.twilio.inbox.read() if m["key"] == k]
    assert (sent["id"], sent["to"], sent["body"]) == (result.provider_message_id, to, "Your code is 1234 — 春节快乐")
    assert sent["from"] == "+15005550000"
    assert sent["status_callback"] == f"{receiver.url}/v1/webhooks/twilio"


async def test_a_resent_key_is_the_same_twilio_message(channels: dict[str, Channel], simulators: Simulators) -> None:
    message = Message(key=key(), to=number(), text="once")
    first = await channels["sms"].send_many([message])
    again = await channels["sms"].send_many([message])
    assert first[0].provider_message_id == again[0].provider_message_id
    assert len([m for m in simulators.twilio.inbox.read() if m["key"] == message.key]) == 1


async def test_twilio_errors_are_classified(channels: dict[str, Channel]) -> None:
    messages = {
        "no number": Message(key=key(), to=None, text="x"),
        "not e164": Message(key=key(), to="0800 FLOWERS", text="x"),
        "unreachable": Message(key=key(), to="+15005550001", text="x"),
        "region": Message(key=key(), to="+15005550002", text="x"),
        "throttled": Message(key=key(), to="+15005550003", text="x"),
        "empty body": Message(key=key(), to=number(), text=""),
    }
    results = dict(zip(messages, await channels["sms"].send_many(list(messages.values())), strict=True))
    classes = {name: r.error_class for name, r in results.items()}
    assert classes == {"no number": ErrorClass.UNREACHABLE, "not e164": ErrorClass.UNREACHABLE,
                       "unreachable": ErrorClass.UNREACHABLE, "region": ErrorClass.NON_RETRYABLE,
                       "throttled": ErrorClass.RETRYABLE, "empty body": ErrorClass.NON_RETRYABLE}
    assert "21211" in (results["unreachable"].error or "") and "20429" in (results["throttled"].error or "")
    assert not any(r.accepted for r in results.values())


async def test_wrong_credentials_are_refused_permanently(simulators: Simulators) -> None:
    channel = SmsChannel(simulators.base_url("twilio"), simulators.twilio.account_sid, "wrong", sender="+15005550000")
    try:
        [result] = await channel.send_many([Message(key=key(), to=number(), text="x")])
    finally:
        await channel.aclose()
    assert result.error_class is ErrorClass.NON_RETRYABLE and "20003" in (result.error or "")


async def test_a_provider_that_does_not_answer_in_time_is_retryable(simulators: Simulators) -> None:
    channel = SmsChannel(simulators.base_url("twilio"), simulators.twilio.account_sid, simulators.twilio.auth_token,
                         sender="+15005550000", timeout=0.2)
    try:
        [result] = await channel.send_many([Message(key=key(), to="+15005550004", text="x")])
    finally:
        await channel.aclose()
    assert result.error_class is ErrorClass.RETRYABLE and "timed out" in (result.error or "")


async def test_status_callbacks_arrive_signed_and_verify(channels: dict[str, Channel], channel_settings: Settings,
                                                         receiver: Receiver) -> None:
    silent, delivered, undelivered = (Message(key=key(), to=to, text="x")
                                      for to in ("+15005550006", number(), "+15005550005"))
    results = await channels["sms"].send_many([silent, delivered, undelivered])
    sids = [r.provider_message_id for r in results]
    assert all(sids)
    verifier = TwilioCallbacks(channel_settings.twilio_auth_token or "")
    posted = await receiver.wait_for("/v1/webhooks/twilio", 0)
    receipts = {}
    for _ in range(2):  # the two reporting messages; the silent one never reports
        await receiver.wait_for("/v1/webhooks/twilio", len(posted) + 2)
        for p in receiver.to("/v1/webhooks/twilio"):
            for r in verifier.parse_callback(p.url, p.headers, p.body, datetime.now(UTC)):
                receipts[r.provider_message_id] = r
    assert receipts[sids[1]].status is ReceiptStatus.DELIVERED
    assert receipts[sids[2]].status is ReceiptStatus.FAILED and receipts[sids[2]].error == "30003"
    assert receipts[sids[2]].event_id == f"{sids[2]}:undelivered"
    assert sids[0] not in receipts
