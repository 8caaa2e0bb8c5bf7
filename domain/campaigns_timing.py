"""When a campaign's runs send: a recurrence (a cron expression or an interval, in a time zone, with an optional end)
and its occurrences, the delivery step of each run, and the local-time slots of a run that sends at the same wall
clock time in each recipient's zone."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from domain.errors import DomainError
from domain.zones import zone

MIN_INTERVAL = timedelta(hours=1)  # a marketing message more often than hourly is a mistake, not a campaign
MAX_INTERVAL = timedelta(days=366)
SEARCH_YEARS = 5  # a cron that matches no day in five years (31 February) never fires


def run_step(number: int) -> str:
    """The send step of run `number`, part of every delivery key (`delivery:{campaign}:{step}:{contact}`). Run 1
    keeps the one-off campaign's `s1`; each later occurrence of a recurring campaign has its own (`r2.s1`), so
    occurrences never dedupe each other and a retried occurrence reuses its own keys."""
    if number < 1:
        raise DomainError("run numbers start at 1.")
    return "s1" if number == 1 else f"r{number}.s1"


def known_zone(name: str) -> ZoneInfo:
    """The IANA zone, or DomainError naming it (what the API refuses; a contact's unknown zone falls back instead)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise DomainError(f"unknown time zone {name!r}: use an IANA name such as Europe/Paris or Asia/Shanghai.")\
            from None


# Cron: five fields, minute hour day-of-month month day-of-week, each `*`, `n`, `a-b`, a step (`*/15`, `a-b/2`) or a
# comma list of those; month and weekday names (JAN, MON) and `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`.
_SHORTHANDS = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@weekly": "0 0 * * 0",
               "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *"}
_MONTHS = {n: i + 1 for i, n in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())}
_DAYS = {n: i for i, n in enumerate("SUN MON TUE WED THU FRI SAT".split())}
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day of month", 1, 31, {}), ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS))


@dataclass(frozen=True)
class Cron:
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    text: str  # the normalised five fields, as Temporal is given them

    def matches_day(self, d: date) -> bool:
        return d.month in self.months and d.day in self.days and (d.isoweekday() % 7) in self.weekdays


def _field(text: str, name: str, low: int, high: int, names: dict[str, int]) -> set[int]:
    def number(token: str) -> int:
        value = names.get(token.upper()) if not token.isdigit() else int(token)
        if value is None or not low <= value <= high:
            raise DomainError(f"cron {name} {token!r} is not a number from {low} to {high}.")
        return value

    out: set[int] = set()
    for item in text.split(","):
        span, _, step_text = item.partition("/")
        if step_text and not (step_text.isdigit() and int(step_text) > 0):
            raise DomainError(f"cron {name} step {step_text!r} is not a positive number.")
        step = int(step_text) if step_text else 1
        if span == "*":
            first, last = low, high
        elif "-" in span:
            a, _, b = span.partition("-")
            first, last = number(a), number(b)
            if first > last:
                raise DomainError(f"cron {name} range {span!r} runs backwards.")
        else:
            first = number(span)
            last = high if step_text else first
        out.update(range(first, last + 1, step))
    return out


def parse_cron(expression: str) -> Cron:
    """The cron expression's sets, or DomainError saying what is wrong. Restricting both the day of month and the
    day of week is refused: classic cron ORs them and Temporal's calendar ANDs them, so either reading would
    surprise someone."""
    text = " ".join(expression.split())
    text = _SHORTHANDS.get(text.lower(), text)
    fields = text.split(" ")
    if len(fields) != 5:
        raise DomainError(f"cron {expression!r} needs five fields (minute hour day-of-month month day-of-week), "
                          f"e.g. '0 9 * * MON'.")
    sets = [_field(f, name, low, high, names) for f, (name, low, high, names) in zip(fields, _FIELDS, strict=True)]
    if fields[2] != "*" and fields[4] != "*":
        raise DomainError("cron restricts both the day of month and the day of week: restrict one of them.")
    weekdays = frozenset(d % 7 for d in sets[4])
    cron = Cron(tuple(sorted(sets[0])), tuple(sorted(sets[1])), frozenset(sets[2]), frozenset(sets[3]), weekdays,
                " ".join(fields))
    if next_cron(cron, ZoneInfo("UTC"), datetime(2024, 1, 1, tzinfo=UTC)) is None:
        raise DomainError(f"cron {expression!r} never fires (no such day in {SEARCH_YEARS} years).")
    return cron


def next_cron(cron: Cron, tz: ZoneInfo, after: datetime) -> datetime | None:
    """The first instant strictly after `after` whose wall-clock time in `tz` the cron matches (a wall time a DST
    gap skips maps to the instant just after the gap), or None within SEARCH_YEARS."""
    local = after.astimezone(tz)
    day = local.date()
    for _ in range(366 * SEARCH_YEARS + 2):
        if cron.matches_day(day):
            for h in cron.hours:
                for m in cron.minutes:
                    at = datetime.combine(day, time(h, m), tzinfo=tz).astimezone(UTC)
                    if at > after:
                        return at
        day += timedelta(days=1)
    return None


