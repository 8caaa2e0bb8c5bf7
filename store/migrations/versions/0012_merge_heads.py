"""Merge heads: join the per-domain branches into one chain. No schema change.

Revision ID: 0012_merge_heads
Revises: 0009_erasure, 0010_ledger_credit_path, 0011_events_dedupe

Until now each domain's migrations branched off `0001_foundation` (events and segments: 0002 → 0004 → 0008
→ 0011; ledger: 0003 → 0005 → 0006, then 0009 and 0010 both off 0006), leaving three unlabelled heads that
`store.migrate` hid by upgrading to "heads". Nothing fixed the order of two branches' migrations against each
other, and a fourth head added by mistake would have gone unnoticed. The earlier migrations stay as they are
(deployments have applied them); this revision only makes their three heads its parents.

From here on migrations are strictly linear: each one's `down_revision` is the single previous head, and
files are named `NNNN_<domain>_<what>.py` with the file stem as the revision id (0007 was never used).
tests/store/test_migrations.py enforces both.
"""

from __future__ import annotations

revision = "0012_merge_heads"
down_revision = ("0009_erasure", "0010_ledger_credit_path", "0011_events_dedupe")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
