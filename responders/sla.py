"""SLA arithmetic: due times on a business-hours calendar, with pauses, and policy choice.

Pure functions: no I/O, no clock reads (the caller passes every instant). The SLA
monitor stores what these return (DESIGN.md, invariant 6), so they must give the same
answer for the same arguments on any machine and after any restart.

Working time is real elapsed time that falls inside working intervals. Intervals are
written as local wall-clock times and turned into UTC day by day with `zoneinfo`, so a
09:00-18:00 day is 9 hours on a DST-change day too, and a 24x7 clock counts real
hours (a DST night neither adds nor loses one). Everything is computed in UTC: adding a
timedelta to a datetime in a DST zone would add wall-clock time instead.

The walk goes interval by interval, at most one step per local day, so adding days of
working time is a few dozen steps; a calendar with no working time for five years
raises ValueError instead of walking on forever.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "DEFAULT_POLICIES", "DEFAULT_RULES", "MIDNIGHT", "BusinessHours", "Calendar", "Pause", "Policy",
    "Rule", "add_working_time", "due_time", "select_policy", "warning_time",
    "working_time_between",
]

MIDNIGHT = time(0)  # as the end of an interval: the end of the day (24:00)
_WALK_LIMIT = timedelta(days=5 * 366)
_END_OF_TIME = datetime.max.replace(tzinfo=UTC)

Interval = tuple[datetime, datetime]
Pause = tuple[datetime, datetime | None]  # end None: the pause is still running
Rule = tuple[str | None, str | None, str]  # (category, priority, policy name); None = any


@dataclass(frozen=True)
class BusinessHours:
    """When the desk works, in local time of `timezone`.

    `weekly` maps a weekday (0 = Monday) to its working intervals; a missing day is
    closed. An interval ending at 00:00 runs to the end of the day. An empty mapping
    means every day round the clock, local holidays still closed.
    """

    timezone: str
    weekly: Mapping[int, tuple[tuple[time, time], ...]]
    holidays: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {self.timezone!r}") from exc
        weekly = {day: _checked_day(day, spans) for day, spans in (self.weekly or {}).items()}
        if weekly and not any(weekly.values()):
            # An explicit week with no intervals would stall every clock; say so now.
            raise ValueError("business hours have no working interval on any weekday")
        object.__setattr__(self, "weekly", weekly)
        object.__setattr__(self, "holidays", frozenset(self.holidays))

    def __hash__(self) -> int:
        # The weekly dict is not hashable; hash a frozen view so calendars can be cache keys.
        return hash((self.timezone, tuple(sorted(self.weekly.items())), self.holidays))

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)  # zoneinfo caches instances per key


def _checked_day(day: int, spans: Iterable[tuple[time, time]]) -> tuple[tuple[time, time], ...]:
    """The day's intervals sorted; ValueError for a bad weekday, order or overlap."""
    if day not in range(7):
        raise ValueError(f"weekday must be 0 (Monday) to 6 (Sunday), not {day!r}")
    ordered = tuple(sorted(spans))
    for begin, end in ordered:
        if begin.tzinfo is not None or end.tzinfo is not None:
            raise ValueError("business hours are local wall-clock times without tzinfo")
        if end != MIDNIGHT and end <= begin:
            raise ValueError(f"weekday {day}: interval {begin}-{end} ends before it starts")
    for (_, end), (begin, _) in pairwise(ordered):
        if end == MIDNIGHT or end > begin:
            raise ValueError(f"weekday {day}: intervals overlap at {begin}")
    return ordered


@dataclass(frozen=True)
class Calendar:
    """The clock SLA time runs on; without business hours, 24x7 in UTC."""

    hours: BusinessHours | None = None

    @classmethod
    def with_country_holidays(
        cls, hours: BusinessHours, country: str, years: Iterable[int],
        subdiv: str | None = None,
    ) -> Calendar:
        """`hours` plus the public holidays of `country` (ISO code) in `years`.

        Only the listed years are known: pass the current and the next one.
        """
        if hours is None:
            raise ValueError("holidays need business hours: they are local dates")
        import holidays  # only this constructor needs the package

        found = holidays.country_holidays(country, subdiv=subdiv, years=list(years))
        return cls(dataclasses.replace(hours, holidays=hours.holidays | frozenset(found)))


@dataclass(frozen=True)
class Policy:
    """Promised times for one kind of ticket, all measured as working time."""

    name: str
    first_response: timedelta
    next_response: timedelta
    resolution: timedelta
    warn_at: float = 0.8  # warn when this share of the time has gone
    level2_after: timedelta = timedelta(hours=4)  # after a breach, the next escalation level

    def __post_init__(self) -> None:
        durations = (self.first_response, self.next_response, self.resolution, self.level2_after)
        if any(d <= timedelta(0) for d in durations):
            raise ValueError(f"policy {self.name!r}: durations must be positive")
        if not 0 < self.warn_at < 1:
            raise ValueError(f"policy {self.name!r}: warn_at must be between 0 and 1")


DEFAULT_POLICIES: dict[str, Policy] = {
    "default": Policy("default", timedelta(hours=24), timedelta(hours=24), timedelta(hours=72)),
    "urgent": Policy("urgent", timedelta(hours=1), timedelta(hours=4), timedelta(hours=24)),
    "appeal": Policy("appeal", timedelta(hours=48), timedelta(hours=48), timedelta(days=14)),
}

DEFAULT_RULES: tuple[Rule, ...] = (
    ("self_exclusion", None, "urgent"),
    (None, "urgent", "urgent"),
    ("appeal", None, "appeal"),
    (None, None, "default"),
)


