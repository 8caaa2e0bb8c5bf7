"""The simulators with the real API: the dev-inbox dashboard lists their inboxes beside the mail sink, the
runtime's channels reach them, and their callbacks verify at the API's webhook endpoint."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from api.runtime import Runtime
from channels.base import Message
from channels.simulators import Simulators
from tests.conftest import DashboardSignIn


async def test_the_dev_inbox_shows_what_each_simulator_received(runtime: Runtime, api_url: str, admin_key: str,
                                                                dashboard_sign_in: DashboardSignIn) -> None:
    assert set(runtime.channels) >= {"email", "sms", "push", "wechat", "webhook"}
    marker = uuid.uuid4().hex[:12]
    [sms] = await runtime.channels["sms"].send_many([Message(key=f"k-{marker}-1", to="+14155550123",
                                                             text=f"SMS {marker} <b>")])
    [push] = await runtime.channels["push"].send_many([Message(key=f"k-{marker}-2", to="device-" + marker,
                                                               subject=f"Push {marker}", text="body")])
    [wechat] = await runtime.channels["wechat"].send_many([Message(
        key=f"k-{marker}-3", to="o" + marker, data={"template_id": "T1", "fields": {"first": f"WeChat {marker}"}})])
    assert sms.accepted and push.accepted and wechat.accepted
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as browser:
        await dashboard_sign_in(browser, admin_key)
        page = await browser.get("/dashboards/inbox")
    assert page.status_code == 200
    for text in (f"SMS {marker} &lt;b&gt;", f"Push {marker}", f"first: WeChat {marker}", "Mail sink"):
        assert text in page.text
    assert sms.provider_message_id and sms.provider_message_id in page.text


async def test_simulator_callbacks_pass_the_apis_signature_checks(runtime: Runtime, api_url: str,
                                                                  simulators: Simulators) -> None:
    """The simulators' callbacks reach `POST /v1/webhooks/{provider}` and verify there (a refusal would count
    as a failed callback in the simulator's stats)."""
    sims = (simulators.twilio, simulators.fcm, simulators.wechat)
    failed_before = [s.stats["callbacks_failed"] for s in sims]
    posted_before = [s.stats["callbacks_posted"] for s in sims]
    marker = uuid.uuid4().hex[:12]
    results = [
        *await runtime.channels["sms"].send_many([Message(key=f"e2e-{marker}-1", to="+14155550124", text="x")]),
        *await runtime.channels["push"].send_many([Message(key=f"e2e-{marker}-2", to="device-" + marker, text="x")]),
        *await runtime.channels["wechat"].send_many([Message(key=f"e2e-{marker}-3", to="o" + marker,
                                                             data={"template_id": "T1"})]),
    ]
    assert all(r.accepted for r in results)
    deadline = asyncio.get_running_loop().time() + 15
    while any(s.stats["callbacks_posted"] + s.stats["callbacks_failed"] <= p + f
              for s, p, f in zip(sims, posted_before, failed_before, strict=True)):
        assert asyncio.get_running_loop().time() < deadline, [s.stats for s in sims]
        await asyncio.sleep(0.05)
    assert [s.stats["callbacks_failed"] for s in sims] == failed_before
