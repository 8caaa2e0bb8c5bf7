"""The callback verifiers: good callbacks become receipts; forged, stale and malformed ones are refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest

from channels.base import ReceiptStatus, WebhookRefused
from channels.push import PushCallbacks
from channels.sms import TwilioCallbacks
from channels.wechat import WechatCallbacks
from domain.channels.signatures import nudge_signature, twilio_signature, wechat_signature

NOW = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
T = int(NOW.timestamp())
URL = "https://nudge.example/v1/webhooks/twilio"


def twilio_post(params: dict[str, str], token: str = "auth-token", url: str = URL) -> tuple[dict[str, str], bytes]:
    return {"X-Twilio-Signature": twilio_signature(token, url, params)}, urlencode(params).encode()


class TestTwilio:
    verifier = TwilioCallbacks("auth-token")
    params = {"MessageSid": "SM1", "MessageStatus": "undelivered", "ErrorCode": "30003", "AccountSid": "AC1"}

    def test_a_signed_status_callback_is_a_receipt(self) -> None:
        headers, body = twilio_post(self.params)
        [receipt] = self.verifier.parse_callback(URL, headers, body, NOW)
        assert (receipt.channel, receipt.status, receipt.provider_message_id, receipt.error, receipt.event_id) == (
            "sms", ReceiptStatus.FAILED, "SM1", "30003", "SM1:undelivered")

    def test_interim_statuses_carry_no_receipt(self) -> None:
        headers, body = twilio_post({**self.params, "MessageStatus": "sending"})
        assert self.verifier.parse_callback(URL, headers, body, NOW) == []

    @pytest.mark.parametrize("forgery", ["token", "url", "param", "missing"])
    def test_forged_callbacks_are_refused(self, forgery: str) -> None:
        headers, body = twilio_post(self.params, token="other" if forgery == "token" else "auth-token")
        url = URL + "?x=1" if forgery == "url" else URL
        if forgery == "param":
            body = body.replace(b"undelivered", b"delivered")
        if forgery == "missing":
            headers = {}
        with pytest.raises(WebhookRefused):
            self.verifier.parse_callback(url, headers, body, NOW)

    def test_malformed_callbacks_are_refused(self) -> None:
        headers, body = twilio_post({"AccountSid": "AC1"})
        with pytest.raises(WebhookRefused, match="MessageSid"):
            self.verifier.parse_callback(URL, headers, body, NOW)
        with pytest.raises(WebhookRefused):
            self.verifier.parse_callback(URL, headers, b"\xff\xfe", NOW)


class TestPush:
    verifier = PushCallbacks("push-secret", tolerance=300)

    def post(self, payload: object, t: int = T, secret: str = "push-secret") -> tuple[dict[str, str], bytes]:
        body = json.dumps(payload).encode()
        return {"Nudge-Signature": nudge_signature(secret, body, t)}, body

    def test_signed_receipts_are_parsed(self) -> None:
        headers, body = self.post([{"message_id": "projects/p/messages/1", "status": "delivered",
                                    "at": "2026-12-03T07:59:00+00:00", "key": "delivery:1"},
                                   {"message_id": "projects/p/messages/2", "status": "failed"}])
        first, second = self.verifier.parse_callback("https://n/v1/webhooks/fcm", headers, body, NOW)
        assert (first.status, first.key, first.at) == (ReceiptStatus.DELIVERED, "delivery:1",
                                                       NOW - timedelta(minutes=1))
        assert (second.status, second.at, second.channel) == (ReceiptStatus.FAILED, NOW, "push")

    def test_forged_stale_and_malformed_receipts_are_refused(self) -> None:
        good = {"message_id": "projects/p/messages/1", "status": "delivered"}
        for headers, body in [self.post(good, secret="other"), self.post(good, t=T - 301), self.post(good, t=T + 301),
                              ({}, json.dumps(good).encode()), self.post({"status": "delivered"}),
                              self.post({**good, "status": "teleported"}), self.post({**good, "at": "yesterday"}),
                              self.post(["not an object"])]:
            with pytest.raises(WebhookRefused):
                self.verifier.parse_callback("https://n/v1/webhooks/fcm", headers, body, NOW)
        headers, body = self.post(good)
        with pytest.raises(WebhookRefused):
            self.verifier.parse_callback("https://n/v1/webhooks/fcm", headers, body + b" ", NOW)


class TestWechat:
    verifier = WechatCallbacks("wechat-token", tolerance=300)
    event = (b"<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[oUser1]]></FromUserName>"
             b"<CreateTime>%d</CreateTime><MsgType><![CDATA[event]]></MsgType>"
             b"<Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event><MsgID>200163836</MsgID>"
             b"<Status><![CDATA[%s]]></Status></xml>")

    def url(self, t: int = T, token: str = "wechat-token", nonce: str = "1234") -> str:
        return "https://n/v1/webhooks/wechat?" + urlencode(
            {"signature": wechat_signature(token, str(t), nonce), "timestamp": t, "nonce": nonce, "openid": "oUser1"})

    def test_template_send_job_finish_is_a_receipt(self) -> None:
        [ok] = self.verifier.parse_callback(self.url(), {}, self.event % (T, b"success"), NOW)
        assert (ok.status, ok.provider_message_id, ok.at, ok.event_id) == (
            ReceiptStatus.DELIVERED, "200163836", NOW, "200163836:success")
        [blocked] = self.verifier.parse_callback(self.url(), {}, self.event % (T, b"failed:user block"), NOW)
        assert (blocked.status, blocked.error) == (ReceiptStatus.FAILED, "user block")
        [system] = self.verifier.parse_callback(self.url(), {}, self.event % (T, b"failed: system failed"), NOW)
        assert (system.status, system.error) == (ReceiptStatus.FAILED, "system failed")

    def test_the_server_url_check_echoes_only_when_signed(self) -> None:
        assert self.verifier.echo(self.url() + "&echostr=4830129", NOW) == "4830129"
        with pytest.raises(WebhookRefused):
            self.verifier.echo(self.url(token="other") + "&echostr=4830129", NOW)
        with pytest.raises(WebhookRefused):
            self.verifier.echo(self.url(), NOW)

    def test_other_events_carry_no_receipt(self) -> None:
        body = b"<xml><MsgType>event</MsgType><Event>subscribe</Event></xml>"
        assert self.verifier.parse_callback(self.url(), {}, body, NOW) == []

    def test_forged_and_stale_events_are_refused(self) -> None:
        body = self.event % (T, b"success")
        for url in [self.url(token="other"), self.url(t=T - 301), self.url(t=T + 301),
                    self.url().replace("nonce=1234", "nonce=1235"), "https://n/v1/webhooks/wechat"]:
            with pytest.raises(WebhookRefused):
                self.verifier.parse_callback(url, {}, body, NOW)

    @pytest.mark.parametrize("body", [
        b"not xml",
        b"<root><MsgType>event</MsgType></root>",
        b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
        b"<xml><Status>&b;</Status></xml>",
        b'<!DOCTYPE xml SYSTEM "file:///etc/passwd"><xml/>',
        b"<xml><MsgType>event</MsgType><Event>TEMPLATESENDJOBFINISH</Event></xml>",
    ])
    def test_malformed_bodies_and_entity_declarations_are_refused(self, body: bytes) -> None:
        with pytest.raises(WebhookRefused):
            self.verifier.parse_callback(self.url(), {}, body, NOW)
