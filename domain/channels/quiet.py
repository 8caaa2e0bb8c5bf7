"""Quiet hours in the contact's own time zone: a message due inside them is deferred to the first instant they
end, never dropped. Daylight-saving correct: an end time that does not exist that day (the spring-forward gap)
becomes the instant the clocks jump; one that exists twice (fall back) is its first occurrence."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo


class InvalidQuietHours(ValueError):
    pass


@dataclass(frozen=True)
class QuietHours:
    start: time  # local wall-clock time quiet hours begin (inclusive)
    end: time    # ... and end (exclusive); start > end wraps midnight (21:00-08:00)

    @classmethod
    def parse(cls, spec: str) -> QuietHours | None:
        """`"21:00-08:00"` → quiet hours; empty → None (no quiet hours)."""
        if not spec.strip():
            return None
        try:
            start, end = (time.fromisoformat(p.strip()) for p in spec.split("-"))
        except ValueError as exc:
            raise InvalidQuietHours(f"quiet hours read `HH:MM-HH:MM`, e.g. `21:00-08:00`; got {spec!r}") from exc
        return cls(start, end)

    def contains(self, local: time) -> bool:
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


def next_allowed(now: datetime, tz: ZoneInfo, quiet: QuietHours | None) -> datetime:
    """`now` when it is outside quiet hours in `tz`, else the instant (UTC) they end."""
    if quiet is None:
        return now
    local = now.astimezone(tz)
    wall = local.time().replace(tzinfo=None)
    if not quiet.contains(wall):
        return now
    day = local.date()
    if quiet.start > quiet.end and wall >= quiet.start:
        day += timedelta(days=1)
    return max(now, local_instant(day, quiet.end, tz))


def local_instant(day: date, at: time, tz: ZoneInfo) -> datetime:
    """The first instant (UTC) at which the wall clock in `tz` reads `at` or later on `day`."""
    first = datetime.combine(day, at, tzinfo=tz).replace(fold=0)
    utc = first.astimezone(UTC)
    if utc.astimezone(tz).replace(tzinfo=None) == first.replace(tzinfo=None):
        return utc  # exists (the first of two, if ambiguous)
    # In a gap: the clocks jumped over `at`. The jump lies between the two readings of `at` (by the offsets
    # before and after); find the first instant carrying the later wall-clock reading.
    low = first.replace(fold=1).astimezone(UTC)
    high = utc
    if low > high:
        low, high = high, low
    while high - low > timedelta(seconds=1):
        mid = low + (high - low) / 2
        if mid.astimezone(tz).replace(tzinfo=None) >= first.replace(tzinfo=None):
            high = mid
        else:
            low = mid
    # Transitions fall on whole seconds.
    return high if high.microsecond == 0 else (high + timedelta(seconds=1)).replace(microsecond=0)
