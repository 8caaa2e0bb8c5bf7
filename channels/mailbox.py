"""The local mail sink's inbox: the .eml files it keeps, as the dev-inbox dashboard and the tests read them."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from pathlib import Path


def read_mailbox(directory: Path, limit: int | None = None) -> list[EmailMessage]:
    """Messages in a sink directory, oldest first (or the newest `limit`, still oldest first)."""
    if not directory.exists():
        return []
    files = sorted(directory.glob("*.eml"))
    if limit is not None:
        files = files[-limit:]
    return [
        email.message_from_bytes(f.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
        for f in files
    ]