def select_policy(
    category: str, priority: str, policies: Mapping[str, Policy], rules: Sequence[Rule],
) -> Policy:
    """The policy of the first rule matching (exactly) `category` and `priority`; else "default".

    A rule naming a policy that does not exist is a configuration error, raised as
    KeyError rather than quietly giving e.g. a self-exclusion the 24-hour default.
    """
    for rule_category, rule_priority, name in rules:
        if rule_category in (None, category) and rule_priority in (None, priority):
            if name not in policies:
                raise KeyError(f"SLA rule names unknown policy {name!r}")
            return policies[name]
    return policies["default"]


def add_working_time(start: datetime, amount: timedelta, calendar: Calendar) -> datetime:
    """The first instant at which `amount` of working time has passed since `start`."""
    end = due_time(start, amount, calendar)
    assert end is not None  # the walk without pauses only ends by raising
    return end


def working_time_between(
    start: datetime, end: datetime, calendar: Calendar, pauses: Sequence[Pause] = (),
) -> timedelta:
    """Working time from `start` to `end`, minus `pauses`; zero when `end` is not later.

    Zero rather than an error for a reversed pair: two daemons' clocks may disagree a
    little, and the monitor must not stop over it.
    """
    end = _utc(end)
    total = timedelta(0)
    for begin, stop in _unpaused(_working_intervals(_utc(start), calendar), pauses):
        if begin >= end:
            break
        total += min(stop, end) - begin
    return total


def due_time(
    start: datetime, amount: timedelta, calendar: Calendar, pauses: Sequence[Pause] = (),
) -> datetime | None:
    """When `amount` of working time has passed since `start`, not counting `pauses`.

    None while an open pause (end None) holds the clock before the amount is used up:
    there is no due time until the player answers. An open pause that began after the
    due time does not move it; a breach that happened stays. A zero amount is due at
    `start` itself, even outside working hours: nothing is left to wait for.
    """
    start = _utc(start)
    if _non_negative(amount) == timedelta(0):
        return start
    return _advance(_unpaused(_working_intervals(start, calendar), pauses), amount)


def warning_time(
    start: datetime, amount: timedelta, calendar: Calendar, pauses: Sequence[Pause],
    share: float,
) -> datetime | None:
    """When `share` of `amount` has passed (e.g. Policy.warn_at); None as for due_time."""
    if share < 0:
        raise ValueError(f"share must not be negative, not {share}")
    return due_time(start, amount * share, calendar, pauses)


def _advance(intervals: Iterable[Interval], amount: timedelta) -> datetime | None:
    """Spend `amount` along the intervals; None if they run out first."""
    for begin, end in intervals:
        if end - begin >= amount:
            return begin + amount
        amount -= end - begin
    return None


def _working_intervals(start: datetime, calendar: Calendar) -> Iterator[Interval]:
    """Working intervals in UTC from `start` on, clipped to it; endless unless it raises."""
    hours = calendar.hours
    if hours is None:
        yield start, _END_OF_TIME
        return
    day = start.astimezone(hours.zone).date()
    last_work = start
    while True:
        for begin, end in _day_intervals(day, hours):
            if end > start:
                yield max(begin, start), end
                last_work = end
        day += timedelta(days=1)
        # Measured from the last working interval, not from start, so a long
        # working_time_between on a sound calendar never trips it.
        if _local(day, MIDNIGHT, hours) - last_work > _WALK_LIMIT:
            raise ValueError(f"calendar has no working time in the five years after {last_work}")


def _day_intervals(day: date, hours: BusinessHours) -> Iterator[Interval]:
    """One local day's working intervals in UTC, skipping those a DST gap empties."""
    if day in hours.holidays:
        return
    spans = hours.weekly.get(day.weekday(), ()) if hours.weekly else ((MIDNIGHT, MIDNIGHT),)
    for begin, end in spans:
        utc_begin = _local(day, begin, hours)
        utc_end = _local(day + timedelta(days=1) if end == MIDNIGHT else day, end, hours)
        if utc_end > utc_begin:
            yield utc_begin, utc_end


def _local(day: date, wall: time, hours: BusinessHours) -> datetime:
    # fold=0: an ambiguous wall time is its first occurrence, as zoneinfo defines it.
    return datetime.combine(day, wall, tzinfo=hours.zone).astimezone(UTC)


def _unpaused(intervals: Iterable[Interval], pauses: Sequence[Pause]) -> Iterator[Interval]:
    """The intervals with the pauses cut out; stops at the start of an open pause."""
    ordered = _sorted_pauses(pauses)
    i = 0
    for begin, end in intervals:
        while begin < end:
            # Pauses are sorted by start; those over before `begin` no longer matter.
            while i < len(ordered) and (stop := ordered[i][1]) is not None and stop <= begin:
                i += 1
            if i == len(ordered) or ordered[i][0] >= end:
                yield begin, end
                break
            pause_begin, pause_end = ordered[i]
            if pause_begin > begin:
                yield begin, pause_begin
            if pause_end is None:
                return
            begin = pause_end


def _sorted_pauses(pauses: Sequence[Pause]) -> list[tuple[datetime, datetime | None]]:
    checked = []
    for begin, end in pauses:
        begin = _utc(begin)
        end = None if end is None else _utc(end)
        if end is not None and end < begin:
            raise ValueError(f"pause ends ({end}) before it starts ({begin})")
        checked.append((begin, end))
    return sorted(checked, key=lambda pause: pause[0])


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"SLA times must be timezone-aware, not {moment!r}")
    return moment.astimezone(UTC)


def _non_negative(amount: timedelta) -> timedelta:
    if amount < timedelta(0):
        raise ValueError(f"working time must not be negative, not {amount}")
    return amount