@dataclass(frozen=True)
class Recurrence:
    """How a campaign recurs: `cron` in `timezone`, or every `every_seconds` (aligned to the Unix epoch, as Temporal
    aligns intervals); occurrences from `start` (if given) up to `until` (if given), both inclusive."""

    timezone: str = "UTC"
    cron: str | None = None
    every_seconds: int | None = None
    start: datetime | None = None
    until: datetime | None = None

    def check(self) -> Recurrence:
        """This recurrence normalised (the cron's five fields), or DomainError naming the field."""
        if (self.cron is None) == (self.every_seconds is None):
            raise DomainError("recurrence: give either a cron expression or an interval (every), not both.")
        try:
            known_zone(self.timezone)
        except DomainError as exc:
            raise DomainError(f"recurrence.timezone: {exc}") from None
        cron = self.cron
        if cron is not None:
            try:
                cron = parse_cron(cron).text
            except DomainError as exc:
                raise DomainError(f"recurrence.cron: {exc}") from None
        if self.every_seconds is not None and not (
                MIN_INTERVAL.total_seconds() <= self.every_seconds <= MAX_INTERVAL.total_seconds()):
            raise DomainError("recurrence.every: between one hour and 366 days.")
        for name, value in (("start", self.start), ("until", self.until)):
            if value is not None and value.utcoffset() is None:
                raise DomainError(f"recurrence.{name}: give the time with its zone offset.")
        if self.start and self.until and self.until <= self.start:
            raise DomainError("recurrence.until: after the start.")
        return Recurrence(self.timezone, cron, self.every_seconds, self.start, self.until)

    def next_after(self, after: datetime) -> datetime | None:
        """The first occurrence strictly after `after` (and at or after `start`), None when the recurrence has
        ended by then."""
        if self.start is not None and after < self.start:
            after = self.start - timedelta(microseconds=1)
        if self.every_seconds is not None:
            epoch = after.timestamp()
            at = datetime.fromtimestamp((int(epoch // self.every_seconds) + 1) * self.every_seconds, UTC)
        else:
            assert self.cron is not None
            found = next_cron(parse_cron(self.cron), zone(self.timezone), after)
            if found is None:
                return None
            at = found
        return None if self.until is not None and at > self.until else at

    def to_json(self) -> dict[str, object]:
        return {"timezone": self.timezone, "cron": self.cron, "every_seconds": self.every_seconds,
                "start": self.start.isoformat() if self.start else None,
                "until": self.until.isoformat() if self.until else None}

    @staticmethod
    def from_json(data: dict[str, object]) -> Recurrence:
        def when(value: object) -> datetime | None:
            return datetime.fromisoformat(value) if isinstance(value, str) else None

        every = data.get("every_seconds")
        return Recurrence(timezone=str(data.get("timezone") or "UTC"),
                          cron=str(data["cron"]) if data.get("cron") else None,
                          every_seconds=int(every) if isinstance(every, int) else None,
                          start=when(data.get("start")), until=when(data.get("until")))

    def describe(self) -> str:
        every = timedelta(seconds=self.every_seconds or 0)
        what = f"cron '{self.cron}' in {self.timezone}" if self.cron else f"every {every}"
        return what + (f" until {self.until.isoformat()}" if self.until else "")


# Local-time sends: each recipient's zone (unknown names fall back to the campaign's zone) gets the message at the
# first `local_time` on its wall clock at or after the run's start; a zone whose time has already passed today
# sends at that time tomorrow, so nobody gets a 09:00 message at 23:00.
def parse_local_time(text: str) -> time:
    """`HH:MM` (24-hour), or DomainError."""
    hours, sep, minutes = text.partition(":")
    if not (sep and hours.isdigit() and minutes.isdigit() and len(minutes) == 2 and len(hours) <= 2
            and int(hours) < 24 and int(minutes) < 60):
        raise DomainError(f"local time {text!r} is not HH:MM (24-hour), e.g. 09:00.")
    return time(int(hours), int(minutes))


def next_local(at: time, tz: ZoneInfo, start: datetime) -> datetime:
    """The first instant at or after `start` whose wall-clock time in `tz` is `at` (a time a DST gap skips that day
    maps to the instant just after the gap)."""
    day = start.astimezone(tz).date()
    for offset in range(3):
        instant = datetime.combine(day + timedelta(days=offset), at, tzinfo=tz).astimezone(UTC)
        if instant >= start:
            return instant
    raise AssertionError("a wall-clock time recurs within two days")  # pragma: no cover


@dataclass(frozen=True)
class LocalSlot:
    due: datetime  # UTC instant
    zones: tuple[str, ...]  # the recipients' zone names (as stored) that send at it, sorted


def local_slots(names: Iterable[str | None], at: time, default: str, start: datetime) -> list[LocalSlot]:
    """Group the recipients' zone names by the instant `at` comes next on their wall clock (unknown and missing
    names take the `default` zone's), earliest first. Zones at the same offset share a slot: one timer, one pass."""
    due: dict[datetime, set[str]] = {}
    for name in set(names):
        due.setdefault(next_local(at, zone(name, default), start), set()).add(name or "")
    return [LocalSlot(when, tuple(sorted(group))) for when, group in sorted(due.items())]

