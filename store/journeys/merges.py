"""What a contact merge (`store.merges`) does to journeys: a journey only the merged-away contact was in follows the
person to the survivor (state and history); where both were in the same journey, the survivor's run goes on and
the merged-away one's live run ends (`exited`, reason `merged`, with its history row and count), so the person is
never messaged twice by one journey."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# What a merge does to each journeys table holding a contact id (tests/store/test_cascades.py reads this).
TABLES = {
    "journey_states": "move to the survivor for journeys it is not in; otherwise the merged-away live run exits",
    "journey_history": "moves with the states it describes; stays with the merged-away id otherwise",
}

PAIRS = "unnest(CAST(:f AS bigint[]), CAST(:t AS bigint[])) AS m(f, t)"
SURVIVOR_IN = "EXISTS (SELECT 1 FROM journey_states x WHERE x.contact_id = m.t AND x.journey_id = {alias}.journey_id)"


async def move(session: AsyncSession, pairs: Sequence[tuple[int, int]]) -> None:
    if not pairs:
        return
    p = {"f": [a for a, _ in pairs], "t": [b for _, b in pairs]}
    await session.execute(text(f"""
        WITH ended AS (
            UPDATE journey_states s SET status = 'exited', exit_reason = 'merged', wake_at = NULL,
                                        waiting_event = NULL, updated_at = now()
            FROM {PAIRS} WHERE s.contact_id = m.f AND s.status IN ('ready', 'sleeping', 'waiting')
              AND {SURVIVOR_IN.format(alias='s')}
            RETURNING s.contact_id, s.journey_id, s.version, s.entry, s.node
        ), history AS (
            INSERT INTO journey_history (contact_id, journey_id, version, entry, node, outcome, reason, at)
            SELECT contact_id, journey_id, version, entry, node, 'exited', 'merged', now() FROM ended
        )
        INSERT INTO journey_counts AS k (journey_id, version, node, outcome, n)
        SELECT journey_id, version, node, 'exited', count(*) FROM ended
        GROUP BY journey_id, version, node ORDER BY journey_id, version, node
        ON CONFLICT (journey_id, version, node, outcome) DO UPDATE SET n = k.n + excluded.n
    """), p)
    await session.execute(text(f"""
        UPDATE journey_history h SET contact_id = m.t FROM {PAIRS}
        WHERE h.contact_id = m.f AND NOT {SURVIVOR_IN.format(alias='h')}
    """), p)
    await session.execute(text(f"""
        WITH gone AS (
            DELETE FROM journey_states s USING {PAIRS}
            WHERE s.contact_id = m.f AND NOT {SURVIVOR_IN.format(alias='s')}
            RETURNING m.t, s.journey_id, s.entry, s.version, s.node, s.status, s.wake_at, s.waiting_event, s.event,
                      s.entered_at, s.updated_at
        )
        INSERT INTO journey_states (contact_id, journey_id, entry, version, node, status, wake_at, waiting_event,
                                    event, entered_at, updated_at)
        SELECT * FROM gone ON CONFLICT DO NOTHING
    """), p)
