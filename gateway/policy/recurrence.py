"""Recurrence [pure]: when a scheduled or recurring batch runs.

A batch runs once at `start_ms`, or again every day, week or month at the same local wall-clock time in its
time zone: the platform's customer schedules "every Monday at 09:00 Shanghai time", not every 604,800 seconds.
The first run is `start_ms` itself; its reading on the zone's clock gives the time of day of every run, its
weekday the weekly day and its day of the month the monthly day. A month too short for that day (the 29th to
31st) runs on its last day, and the next long month is back on the day itself: a batch started on 31 January
runs on 28 (or 29) February, 31 March, 30 April. No run comes after `end_ms` (0: no end); a run exactly at
`end_ms` runs.

Daylight saving keeps the wall-clock time, as the recipients' clocks do: "09:00 London" is 09:00 UTC in winter
and 08:00 UTC in summer. Two days a year the time needs a rule:

- Spring forward: a time the clock skips (02:30 on the night New York's clocks jump from 02:00 to 03:00) runs
  at the first instant after the gap, when the clock shows 03:00, like windows.py's send windows, and the next
  day at 02:30 again. RFC 5545 instead shifts it by the gap (03:30); the earliest valid instant is chosen so
  the run is as close as the clock allows to the time asked for, never after a later time of the same day.
- Fall back: a time the clock shows twice (01:30 on the night it goes from 02:00 back to 01:00) runs once, at
  its first occurrence (PEP 495 fold=0). Only the first run may be at a second occurrence: it is `start_ms`.

Each call computes the run from the calendar: the period (day, week, month) that holds `after_ms` is found by
date arithmetic, then at most a few runs around it are tried, so a call costs the same for a batch that
started yesterday and one that started ten years ago. Instants are epoch milliseconds; zones use the system's
tz database through `zoneinfo`. Runs past the year 9999, where `datetime` ends, do not exist (None).
"""

from __future__ import annotations

from calendar import monthrange
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

EVERY: Final = ("once", "daily", "weekly", "monthly")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)
# The last instant whose local date is inside `datetime`'s range in every zone (offsets are within +-1 day).
_LAST_MS: Final = (datetime(9999, 12, 30, tzinfo=UTC) - _EPOCH) // _MS


@dataclass(frozen=True, slots=True)
class Recurrence:
    """When a batch runs: `every` one of `EVERY`, from `start_ms` (the first run, epoch ms) to `end_ms`
    (inclusive; 0: no end), at `start_ms`'s wall-clock time in `time_zone` (an IANA name). Not validated
    when built, as a stored batch must load whatever it holds: `check` says what is wrong."""

    every: str
    start_ms: int
    end_ms: int = 0
    time_zone: str = "UTC"


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as err:  # ValueError: a malformed name ("", "../x")
        raise ValueError(f"unknown time zone {name!r}") from err


def check(r: Recurrence) -> str | None:
    """What is wrong with `r`, in words for the platform's user, or None."""
    if r.every not in EVERY:
        return f"every {r.every!r} is not one of {', '.join(EVERY)}"
    if not 0 <= r.start_ms <= _LAST_MS:
        return f"start_ms {r.start_ms} is not an instant between 1970 and 9999"
    if r.end_ms and r.end_ms < r.start_ms:
        return f"end_ms {r.end_ms} is before start_ms {r.start_ms}: the batch would never run"
    try:
        _zone(r.time_zone)
    except ValueError as err:
        return str(err)
    return None


def _ms(moment: datetime) -> int:
    return (moment - _EPOCH) // _MS


def _local(zone: ZoneInfo, at_ms: int) -> datetime:
    """The naive wall-clock reading of `zone` at `at_ms`, to the millisecond."""
    return (_EPOCH + at_ms * _MS).astimezone(zone).replace(tzinfo=None)


def _offset(zone: ZoneInfo, at_ms: int) -> timedelta | None:
    return (_EPOCH + at_ms * _MS).astimezone(zone).utcoffset()


