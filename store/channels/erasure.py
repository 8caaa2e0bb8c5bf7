"""The channels' step of a right-to-erasure (`store.erasure`): what a person received, where and what they chose go;
delivery counts stay for the dashboards, and a hashed address on the suppression list stays suppressed."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# What erasure does to each channels table holding a contact id (tests/store/test_cascades.py reads this).
TABLES = {
    "delivery_plans": "rows stay for the counts without their rendered content; an unfinished one ends ('erased')",
    "delivery_attempts": "rows stay for the counts without the provider's message id, error text and address hash",
    "delivery_provider_ids": "deleted (a late receipt about the person then matches nothing)",
    "suppressions": "kept hashed, so a bounce or complaint is still honoured, without the contact id",
    "contact_preferences": "deleted",
    "frequency_log": "deleted",
    "inbox_messages": "deleted",
}


async def erase(session: AsyncSession, contact_ids: Sequence[int]) -> dict[str, int]:
    ids = {"ids": list(contact_ids)}
    removed = {}
    for table, statement in (
        ("delivery_plans", """UPDATE delivery_plans SET content = '{}', wake_at = NULL,
                                  status = 'done', outcome = coalesce(outcome, 'erased'),
                                  finished_at = coalesce(finished_at, now())
                              WHERE contact_id = ANY(:ids)"""),
        ("delivery_attempts", """UPDATE delivery_attempts SET provider_message_id = NULL, error = NULL,
                                     address_hash = NULL WHERE contact_id = ANY(:ids)"""),
        ("delivery_provider_ids", "DELETE FROM delivery_provider_ids WHERE contact_id = ANY(:ids)"),
        ("suppressions", "UPDATE suppressions SET contact_id = NULL, note = NULL WHERE contact_id = ANY(:ids)"),
        ("contact_preferences", "DELETE FROM contact_preferences WHERE contact_id = ANY(:ids)"),
        ("frequency_log", "DELETE FROM frequency_log WHERE contact_id = ANY(:ids)"),
        ("inbox_messages", "DELETE FROM inbox_messages WHERE contact_id = ANY(:ids)"),
    ):
        result = await session.execute(text(statement), ids)
        removed[table] = int(result.rowcount or 0)  # type: ignore[attr-defined]
    return removed
