"""The provider simulators as servers: control endpoint rules, inbox files, callbacks after the configured delay
(signed, to Nudge's webhook URLs), and the fail / time-out / never-report behaviours."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from channels.base import ErrorClass, Message, ReceiptStatus
from channels.push import PushCallbacks
from channels.registry import build_channels, build_verifiers, close_channels
from channels.simulators import Simulators, read_inbox
from core.settings import Settings
from tests.channels.conftest import Receiver, start_receiver


@pytest.fixture(scope="module")
def nudge() -> Iterator[Receiver]:
    """Stands in for Nudge's API: records the callbacks posted to it."""
    receiver = start_receiver()
    yield receiver
    assert receiver.server is not None
    receiver.server.stop()


@pytest.fixture(scope="module")
def sims(tmp_path_factory: pytest.TempPathFactory, nudge: Receiver) -> Iterator[Simulators]:
    with Simulators(tmp_path_factory.mktemp("sims"), nudge_url=nudge.url, callback_delay=0.3) as sims:
        yield sims


@pytest.fixture(scope="module")
def settings(sims: Simulators, nudge: Receiver) -> Settings:
    return Settings(**sims.settings(), public_url=nudge.url, channel_timeout_seconds=0.5)


def openid() -> str:
    return "o" + uuid.uuid4().hex


async def test_control_endpoint_rules_make_any_address_fail_as_told(sims: Simulators, settings: Settings) -> None:
    to = f"+4930{uuid.uuid4().int % 10**8:08d}"
    async with httpx.AsyncClient(base_url=sims.base_url("twilio")) as control:
        answer = await control.post("/_sim/behaviour", json={"address": to, "action": "busy"})
        assert answer.status_code == 200 and answer.json()["rules"][0] == {"action": "busy", "address": to,
                                                                           "prefix": None}
        assert (await control.post("/_sim/behaviour", json={"action": "explode"})).status_code == 400
    channels = build_channels(settings)
    try:
        [busy] = await channels["sms"].send_many([Message(key="k1", to=to, text="x")])
        async with httpx.AsyncClient(base_url=sims.base_url("twilio")) as control:
            await control.post("/_sim/behaviour", json={"prefix": to[:6], "action": "unreachable"})
            [unreachable] = await channels["sms"].send_many([Message(key="k2", to=to[:6] + "1234567", text="x")])
            await control.delete("/_sim/behaviour")
        [fine] = await channels["sms"].send_many([Message(key="k3", to=to, text="x")])
    finally:
        await close_channels(channels)
    assert busy.error_class is ErrorClass.RETRYABLE
    assert unreachable.error_class is ErrorClass.UNREACHABLE
    assert fine.accepted


async def test_inboxes_are_json_lines_files_readable_over_http_too(sims: Simulators, settings: Settings) -> None:
    channels = build_channels(settings)
    to = openid()
    try:
        [result] = await channels["wechat"].send_many([Message(key="inbox-1", to=to, data={"template_id": "T1"})])
    finally:
        await close_channels(channels)
    from_file = [m for m in read_inbox(sims.directory, "wechat") if m["to"] == to]
    async with httpx.AsyncClient() as client:
        over_http = [m for m in (await client.get(f"{sims.base_url('wechat')}/_sim/inbox")).json() if m["to"] == to]
    assert from_file == over_http and [m["id"] for m in from_file] == [result.provider_message_id]
    assert (Path(sims.directory) / "wechat.jsonl").exists()


async def test_callbacks_come_after_the_delay_signed_to_nudges_webhook_urls(sims: Simulators, settings: Settings,
                                                                            nudge: Receiver) -> None:
    channels = build_channels(settings)
    verifiers = build_verifiers(settings)
    try:
        [push] = await channels["push"].send_many([Message(key="cb-1", to="device-" + uuid.uuid4().hex, text="x")])
        [wechat] = await channels["wechat"].send_many([Message(key="cb-2", to=openid(), data={"template_id": "T1"})])
        [sms] = await channels["sms"].send_many([Message(key="cb-3", to="+14155550100", text="x")])
    finally:
        await close_channels(channels)
    receipts = {}

    def arrived() -> bool:
        for provider in ("fcm", "wechat", "twilio"):
            for p in nudge.to(f"/v1/webhooks/{provider}"):
                for r in verifiers[provider].parse_callback(p.url, p.headers, p.body, datetime.now(UTC)):
                    receipts[r.provider_message_id] = r
        return all(m.provider_message_id in receipts for m in (push, wechat, sms))

    await nudge.until(arrived)
    assert {receipts[m.provider_message_id].channel: receipts[m.provider_message_id].status
            for m in (push, wechat, sms)} == {"push": ReceiptStatus.DELIVERED, "wechat": ReceiptStatus.DELIVERED,
                                              "sms": ReceiptStatus.DELIVERED}
    [accepted] = [m for m in read_inbox(sims.directory, "fcm") if m["key"] == "cb-1"]
    reported = receipts[push.provider_message_id].at
    assert reported - datetime.fromisoformat(accepted["at"]) >= timedelta(seconds=0.3)  # the configured delay


