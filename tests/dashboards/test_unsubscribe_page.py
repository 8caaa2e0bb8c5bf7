"""The unsubscribe link of a real email, end to end in headless Chromium: the hosted page opens from the link in the
`List-Unsubscribe` header, its button unsubscribes, and the next message on that topic is not sent."""

from __future__ import annotations

from playwright.async_api import Browser
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.channels.delivery import service_for
from api.runtime import Runtime
from channels.mailbox import read_mailbox
from nudge.embedded import MailSink
from store.channels import preferences
from tests.store.channels.conftest import attempts, make_person, step


async def test_the_unsubscribe_link_works_in_a_browser(browser: Browser, api_url: str, runtime: Runtime,
                                                       sessions: async_sessionmaker[AsyncSession],
                                                       mail_sink: MailSink) -> None:
    service = service_for(sessions, runtime.channels, runtime.settings.model_copy(update={"public_url": api_url}))
    person = await make_person(sessions)
    await service.send([step(person, ["email"], topic="newsletter")])
    (mail,) = [m for m in read_mailbox(mail_sink.directory) if m["To"] == person.email]
    link = mail["List-Unsubscribe"].strip().strip("<>")

    page = await browser.new_page()
    await page.goto(link)
    assert "newsletter" in (await page.text_content("body") or "")
    await page.click("button[value=topic]")
    await page.wait_for_selector("text=You will no longer receive")
    await page.close()

    async with sessions() as s:
        assert (await preferences.rules(s, [person.id]))[person.id] == {("newsletter", "email"): False}
    again = step(person, ["email"], topic="newsletter")
    await service.send([again])
    assert await attempts(sessions, person, again.key) == [("email", "suppressed")]
