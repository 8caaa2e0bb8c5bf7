"""Where a contact is reached on each channel, from the contact row and its identities: email, phone (E.164),
WeChat openid (an identity, or the `wechat_openid` trait), FCM token (`push_token` trait), webhook URL
(`webhook_url` trait); the in-app inbox is the contact id itself. Also the contact's time zone."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True)
class Reach:
    contact_id: int
    timezone: str | None
    addresses: dict[str, str]  # channel → address


def address_hash(channel: str, address: str) -> str:
    """What suppressions key on: the address normalised (emails are case-insensitive), hashed."""
    normal = address.strip().lower() if channel == "email" else address.strip()
    return hashlib.sha256(f"{channel}:{normal}".encode()).hexdigest()


async def reach(session: AsyncSession, contact_ids: Sequence[int]) -> dict[int, Reach]:
    rows = await session.execute(text("""
        SELECT c.id, c.timezone, c.email, c.phone, c.traits->>'push_token' AS push, c.traits->>'webhook_url' AS hook,
               coalesce((SELECT i.value FROM identities i WHERE i.contact_id = c.id AND i.kind = 'wechat_openid'
                         ORDER BY i.created_at DESC LIMIT 1), c.traits->>'wechat_openid') AS openid
        FROM contacts c WHERE c.id = ANY(:ids)
    """), {"ids": list(contact_ids)})
    found = {}
    for r in rows:
        addresses = {"email": r.email, "sms": r.phone, "push": r.push, "webhook": r.hook, "wechat": r.openid,
                     "inbox": str(r.id), "bench": str(r.id)}  # `bench`: nudge bench campaign's recording channel
        found[r.id] = Reach(r.id, r.timezone, {k: v for k, v in addresses.items() if v})
    return found
