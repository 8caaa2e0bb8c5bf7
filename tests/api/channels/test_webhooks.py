"""`POST /v1/webhooks/{provider}` over real HTTP: forged, stale and replayed callbacks are refused with nothing
changed; a verified failure makes the step fall back. Tracking links: the open pixel, the click redirect (no open
redirect), and the RFC 8058 one-click unsubscribe from a real email's header."""

from __future__ import annotations

import re
import time
import uuid
from urllib.parse import urlencode

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channels.mailbox import read_mailbox
from channels.simulators import Simulators
from core.settings import Settings
from domain.channels.signatures import wechat_signature
from domain.channels.tokens import LinkToken, sign
from nudge.embedded import MailSink
from store.channels.webhooks import link_secret
from tests.store.channels.conftest import MakeService, attempts, make_person, step


async def counts(sessions: async_sessionmaker[AsyncSession]) -> tuple[int, int, int]:
    async with sessions() as s:
        row = (await s.execute(text("""SELECT (SELECT count(*) FROM webhook_receipts),
            (SELECT count(*) FROM delivery_attempts WHERE status = 'failed'),
            (SELECT count(*) FROM suppressions)"""))).one()
    return tuple(row)  # type: ignore[return-value]


def wechat_callback(simulators: Simulators, openid: str, msgid: str, status: str, *, timestamp: int | None = None,
                    token: str | None = None) -> tuple[str, bytes]:
    ts, nonce = str(timestamp or int(time.time())), uuid.uuid4().hex[:10]
    query = urlencode({"signature": wechat_signature(token or simulators.wechat.token, ts, nonce), "timestamp": ts,
                       "nonce": nonce, "openid": openid})
    return f"/v1/webhooks/wechat?{query}", simulators.wechat.event_xml(openid, int(msgid), status, int(ts))


async def test_forged_stale_and_replayed_callbacks_change_nothing(
        anon_api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], make_service: MakeService,
        simulators: Simulators) -> None:
    service = make_service()
    person = await make_person(sessions, openid_prefix="silent-")  # the simulator itself reports nothing
    s = step(person, ["wechat", "sms"])
    await service.send([s])
    async with sessions() as session:
        msgid = await session.scalar(text("SELECT provider_message_id FROM delivery_attempts WHERE key = :k"),
                                     {"k": s.key})
    before = await counts(sessions)

    url, body = wechat_callback(simulators, person.openid, msgid, "failed:user block", token="not-the-token")
    forged = await anon_api.post(url, content=body, headers={"Content-Type": "text/xml"})
    assert forged.status_code == 401 and forged.headers["content-type"] == "application/problem+json"
    url, body = wechat_callback(simulators, person.openid, msgid, "failed:user block",
                                timestamp=int(time.time()) - 3600)
    stale = await anon_api.post(url, content=body, headers={"Content-Type": "text/xml"})
    assert stale.status_code == 401, stale.text
    assert await counts(sessions) == before
    assert await attempts(sessions, person, s.key) == [("wechat", "sent")]

    url, body = wechat_callback(simulators, person.openid, msgid, "failed:user block")
    good = await anon_api.post(url, content=body, headers={"Content-Type": "text/xml"})
    assert good.status_code == 200 and good.text == "success"
    assert await attempts(sessions, person, s.key) == [("wechat", "failed")]
    after = await counts(sessions)

    replay = await anon_api.post(url, content=body, headers={"Content-Type": "text/xml"})
    assert replay.status_code == 409, replay.text
    assert await counts(sessions) == after

    await service.sweep(only=[s])
    assert len([m for m in simulators.twilio.inbox.read() if m.get("to") == person.phone]) == 1


async def test_an_unknown_provider_is_404(anon_api: httpx.AsyncClient) -> None:
    response = await anon_api.post("/v1/webhooks/carrierpigeon", content=b"{}")
    assert response.status_code == 404


async def test_open_pixel_and_click_redirect_are_tracked_and_refuse_forgeries(
        anon_api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], make_service: MakeService) -> None:
    service = make_service()
    person = await make_person(sessions)
    s = step(person, ["email"])
    await service.send([s])
    async with sessions() as session:
        secret = await link_secret(session)
    opened = sign(secret, LinkToken("o", person.id, key=s.key, channel="email"))
    pixel = await anon_api.get(f"/v1/t/o/{opened}")
    assert pixel.status_code == 200 and pixel.headers["content-type"] == "image/gif"
    assert await attempts(sessions, person, s.key) == [("email", "opened")]

    target = "https://shop.example.com/sale?utm=nudge"
    click = sign(secret, LinkToken("c", person.id, key=s.key, channel="email", url=target))
    redirect = await anon_api.get(f"/v1/t/c/{click}", follow_redirects=False)
    assert redirect.status_code == 302 and redirect.headers["location"] == target
    assert await attempts(sessions, person, s.key) == [("email", "clicked")]

    forged = sign(b"someone-else", LinkToken("c", person.id, key=s.key, url="https://evil.example/"))
    refused = await anon_api.get(f"/v1/t/c/{forged}", follow_redirects=False)
    assert refused.status_code == 400 and "location" not in refused.headers


