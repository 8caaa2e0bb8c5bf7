"""What a contact merge (`store.merges`) does to segment data: nothing in the merge's transaction; the segments'
own refresh catches up, as it does after any change, so there is no step to call."""

from __future__ import annotations

# tests/store/test_cascades.py reads this. Merges happen on the ingest path (every identify after anonymous
# browsing), so they add no statements here; each row below is made right by what segments already run.
TABLES = {
    "segment_members": "left to the refresh: a rule segment's next full refresh exits the merged-away contact (it "
                       "is no longer in `contacts`) with a transition and no event (nobody to tell), and enters the "
                       "survivor if it matches. A manual segment keeps the merged-away id, counted, until it is "
                       "removed. Deliveries are made only for ids in `contacts`, so it is never sent to",
    "segment_transitions": "history, stays under the id it happened to",
    "contact_scores": "the merged-away row is an orphan, dropped by the scheduled refresh's orphan sweep; the "
                      "survivor's is recomputed",
    "contact_event_recent": "the merged-away rows are orphans, dropped like scores; the survivor's rollup is rebuilt "
                            "from `contact_event_daily` when its events next reach the changes consumer",
}
