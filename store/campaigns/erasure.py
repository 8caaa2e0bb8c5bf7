"""The campaigns' step of a right-to-erasure (`store.erasure`): deliveries keep their counts and lose what could
identify the person at the provider."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# What erasure does to each campaigns table holding a contact id (tests/store/test_cascades.py reads this).
TABLES = {
    "deliveries": "rows stay (a completed campaign's counts are counted from them) without the provider's message "
                  "id, error text and the recipient's zone; a delivery still queued becomes `failed` ('contact "
                  "erased')",
}


async def erase(session: AsyncSession, contact_ids: Sequence[int]) -> dict[str, int]:
    """Scrub the deliveries of the erased contact and of the contacts merged into it; rows scrubbed."""
    result = await session.execute(text("""
        UPDATE deliveries SET provider_message_id = NULL, zone = NULL,
            error = CASE status WHEN 'queued' THEN 'contact erased' END,
            status = CASE status WHEN 'queued' THEN 'failed' ELSE status END
        WHERE contact_id = ANY(:ids)
    """), {"ids": list(contact_ids)})
    return {"deliveries": int(result.rowcount or 0)}  # type: ignore[attr-defined]