async def test_one_click_unsubscribe_from_a_real_email_stops_the_next_one(
        anon_api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], make_service: MakeService,
        mail_sink: MailSink, settings: Settings) -> None:
    service = make_service()
    person = await make_person(sessions)
    first = step(person, ["email"], topic="newsletter")
    await service.send([first])
    (mail,) = [m for m in read_mailbox(mail_sink.directory) if m["To"] == person.email]
    link = mail["List-Unsubscribe"].strip().strip("<>")
    path = httpx.URL(link).path
    page = await anon_api.get(path)
    assert page.status_code == 200 and "Unsubscribe" in page.text and "newsletter" in page.text
    one_click = await anon_api.post(path, content=b"List-Unsubscribe=One-Click",
                                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert one_click.status_code == 200
    second = step(person, ["email"], topic="newsletter")
    await service.send([second])
    assert await attempts(sessions, person, second.key) == [("email", "suppressed")]
    assert (await anon_api.get(path[:-3] + "AAA")).status_code == 404


async def test_an_html_email_tracks_its_opens_and_clicks_end_to_end(
        anon_api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], make_service: MakeService,
        mail_sink: MailSink) -> None:
    service = make_service()
    person = await make_person(sessions)
    s = step(person, ["email"])
    s.content["email"] = {"subject": "Sale", "text": "Sale on", "html": '<p><a href="https://shop.example/">Shop'
                                                                          "</a></p>"}
    await service.send([s])
    (mail,) = [m for m in read_mailbox(mail_sink.directory) if m["To"] == person.email]
    html = mail.get_body(("html",)).get_content()
    pixel = re.search(r'<img src="[^"]*(/v1/t/o/[^"]+)"', html)
    click = re.search(r'href="[^"]*(/v1/t/c/[^"]+)"', html)
    assert pixel and click
    await anon_api.get(pixel[1])
    assert await attempts(sessions, person, s.key) == [("email", "opened")]
    redirect = await anon_api.get(click[1], follow_redirects=False)
    assert redirect.status_code == 302 and redirect.headers["location"] == "https://shop.example/"
    assert await attempts(sessions, person, s.key) == [("email", "clicked")]


async def test_garbage_callbacks_are_refused_not_errors(anon_api: httpx.AsyncClient) -> None:
    bodies = [b"", b"\xff\xfe\x00garbage", b"{not json", b"<xml><a>1</a></xml>", b"Body=x&MessageSid=SM1"]
    for provider in ("twilio", "fcm", "wechat"):
        for body in bodies:
            for headers in ({}, {"X-Twilio-Signature": "abc", "Content-Type": "application/x-www-form-urlencoded"},
                            {"Content-Type": "application/json", "Nudge-Signature": "t=1,v1=00"}):
                response = await anon_api.post(f"/v1/webhooks/{provider}?signature=x&timestamp=1&nonce=2",
                                                content=body, headers=headers)
                assert response.status_code in (400, 401, 413, 422), (provider, body, headers, response.text)


async def test_wechat_server_url_check_echoes_only_a_signed_request(anon_api: httpx.AsyncClient,
                                                                   simulators: Simulators) -> None:
    ts, nonce = str(int(time.time())), uuid.uuid4().hex[:10]
    signed = {"signature": wechat_signature(simulators.wechat.token, ts, nonce), "timestamp": ts, "nonce": nonce,
              "echostr": "4719207093"}
    ok = await anon_api.get(f"/v1/webhooks/wechat?{urlencode(signed)}")
    assert ok.status_code == 200 and ok.text == "4719207093" and ok.headers["content-type"].startswith("text/plain")
    forged = await anon_api.get(f"/v1/webhooks/wechat?{urlencode(signed | {'signature': 'f' * 40})}")
    assert forged.status_code == 401 and "4719207093" not in forged.text
    stale_ts = str(int(time.time()) - 3600)
    stale = {"signature": wechat_signature(simulators.wechat.token, stale_ts, nonce), "timestamp": stale_ts,
             "nonce": nonce, "echostr": "4719207093"}
    assert (await anon_api.get(f"/v1/webhooks/wechat?{urlencode(stale)}")).status_code == 401


async def test_a_receipt_that_beats_its_send_record_is_applied_when_the_send_is_recorded(
        anon_api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], make_service: MakeService,
        simulators: Simulators) -> None:
    service = make_service()
    person = await make_person(sessions, openid_prefix="silent-")  # only our callback reports on this message
    s = step(person, ["wechat", "sms"])
    msgid = str(simulators.wechat._next_msgid + 1)  # the id the simulator will give the next template message
    url, body = wechat_callback(simulators, person.openid, msgid, "failed:user block")
    early = await anon_api.post(url, content=body, headers={"Content-Type": "text/xml"})
    assert early.status_code == 200 and early.text == "success"
    await service.send([s])  # records WeChat's msgid, finds the parked failure, falls back
    assert (await attempts(sessions, person, s.key))[0] == ("wechat", "failed")
    await service.sweep(only=[s])
    assert len([m for m in simulators.twilio.inbox.read() if m.get("to") == person.phone]) == 1
    async with sessions() as session:
        assert await session.scalar(text("SELECT count(*) FROM early_receipts WHERE provider_message_id = :m"),
                                    {"m": msgid}) == 0