async def test_accept_then_fail_never_report_and_timeout(sims: Simulators, settings: Settings,
                                                         nudge: Receiver) -> None:
    async with httpx.AsyncClient(base_url=sims.base_url("fcm")) as control:
        await control.post("/_sim/behaviour", json={"hang_seconds": 2})
    channels = build_channels(settings)
    try:
        failing, silent, hanging, marker = await channels["push"].send_many([
            Message(key="f-1", to="undelivered-" + uuid.uuid4().hex, text="x"),
            Message(key="f-2", to="silent-" + uuid.uuid4().hex, text="x"),
            Message(key="f-3", to="timeout-" + uuid.uuid4().hex, text="x"),
            Message(key="f-4", to="device-" + uuid.uuid4().hex, text="x"),
        ])
    finally:
        await close_channels(channels)
    assert failing.accepted and silent.accepted and marker.accepted
    assert hanging.error_class is ErrorClass.RETRYABLE and "timed out" in (hanging.error or "")
    verifier = PushCallbacks(sims.fcm.callback_secret)

    def statuses() -> dict[str | None, ReceiptStatus]:
        return {r.provider_message_id: r.status for p in nudge.to("/v1/webhooks/fcm")
                for r in verifier.parse_callback(p.url, p.headers, p.body, datetime.now(UTC))}

    await nudge.until(lambda: {failing.provider_message_id, marker.provider_message_id} <= statuses().keys())
    assert statuses()[failing.provider_message_id] is ReceiptStatus.FAILED
    assert silent.provider_message_id not in statuses()


def test_they_start_and_stop_cleanly_on_a_free_port(tmp_path: Path) -> None:
    sims = Simulators(tmp_path).start()
    port = sims.server.port
    assert httpx.get(f"{sims.base_url('fcm')}/_sim/stats").json()["sends"] == 0
    sims.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/fcm/_sim/stats")


def test_the_dev_stack_simulates_only_the_providers_left_unconfigured(tmp_path: Path) -> None:
    from rich.console import Console

    from nudge.stack import Stack

    configured = Settings(home=tmp_path, database_url="postgresql://configured/db", temporal_address="t:7233",
                          smtp_url="smtp://configured:25", simulator_port=0, twilio_account_sid="ACreal",
                          twilio_auth_token="real", twilio_from="+14155550000")
    console = Console(record=True, width=200)
    stack = Stack(configured, console=console)
    try:
        s = stack.up(migrate=False)
        assert stack.simulators is not None
        assert (s.twilio_account_sid, s.twilio_base_url) == ("ACreal", "https://api.twilio.com")
        assert s.fcm_base_url == stack.simulators.base_url("fcm") and s.fcm_service_account_file is not None
        assert s.wechat_app_id == stack.simulators.wechat.app_id
        assert set(build_channels(s)) == {"email", "sms", "push", "wechat"}
        assert stack.simulators.base_url("wechat") in console.export_text()
        assert httpx.get(f"{stack.simulators.base_url('wechat')}/_sim/stats").status_code == 200
    finally:
        stack.down()


async def test_they_validate_requests_as_the_providers_do(sims: Simulators) -> None:
    twilio = f"{sims.base_url('twilio')}/2010-04-01/Accounts/{sims.twilio.account_sid}/Messages.json"
    auth = (sims.twilio.account_sid, sims.twilio.auth_token)
    wechat = sims.base_url("wechat")
    async with httpx.AsyncClient() as client:
        codes = [
            (await client.post(twilio, data={"To": "+14155550100", "Body": "x", "From": "+1"}, auth=("AC0", "x"))),
            (await client.post(twilio, data={"Body": "x", "From": "+1"}, auth=auth)),
            (await client.post(twilio, data={"To": "+14155550100", "From": "+1"}, auth=auth)),
            (await client.post(twilio, data={"To": "+14155550100", "Body": "x"}, auth=auth)),
        ]
        by_service = await client.post(twilio, data={"To": "+14155550100", "Body": "x",
                                                     "MessagingServiceSid": "MG1"}, auth=auth)
        no_token = (await client.post(f"{wechat}/cgi-bin/message/template/send", json={})).json()
        bad_token = (await client.post(f"{wechat}/cgi-bin/message/template/send?access_token=nope",
                                       json={})).json()
        bad_grant = (await client.get(f"{wechat}/cgi-bin/token", params={"grant_type": "password"})).json()
        bad_app = (await client.get(f"{wechat}/cgi-bin/token", params={
            "grant_type": "client_credential", "appid": "wx0", "secret": "x"})).json()
    assert [(r.status_code, r.json()["code"]) for r in codes] == [(401, 20003), (400, 21604), (400, 21602),
                                                                   (400, 21603)]
    assert by_service.status_code == 201 and by_service.json()["status"] == "queued"
    assert [no_token["errcode"], bad_token["errcode"], bad_grant["errcode"], bad_app["errcode"]] == [
        41001, 40001, 40002, 40013]