def _gap_end(zone: ZoneInfo, before_ms: int, after_ms: int) -> int:
    """The instant in (before_ms, after_ms] at which the UTC offset of `zone` changes: the range holds one
    change (a spring-forward gap, a few hours at most). Bisects whole seconds, as offsets change on them."""
    offset, low, high = _offset(zone, before_ms), before_ms // 1000, -(-after_ms // 1000)
    while high - low > 1:
        middle = (low + high) // 2
        if _offset(zone, middle * 1000) == offset:
            low = middle
        else:
            high = middle
    return high * 1000


def _instant(zone: ZoneInfo, wall: datetime) -> int:
    """When the clock of `zone` first reads the naive `wall`; for a time it skips, the end of the gap (module
    docstring). PEP 495: in a gap fold=0 takes the offset before the change and fold=1 the one after, so the
    offsets differ that way round only in a gap (in an overlap fold=0 has the larger one)."""
    first, second = wall.replace(tzinfo=zone, fold=0), wall.replace(tzinfo=zone, fold=1)
    first_offset, second_offset = first.utcoffset(), second.utcoffset()
    if first_offset is None or second_offset is None or first_offset >= second_offset:
        return _ms(first)
    return _gap_end(zone, _ms(second), _ms(first))


def _date(every: str, first: date, index: int) -> date:
    """The local date of run `index` (0 is the first). OverflowError or ValueError past the year 9999."""
    if every == "daily":
        return first + timedelta(days=index)
    if every == "weekly":
        return first + timedelta(weeks=index)
    year, month = divmod(first.year * 12 + first.month - 1 + index, 12)
    return date(year, month + 1, min(first.day, monthrange(year, month + 1)[1]))


def _index(every: str, first: date, day: date) -> int:
    """The index of the run in the period (day, week, month) that holds `day`."""
    if every == "daily":
        return (day - first).days
    if every == "weekly":
        return (day - first).days // 7
    return (day.year - first.year) * 12 + day.month - first.month


def _next_repeat(r: Recurrence, after_ms: int) -> int | None:
    """The first run after `after_ms` >= `start_ms` of a repeating `r`, ignoring `end_ms`. Starts two
    periods before the one holding `after_ms` (a run's instant may fall on a neighbouring local date only by
    a DST change at midnight) and tries forward: a few tries, whatever the distance from the start."""
    if after_ms >= _LAST_MS:
        return None
    zone = _zone(r.time_zone)
    wall = _local(zone, r.start_ms)
    index = max(1, _index(r.every, wall.date(), _local(zone, after_ms).date()) - 2)
    try:
        while (run := _instant(zone, datetime.combine(_date(r.every, wall.date(), index), wall.time()))) <= after_ms:
            index += 1
    except (OverflowError, ValueError):  # past the year 9999
        return None
    return run


def next_run_ms(r: Recurrence, after_ms: int) -> int | None:
    """The first run strictly after `after_ms` (so `next_run_ms(r, r.start_ms - 1) == r.start_ms`), or None
    when there is none: a "once" batch runs only at `start_ms`, and none runs after `end_ms`. ValueError
    when `check(r)` finds a problem."""
    problem = check(r)
    if problem is not None:
        raise ValueError(problem)
    if after_ms < r.start_ms:
        run: int | None = r.start_ms
    elif r.every == "once" or (r.end_ms and after_ms >= r.end_ms):
        return None
    else:
        run = _next_repeat(r, after_ms)
    return run if run is not None and (not r.end_ms or run <= r.end_ms) else None


def runs_between(r: Recurrence, after_ms: int, until_ms: int, limit: int) -> list[int]:
    """The runs in (after_ms, until_ms], at most `limit` of them, in order: consecutive ranges meet without
    a run counted twice or lost. ValueError as `next_run_ms`."""
    runs: list[int] = []
    at = after_ms
    while len(runs) < limit and (run := next_run_ms(r, at)) is not None and run <= until_ms:
        runs.append(run)
        at = run
    return runs
