"""Frequency caps (anti-disturbance, seed 003's 防打扰): rolling windows per contact, per channel and overall,
e.g. at most 2 marketing messages a day and 5 a week. Transactional messages are exempt and not counted.

A cap reached drops the message (recorded `suppressed`, reason `cap`) rather than deferring it: a promotion held
back until a weekly window frees up would arrive days late and stale, and deferred messages would pile up and all
go out together the moment the window opens — the burst caps are meant to prevent (Braze drops too).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

ANY = "*"
_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
_CAP = re.compile(r"^\s*(?P<channel>[a-z_*]+)\s*:\s*(?P<limit>\d+)\s*/\s*(?P<n>\d*)(?P<unit>[hdw])\s*$")


class InvalidCaps(ValueError):
    pass


@dataclass(frozen=True)
class Cap:
    channel: str  # a channel name, or `*` for every channel together
    limit: int
    window: timedelta

    def covers(self, channel: str) -> bool:
        return self.channel in (ANY, channel)

    def __str__(self) -> str:
        return f"{self.limit} per {self.window} on {'all channels' if self.channel == ANY else self.channel}"


def parse_caps(spec: str) -> tuple[Cap, ...]:
    """`"*:2/1d, *:5/7d, sms:1/1d"` → caps (empty string: none)."""
    caps = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        m = _CAP.match(part)
        if m is None:
            raise InvalidCaps(f"a frequency cap reads `channel:limit/Nunit` (unit h, d or w), e.g. `*:2/1d`; "
                              f"got {part!r}")
        caps.append(Cap(m["channel"], int(m["limit"]), int(m["n"] or 1) * _UNITS[m["unit"]]))
    return tuple(caps)


def reached(caps: Sequence[Cap], history: Iterable[tuple[str, datetime]], channel: str,
            now: datetime) -> Cap | None:
    """The first cap that one more message on `channel` at `now` would break, given the contact's counted
    messages `(channel, sent at)`; None when it may be sent."""
    past = list(history)
    for cap in caps:
        if not cap.covers(channel):
            continue
        since = now - cap.window
        # No upper bound: a racing sender whose clock read later may have taken a slot "after" `now`; it counts.
        if sum(1 for ch, at in past if since < at and cap.covers(ch)) >= cap.limit:
            return cap
    return None


def longest_window(caps: Sequence[Cap]) -> timedelta:
    return max((c.window for c in caps), default=timedelta(0))
