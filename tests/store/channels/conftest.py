"""Fixtures for delivery tests: contacts with addresses on every channel, and the delivery service over the real
channels (SMTP sink, Twilio/FCM/WeChat simulators, the in-app inbox) with a given policy."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.channels.delivery import DeliveryService
from activities.channels.inbox import InboxChannel
from api.runtime import Runtime
from domain.channels.policy import DEFAULT_WINDOWS, DeliveryPolicy
from store.channels import records
from store.db import transaction


@dataclass(frozen=True)
class Person:
    id: int
    email: str
    phone: str
    openid: str


async def make_person(sessions: async_sessionmaker[AsyncSession], *, openid_prefix: str = "ok-",
                      timezone: str | None = None) -> Person:
    tag = uuid.uuid4().hex[:10]
    digits = str(int(tag, 16))[-9:].rjust(9, "1")
    email, phone, openid = f"{tag}@example.com", f"+861{digits}1", f"{openid_prefix}{tag}"
    async with transaction(sessions) as s:
        contact_id = await s.scalar(text("""
            INSERT INTO contacts (user_id, email, phone, timezone, traits)
            VALUES (:u, :e, :p, :tz, jsonb_build_object('wechat_openid', CAST(:o AS text))) RETURNING id
        """), {"u": f"channels-{tag}", "e": email, "p": phone, "tz": timezone, "o": openid})
    return Person(int(contact_id), email, phone, openid)


CONTENT = {"wechat": {"subject": "Order shipped", "text": "Your parcel is on its way",
                      "data": {"template_id": "tpl-shipped"}},
           "sms": {"text": "Your parcel is on its way"},
           "email": {"subject": "Order shipped", "text": "Your parcel is on its way"},
           "inbox": {"subject": "Order shipped", "text": "Your parcel is on its way", "data": {"display": "toast"}}}


def step(person: Person, chain: list[str], *, key: str | None = None, topic: str | None = None,
         transactional: bool = False) -> records.Step:
    return records.Step(person.id, key or f"delivery:test:{uuid.uuid4().hex[:8]}:{person.id}", chain,
                        {c: CONTENT[c] for c in chain}, topic, transactional)


MakeService = Callable[..., DeliveryService]


@pytest.fixture(scope="session")
def make_service(runtime: Runtime, sessions: async_sessionmaker[AsyncSession], api_url: str) -> MakeService:
    """A delivery service over the real channels; `api_url` is there so simulator callbacks are received."""

    def build(**policy: object) -> DeliveryService:
        channels = dict(runtime.channels) | {"inbox": InboxChannel(sessions)}
        rules = DeliveryPolicy(**({"windows": dict(DEFAULT_WINDOWS)} | policy))  # type: ignore[arg-type]
        return DeliveryService(sessions, channels, rules, public_url=api_url)

    return build


async def attempts(sessions: async_sessionmaker[AsyncSession], person: Person, key: str) -> list[tuple[str, str]]:
    async with sessions() as s:
        return [(a.channel, a.status) for a in sorted(await records.attempts_of(s, person.id, key=key),
                                                     key=lambda a: a.attempt)]


async def settled(sessions: async_sessionmaker[AsyncSession], person: Person, key: str, number: int,
                  states: set[str], timeout: float = 10.0) -> str:
    """Wait for the provider's callback to move attempt `number` into one of `states`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = await attempts(sessions, person, key)
        if len(found) >= number and found[number - 1][1] in states:
            return found[number - 1][1]
        if loop.time() > deadline:
            raise AssertionError(f"attempt {number} of {key} stayed {found}")
        await asyncio.sleep(0.05)


WINDOW = DEFAULT_WINDOWS["wechat"]
PAST_WINDOW = WINDOW + timedelta(seconds=1)
