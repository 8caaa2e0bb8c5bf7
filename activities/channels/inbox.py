"""The in-app inbox as a `Channel`: a send writes the message to Postgres (store/channels/inbox.py), where the
contact's app lists it (`GET /v1/contacts/{id}/inbox`). Accepted is delivered. `to` is the contact id; `data` may
carry `display` (toast | popup | banner, seed 000's notification forms) and `expires_at`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channels.base import ErrorClass, Message, SendResult
from store.channels import inbox
from store.db import transaction


class InboxChannel:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], name: str = "inbox") -> None:
        self.sessions = sessions
        self.name = name

    async def send_many(self, messages: Sequence[Message]) -> list[SendResult]:
        results: dict[str, SendResult] = {}
        rows: list[inbox.NewMessage] = []
        for m in messages:
            if not m.to or not m.to.isdigit():
                results[m.key] = SendResult(m.key, False, error="no contact id", error_class=ErrorClass.UNREACHABLE)
                continue
            data = dict(m.data)
            display = str(data.pop("display", "banner"))
            expires = data.pop("expires_at", None)
            rows.append(inbox.NewMessage(int(m.to), m.key, m.subject, m.text, display, data,
                                         datetime.fromisoformat(expires) if isinstance(expires, str) else None))
        async with transaction(self.sessions) as s:
            ids = await inbox.write(s, rows)
        for row in rows:
            results[row.key] = SendResult(row.key, True, provider_message_id=f"inbox:{ids[(row.contact_id, row.key)]}")
        return [results[m.key] for m in messages]
