"""`nudge import contacts FILE`: streamed COPY and set-based merge into contacts and identities."""

from __future__ import annotations

import asyncio
import csv
import uuid
from pathlib import Path

import httpx
import pytest

from store.contacts.imports import BadImport, import_contacts


async def test_csv_import_creates_updates_and_reports_progress(
        tmp_path: Path, database_url: str, api: httpx.AsyncClient) -> None:
    tag = uuid.uuid4().hex[:8]
    existing = (await api.post("/v1/contacts", json={"user_id": f"{tag}-0", "traits": {"keep": "yes"}})).json()
    path = tmp_path / "contacts.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["user_id", "Email", "plan", "timezone"])
        for i in range(2000):
            writer.writerow([f"{tag}-{i}", f"{tag}-{i}@Example.com", "free", "Europe/Paris" if i % 2 else "Mars/Base"])
        writer.writerow([f"{tag}-1", f"{tag}-1@example.com", "pro", ""])  # a later line for the same person wins
        writer.writerow(["", f"{tag}-only-email@example.com", "trial", ""])
    stages: list[tuple[str, int, int]] = []
    result = await asyncio.to_thread(import_contacts, database_url, path,
                                     progress=lambda *s: stages.append(s))
    assert (result.rows, result.created, result.updated) == (2002, 2000, 1)
    assert stages[-1][0] == "merge" and any(s[0] == "upload" and s[1] == s[2] for s in stages)

    updated = (await api.get(f"/v1/contacts/{existing['id']}")).json()
    assert updated["traits"] == {"keep": "yes", "plan": "free"} and updated["email"] == f"{tag}-0@example.com"
    assert updated["timezone"] is None  # an unknown zone is dropped, not stored
    one = (await api.get("/v1/contacts", params={"user_id": f"{tag}-1"})).json()["items"][0]
    assert one["traits"] == {"plan": "pro"}
    by_email = (await api.get("/v1/contacts", params={"identity": f"email:{tag}-only-email@example.com"})).json()
    assert by_email["items"][0]["traits"] == {"plan": "trial"}

    again = await asyncio.to_thread(import_contacts, database_url, path)
    assert (again.created, again.updated) == (0, 2001)


def test_csv_without_an_identifying_column_is_refused(tmp_path: Path, database_url: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("name,plan\nAda,pro\n")
    with pytest.raises(BadImport, match="user_id, email, phone"):
        import_contacts(database_url, path)
