"""Email over SMTP (aiosmtplib), several connections at once, Message-ID from the delivery key."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from email.header import Header
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formatdate
from urllib.parse import parse_qs, unquote, urlparse

import aiosmtplib

from channels.base import ErrorClass, Message, SendResult
from domain.campaigns import message_id


class SmtpUrl:
    """`smtp://user:pass@host:port?tls=starttls|implicit|none&verify=1|0&ca=/path/bundle.pem` (smtps:// means
    implicit TLS; `verify=0` skips certificate checks, for a relay with a self-signed certificate only)."""

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("smtp", "smtps"):
            raise ValueError(f"SMTP_URL must start with smtp:// or smtps://, got {url!r}")
        query = parse_qs(parsed.query)
        tls = query.get("tls", ["implicit" if parsed.scheme == "smtps" else "none"])[0]
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or (465 if tls == "implicit" else 25)
        self.username = unquote(parsed.username) if parsed.username else None
        self.password = unquote(parsed.password) if parsed.password else None
        self.use_tls = tls == "implicit"
        self.start_tls = tls == "starttls"
        self.validate_certs = query.get("verify", ["1"])[0].lower() not in ("0", "false", "no")
        self.cert_bundle = query.get("ca", [None])[0]


def _header(value: str) -> str | Header:
    return value if value.isascii() else Header(value, "utf-8")


OnResult = Callable[[SendResult], Awaitable[None]]


class EmailChannel:
    name = "email"

    def __init__(self, smtp_url: str, sender: str, *, concurrency: int = 8, timeout: float = 30) -> None:
        self.server = SmtpUrl(smtp_url)
        self.sender = sender
        self.concurrency = concurrency
        self.timeout = timeout
        self.domain = sender.rsplit("@", 1)[-1].strip(">") or "localhost"

    def build(self, message: Message) -> MIMEBase:
        """The MIME message. Built with the compat32 classes: the modern EmailMessage API re-parses every
        header it sets and costs several times more per message than the send itself."""
        mail: MIMEBase
        if message.html:
            mail = MIMEMultipart("alternative")
            mail.attach(MIMEText(message.text, "plain", "utf-8"))
            mail.attach(MIMEText(message.html, "html", "utf-8"))
        else:
            mail = MIMEText(message.text, "plain", "utf-8")
        mail["From"] = self.sender
        mail["To"] = message.to or ""
        mail["Subject"] = _header(message.subject)
        mail["Date"] = formatdate(localtime=False)
        mail["Message-ID"] = message_id(message.key, self.domain)
        for name, value in message.headers.items():
            mail[name] = _header(value)
        unsubscribe = message.data.get("unsubscribe_url") if message.data else None
        if unsubscribe and "List-Unsubscribe" not in message.headers:
            mailto = message.data.get("unsubscribe_mailto")
            mail["List-Unsubscribe"] = f"<{unsubscribe}>, <{mailto}>" if mailto else f"<{unsubscribe}>"
            # RFC 8058 one-click: the mailbox provider POSTs "List-Unsubscribe=One-Click" to the URL.
            mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        return mail

    def _client(self) -> aiosmtplib.SMTP:
        return aiosmtplib.SMTP(
            hostname=self.server.host, port=self.server.port, username=self.server.username,
            password=self.server.password, use_tls=self.server.use_tls, start_tls=self.server.start_tls,
            validate_certs=self.server.validate_certs, cert_bundle=self.server.cert_bundle, timeout=self.timeout,
        )

    async def send_many(self, messages: Sequence[Message], on_result: OnResult | None = None) -> list[SendResult]:
        """Send over up to `concurrency` connections; `on_result` runs right after each message."""
        queue: asyncio.Queue[Message] = asyncio.Queue()
        for m in messages:
            queue.put_nowait(m)
        results: list[SendResult] = []

        async def lane() -> None:
            client: aiosmtplib.SMTP | None = None
            try:
                while not queue.empty():
                    message = queue.get_nowait()
                    if client is None or not client.is_connected:
                        client = self._client()
                        try:
                            await client.connect()
                        except (aiosmtplib.SMTPException, OSError) as exc:
                            # The server is unreachable: the activity retries the whole batch later.
                            raise ConnectionError("cannot reach SMTP server "
                                                  f"{self.server.host}:{self.server.port}: {exc}") from exc
                    result = await self._send_one(client, message)
                    results.append(result)
                    if on_result is not None:
                        await on_result(result)
            finally:
                if client is not None and client.is_connected:
                    try:
                        await client.quit()
                    except aiosmtplib.SMTPException:
                        client.close()

        lanes = min(self.concurrency, max(1, len(messages)))
        await asyncio.gather(*(lane() for _ in range(lanes)))
        return results

    async def _send_one(self, client: aiosmtplib.SMTP, message: Message) -> SendResult:
        if not message.to:
            return SendResult(message.key, False, error="contact has no email address",
                              error_class=ErrorClass.UNREACHABLE)
        mail = self.build(message)
        try:
            await client.send_message(mail)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            return SendResult(message.key, False, error=str(exc), error_class=ErrorClass.NON_RETRYABLE)
        except aiosmtplib.SMTPResponseException as exc:
            klass = ErrorClass.RETRYABLE if 400 <= exc.code < 500 else ErrorClass.NON_RETRYABLE
            if klass is ErrorClass.RETRYABLE:
                raise
            return SendResult(message.key, False, error=f"{exc.code} {exc.message}", error_class=klass)
        return SendResult(message.key, True, provider_message_id=str(mail["Message-ID"]))
