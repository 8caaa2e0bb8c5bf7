"""Task periods: which period an event falls in (its key) and where that period starts and ends, in the task's
IANA zone. Keys are plain strings (`2026-12-03`, `2026-W49`, `2026-12`, `once`, `new`, `window`) so they are
readable in the progress table, in reward references and in the Temporal UI.

Boundaries are computed on local wall-clock dates and converted back to UTC, so 23:59:59 and 00:00:00 local fall
in different days also on the day a DST change makes 23 or 25 hours long.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from domain.errors import DomainError

FAR_FUTURE = datetime(9999, 12, 31, tzinfo=UTC)


class PeriodKind(StrEnum):
    ONCE = "once"          # one period for the task's whole life
    NEW_USER = "new_user"  # within N days of the contact's first seen time, then never again
    DAILY = "daily"
    WEEKLY = "weekly"      # ISO weeks, Monday to Sunday
    MONTHLY = "monthly"
    WINDOW = "window"      # one fixed window [window_start, window_end)


class InvalidPeriod(DomainError):
    title = "Invalid task period"


def zone_of(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidPeriod(f"period.zone: unknown time zone {name!r}") from exc


@dataclass(frozen=True)
class Period:
    kind: PeriodKind
    zone: str = "UTC"
    days: int | None = None                 # new_user: how many days after first seen
    window_start: datetime | None = None    # window
    window_end: datetime | None = None

    def validate(self) -> None:
        zone_of(self.zone)
        if self.kind is PeriodKind.NEW_USER and (self.days is None or not 1 <= self.days <= 3650):
            raise InvalidPeriod("period.days: a new_user period needs days between 1 and 3650")
        if self.kind is PeriodKind.WINDOW:
            if self.window_start is None or self.window_end is None:
                raise InvalidPeriod("period.window_start: a window period needs window_start and window_end")
            if self.window_start.tzinfo is None or self.window_end.tzinfo is None:
                raise InvalidPeriod("period.window_start: window bounds need a UTC offset")
            if self.window_end <= self.window_start:
                raise InvalidPeriod("period.window_end: must be after window_start")

    def key(self, at: datetime, first_seen: datetime | None = None) -> str | None:
        """The key of the period `at` falls in; None when it falls in none (outside the window, a new-user
        period already over)."""
        local = at.astimezone(zone_of(self.zone))
        if self.kind is PeriodKind.DAILY:
            return local.date().isoformat()
        if self.kind is PeriodKind.WEEKLY:
            year, week, _ = local.isocalendar()
            return f"{year}-W{week:02d}"
        if self.kind is PeriodKind.MONTHLY:
            return f"{local.year:04d}-{local.month:02d}"
        if self.kind is PeriodKind.ONCE:
            return "once"
        if self.kind is PeriodKind.NEW_USER:
            if first_seen is None or self.days is None:
                return None
            return "new" if first_seen <= at < first_seen + timedelta(days=self.days) else None
        assert self.window_start is not None and self.window_end is not None
        return "window" if self.window_start <= at < self.window_end else None

    def bounds(self, key: str, first_seen: datetime | None = None) -> tuple[datetime, datetime]:
        """[start, end) of the period `key`, in UTC."""
        tz = zone_of(self.zone)

        def midnight(d: date) -> datetime:
            return datetime.combine(d, time(0), tzinfo=tz).astimezone(UTC)

        if self.kind is PeriodKind.DAILY:
            d = date.fromisoformat(key)
            return midnight(d), midnight(d + timedelta(days=1))
        if self.kind is PeriodKind.WEEKLY:
            year, week = key.split("-W")
            monday = date.fromisocalendar(int(year), int(week), 1)
            return midnight(monday), midnight(monday + timedelta(days=7))
        if self.kind is PeriodKind.MONTHLY:
            y, m = (int(x) for x in key.split("-"))
            return midnight(date(y, m, 1)), midnight(date(y + m // 12, m % 12 + 1, 1))
        if self.kind is PeriodKind.NEW_USER:
            start = first_seen or datetime(1970, 1, 1, tzinfo=UTC)
            return start, start + timedelta(days=self.days or 0)
        if self.kind is PeriodKind.WINDOW:
            assert self.window_start is not None and self.window_end is not None
            return self.window_start.astimezone(UTC), self.window_end.astimezone(UTC)
        return datetime(1970, 1, 1, tzinfo=UTC), FAR_FUTURE

    def previous_key(self, key: str) -> str | None:
        """The key of the period right before `key` (daily/weekly/monthly; None for the others): what a streak
        must have completed for it to continue."""
        if self.kind in (PeriodKind.DAILY, PeriodKind.WEEKLY, PeriodKind.MONTHLY):
            start, _ = self.bounds(key)
            return self.key(start - timedelta(seconds=1))
        return None
