"""What a contact merge (`store.merges`) does to campaign data: nothing moves, so there is no step to call."""

from __future__ import annotations

# tests/store/test_cascades.py reads this.
TABLES = {
    "deliveries": "stay under the merged-away id: they are what was sent to it, and a run's counts are counted "
                  "from them; moving them could make the survivor's own delivery of the same step a duplicate key. "
                  "One still queued is never sent (sending reads the contact, which is gone) and stays queued",
}
