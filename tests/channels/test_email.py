"""The email adapter against a real SMTP server (the aiosmtpd sink)."""

from __future__ import annotations

from pathlib import Path

from channels.base import ErrorClass, Message
from channels.email import EmailChannel, SmtpUrl
from nudge.embedded import MailSink, free_port


async def test_multipart_unicode_message_arrives_intact_with_its_delivery_message_id(tmp_path: Path) -> None:
    sink = MailSink(tmp_path / "mail", free_port())
    sink.start()
    try:
        channel = EmailChannel(sink.url, "Nudge <hello@nudge.example>", concurrency=2)
        results = await channel.send_many([
            Message(key="delivery:7:s1:42", to="zoë@example.com", subject="Grüße, Zoë — 春节快乐",
                    text="Hallo Zoë,\nbis bald.", html="<p>Hallo <b>Zoë</b></p>",
                    headers={"List-Unsubscribe": "<https://nudge.example/u/42>"}),
            Message(key="delivery:7:s1:43", to=None, subject="s", text="t"),
        ])
    finally:
        sink.stop()
    assert [r.accepted for r in results if r.key.endswith("42")] == [True]
    unreachable = next(r for r in results if r.key.endswith("43"))
    assert not unreachable.accepted and unreachable.error_class is ErrorClass.UNREACHABLE
    [mail] = sink.messages()
    assert mail["Subject"] == "Grüße, Zoë — 春节快乐"
    assert mail["Message-ID"] == "<delivery.7.s1.42@nudge.example>"
    assert mail["List-Unsubscribe"] == "<https://nudge.example/u/42>"
    assert mail.get_body(("plain",)).get_content() == "Hallo Zoë,\nbis bald."
    assert "<b>Zoë</b>" in mail.get_body(("html",)).get_content()


def test_smtp_url_forms() -> None:
    plain = SmtpUrl("smtp://127.0.0.1:1025")
    assert (plain.host, plain.port, plain.use_tls, plain.start_tls, plain.username) == (
        "127.0.0.1", 1025, False, False, None)
    tls = SmtpUrl("smtps://user%40x:p%2Fw@mail.example")
    assert (tls.port, tls.use_tls, tls.username, tls.password) == (465, True, "user@x", "p/w")
    starttls = SmtpUrl("smtp://mail.example:587?tls=starttls")
    assert (starttls.port, starttls.start_tls) == (587, True)


async def test_one_click_unsubscribe_headers_when_the_message_carries_an_unsubscribe_url(tmp_path: Path) -> None:
    sink = MailSink(tmp_path / "mail", free_port())
    sink.start()
    try:
        channel = EmailChannel(sink.url, "Nudge <hello@nudge.example>")
        await channel.send_many([
            Message(key="delivery:8:s1:1", to="a@example.com", subject="s", text="t",
                    data={"unsubscribe_url": "https://nudge.example/u/tok1",
                          "unsubscribe_mailto": "mailto:unsubscribe@nudge.example?subject=tok1"}),
            Message(key="delivery:8:s1:2", to="b@example.com", subject="s", text="t"),
        ])
    finally:
        sink.stop()
    mails = {m["To"]: m for m in sink.messages()}
    with_link = mails["a@example.com"]
    assert with_link["List-Unsubscribe"] == ("<https://nudge.example/u/tok1>, "
                                             "<mailto:unsubscribe@nudge.example?subject=tok1>")
    assert with_link["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "List-Unsubscribe" not in mails["b@example.com"]


def test_smtp_url_tls_options() -> None:
    url = SmtpUrl("smtp://relay.example:587?tls=starttls&verify=0&ca=/etc/ssl/relay.pem")
    assert (url.start_tls, url.validate_certs, url.cert_bundle) == (True, False, "/etc/ssl/relay.pem")
    assert SmtpUrl("smtps://relay.example").validate_certs is True
