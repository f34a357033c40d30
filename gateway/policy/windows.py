"""Send windows [pure]: the hours of the recipient's own day in which a text may reach them.

Rules and carriers keep commercial texts out of the night (the US TCPA allows 8 a.m. to 9 p.m. at the
called party's location; Chinese carriers set their own hours), and the night that counts is the
recipient's. A `Window` is a daily range of local wall-clock time, in minutes after midnight, start
inclusive and end exclusive; it may cross midnight ("22:00-06:00"). The zones come from the recipient's
number (`routing.numbers.NumberBook.time_zones`, IANA names); a number whose region spans several (+1 spans
ten) must be inside the window in every one of them, as the gateway cannot know which one the handset is in.

`next_open_ms` returns 0 (send now) or the first instant at which the window is open in every zone; the
caller defers the recipient until then. "Open" means the zone's clock shows a time inside the window, which
settles daylight saving: a start inside a spring-forward gap (02:30 on the night clocks jump from 02:00 to
03:00) opens at the first instant after the gap, when the clock shows 03:00, and a window wholly inside the
gap stays shut that day; in a fall-back overlap the start is reached first on its first occurrence, and the
clock going back may leave and re-enter the window, as the recipient sees it do.

The search jumps from opening to opening rather than stepping through the minutes: at an instant `t`, each
zone shut at `t` next opens when its clock next reads the window's start (or jumps into the window at a
DST change), and `t` moves to the latest of those openings, until every zone is open at `t`. The answer is
never passed: a zone shut at `t` and open at the answer opens again at or before it. With fixed UTC offsets
the zones' windows meet every day or never, so the search stops two days ahead (one day, and one more for a
DST change that makes or moves a meeting). When they never meet (a one-hour window in UTC-10 and UTC+14),
the first zone alone decides: the text goes out at a civil hour for the first zone rather than never, and
the caller puts the zone most of the number's people live in first (libphonenumber lists a region's zones
alphabetically).

Instants are epoch milliseconds; zones use the system's tz database through `zoneinfo`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_MINUTES_A_DAY: Final = 24 * 60
_HORIZON_MS: Final = 2 * 86_400_000  # module docstring: how far ahead the zones' windows may meet
_FORM: Final = re.compile(r"([0-9]{2}):([0-9]{2})-([0-9]{2}):([0-9]{2})")


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _minute(text: str, hours: str, minutes: str) -> int:
    """Minutes after midnight of one "HH:MM" of the window `text`; ValueError when it is no time of day."""
    if int(hours) > 23:
        midnight = " (write midnight as 00:00)" if hours == "24" else ""
        raise ValueError(f"window {text!r}: hour {hours} is not 00..23{midnight}")
    if int(minutes) > 59:
        raise ValueError(f"window {text!r}: minute {minutes} is not 00..59")
    return int(hours) * 60 + int(minutes)


@dataclass(frozen=True, slots=True)
class Window:
    """A daily send window in local wall-clock time: minutes after midnight (0..1439), `start` inclusive,
    `end` exclusive; `end` before `start` crosses midnight. ValueError for a minute out of range, or an
    empty window (start == end: to send at any hour, set no window)."""

    start: int
    end: int

    def __post_init__(self) -> None:
        for name, minute in (("start", self.start), ("end", self.end)):
            if not 0 <= minute < _MINUTES_A_DAY:
                raise ValueError(f"window {name} {minute} is not a minute of the day (0..1439)")
        if self.start == self.end:
            shown = f"{_hhmm(self.start)}-{_hhmm(self.end)}"
            raise ValueError(f"window {shown} is empty: its start equals its end (to send at any hour, set none)")

    @classmethod
    def parse(cls, text: str) -> Window:
        """A window written "HH:MM-HH:MM" ("09:00-21:00", "22:00-06:00"); ValueError saying what is wrong."""
        form = _FORM.fullmatch(text.strip())
        if form is None:
            raise ValueError(f"window {text!r}: expected HH:MM-HH:MM, e.g. 09:00-21:00")
        start_h, start_m, end_h, end_m = form.groups()
        return cls(_minute(text, start_h, start_m), _minute(text, end_h, end_m))

    def __contains__(self, minute: int) -> bool:
        """Whether a local time of day, in minutes after midnight, is inside the window."""
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as err:  # ValueError: a malformed name ("", "../x")
        raise ValueError(f"unknown time zone {name!r}") from err


def _local(zone: ZoneInfo, at_ms: int) -> datetime:
    # Whole seconds: UTC offsets and their changes are whole seconds, so the clock's minute is the same.
    return datetime.fromtimestamp(at_ms // 1000, zone)


def _is_open(window: Window, zone: ZoneInfo, at_ms: int) -> bool:
    local = _local(zone, at_ms)
    return local.hour * 60 + local.minute in window


def _instant(wall: datetime, zone: ZoneInfo, fold: int) -> int | None:
    """The instant the clock of `zone` reads the naive `wall` (`fold` 1: its second occurrence, in a
    fall-back overlap); None when the clock skips it (a spring-forward gap)."""
    instant = int(wall.replace(tzinfo=zone, fold=fold).timestamp()) * 1000
    return instant if _local(zone, instant).replace(tzinfo=None) == wall else None


def _offset_change(zone: ZoneInfo, after_ms: int, until_ms: int) -> int | None:
    """The instant in (after_ms, until_ms] at which the UTC offset of `zone` changes, or None if it does not
    (the range is at most a few days: it holds one change at most). Bisects whole seconds."""
    before, low, high = _local(zone, after_ms).utcoffset(), after_ms // 1000, until_ms // 1000
    if _local(zone, until_ms).utcoffset() == before:
        return None
    while high - low > 1:
        middle = (low + high) // 2
        if _local(zone, middle * 1000).utcoffset() == before:
            low = middle
        else:
            high = middle
    return high * 1000


def _next_opening(window: Window, zone: ZoneInfo, at_ms: int) -> int:
    """The first instant after `at_ms` (when `zone` is shut) at which it is open: when its clock next reads
    the window's start, or earlier if a DST change first jumps the clock into the window."""
    today, start = _local(zone, at_ms).date(), time(*divmod(window.start, 60))
    reads_start = (
        instant
        for days in range(3)  # a clock reads a given time on at least one of any three days
        for fold in (0, 1)
        if (instant := _instant(datetime.combine(today + timedelta(days=days), start), zone, fold)) is not None
        and instant > at_ms
    )
    opening = next(reads_start)
    jump = _offset_change(zone, at_ms, opening)
    return jump if jump is not None and _is_open(window, zone, jump) else opening


def next_open_ms(window: Window, zones: Sequence[str], now_ms: int) -> int:
    """0 when `window` is open at `now_ms` in every one of `zones` (IANA names), else the first instant
    after it at which it is open in all of them; when it never is, the first zone's opening alone (module
    docstring). ValueError for an unknown zone name, or no zones."""
    if not zones:
        raise ValueError("no time zone given: a send window needs the recipient's zones")
    tzs = [_zone(name) for name in zones]
    at = now_ms
    while at - now_ms <= _HORIZON_MS:
        shut = [zone for zone in tzs if not _is_open(window, zone, at)]
        if not shut:
            return 0 if at == now_ms else at
        at = max(_next_opening(window, zone, at) for zone in shut)
    return 0 if _is_open(window, tzs[0], now_ms) else _next_opening(window, tzs[0], now_ms)
