"""Send windows: open from the start (inclusive) to the end (exclusive) of the recipient's local day, in every
zone of the number at once, across midnight and daylight-saving changes."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.policy.windows import Window, next_open_ms

DAY = Window.parse("09:00-21:00")
NIGHT = Window.parse("22:00-06:00")
MINUTE_MS = 60_000
HORIZON_MS = 2 * 86_400_000  # windows.py: how far ahead it looks for a meeting of the zones' windows


def at(local: str, zone: str) -> int:
    """Epoch ms of a local wall-clock time ("2026-01-05T08:59:59.999"); the first occurrence if repeated."""
    return int(datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(zone)).timestamp() * 1000)


def utc(instant: str) -> int:
    return at(instant, "UTC")


@pytest.mark.parametrize(
    ("text", "window"),
    [("09:00-21:00", Window(540, 1260)), ("22:00-06:00", Window(1320, 360)), (" 00:00-23:59 ", Window(0, 1439)),
     ("21:00-00:00", Window(1260, 0))],
)  # fmt: skip
def test_a_window_is_parsed_from_hh_mm_hh_mm(text: str, window: Window) -> None:
    assert Window.parse(text) == window


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("9-21", "expected HH:MM-HH:MM"),
        ("9:00-21:00", "expected HH:MM-HH:MM"),
        ("09:00 - 21:00", "expected HH:MM-HH:MM"),
        ("", "expected HH:MM-HH:MM"),
        ("25:00-06:00", "hour 25 is not 00..23"),
        ("09:00-24:00", r"hour 24 is not 00..23 \(write midnight as 00:00\)"),
        ("09:60-21:00", "minute 60 is not 00..59"),
        ("09:00-09:00", "window 09:00-09:00 is empty"),
    ],
)
def test_a_bad_window_is_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Window.parse(text)


@pytest.mark.parametrize(("start", "end"), [(-1, 60), (0, 1440), (1440, 0)])
def test_a_window_minute_must_be_a_minute_of_the_day(start: int, end: int) -> None:
    with pytest.raises(ValueError, match="is not a minute of the day"):
        Window(start, end)


def test_a_window_across_midnight_holds_the_night() -> None:
    assert [m in NIGHT for m in (1319, 1320, 1439, 0, 359, 360, 720)] == [False, True, True, True, True, False, False]
    assert [m in DAY for m in (539, 540, 1259, 1260)] == [False, True, True, False]


@pytest.mark.parametrize(
    ("zone", "day"),
    [
        ("Asia/Shanghai", "2026-01-05"),
        ("Europe/London", "2026-01-05"),  # GMT
        ("Europe/London", "2026-07-06"),  # BST
        ("Europe/London", "2026-03-29"),  # the day clocks go forward
        ("Europe/London", "2026-10-25"),  # the day clocks go back
        ("America/New_York", "2026-01-05"),
        ("America/New_York", "2026-03-08"),
        ("Asia/Kolkata", "2026-01-05"),  # +05:30
        ("Pacific/Chatham", "2026-01-05"),  # +13:45 (summer)
        ("Pacific/Chatham", "2026-07-06"),  # +12:45
    ],
)
def test_the_window_opens_at_its_start_and_shuts_at_its_end(zone: str, day: str) -> None:
    opens = at(f"{day}T09:00", zone)
    assert next_open_ms(DAY, [zone], at(f"{day}T08:59:59.999", zone)) == opens
    assert next_open_ms(DAY, [zone], at(f"{day}T00:00", zone)) == opens
    assert next_open_ms(DAY, [zone], opens) == 0  # now exactly at the opening
    assert next_open_ms(DAY, [zone], at(f"{day}T20:59:59", zone)) == 0
    assert next_open_ms(DAY, [zone], at(f"{day}T20:59:59.999", zone)) == 0
    tomorrow = next_open_ms(DAY, [zone], at(f"{day}T21:00", zone))
    assert datetime.fromtimestamp(tomorrow / 1000, ZoneInfo(zone)).strftime("%H:%M") == "09:00"
    assert 11 * 3600_000 <= tomorrow - at(f"{day}T21:00", zone) <= 13 * 3600_000  # 12 hours, give or take DST


def test_the_opening_across_a_dst_change_is_the_local_start() -> None:
    # London's clocks go forward at 01:00 UTC on 2026-03-29 and back at 01:00 UTC on 2026-10-25.
    assert next_open_ms(DAY, ["Europe/London"], utc("2026-03-28T21:00")) == utc("2026-03-29T08:00")
    assert next_open_ms(DAY, ["Europe/London"], utc("2026-10-24T21:00")) == utc("2026-10-25T09:00")
    assert next_open_ms(DAY, ["America/New_York"], utc("2026-03-08T02:00")) == utc("2026-03-08T13:00")


def test_a_start_in_a_spring_forward_gap_opens_when_the_gap_ends() -> None:
    # 01:30 London time does not happen on 2026-03-29: the clock reads 02:00 BST at 01:00 UTC.
    window = Window.parse("01:30-21:00")
    assert next_open_ms(window, ["Europe/London"], utc("2026-03-29T00:30")) == utc("2026-03-29T01:00")
    assert next_open_ms(window, ["Europe/London"], utc("2026-03-29T00:59:59.999")) == utc("2026-03-29T01:00")
    # New York skips 02:00-03:00 on 2026-03-08 (07:00 UTC).
    assert next_open_ms(Window.parse("02:30-21:00"), ["America/New_York"], utc("2026-03-08T05:00")) == utc(
        "2026-03-08T07:00"
    )


def test_a_window_wholly_inside_the_gap_stays_shut_that_day() -> None:
    window = Window.parse("01:10-01:50")
    assert next_open_ms(window, ["Europe/London"], utc("2026-03-29T00:00")) == at("2026-03-30T01:10", "Europe/London")


def test_a_start_in_a_fall_back_overlap_opens_at_its_first_occurrence() -> None:
    # 01:30 London time happens twice on 2026-10-25: at 00:30 UTC (BST) and at 01:30 UTC (GMT).
    window = Window.parse("01:30-21:00")
    assert next_open_ms(window, ["Europe/London"], utc("2026-10-25T00:00")) == utc("2026-10-25T00:30")
    # The clock going back from 02:00 BST to 01:00 GMT leaves the window for half an hour, as the recipient sees.
    assert next_open_ms(window, ["Europe/London"], utc("2026-10-25T01:00")) == utc("2026-10-25T01:30")


def test_a_clock_going_back_into_the_window_opens_it() -> None:
    # 00:30-01:30: shut at 01:40 BST (00:40 UTC), open again when the clock goes back to 01:00 GMT.
    window = Window.parse("00:30-01:30")
    assert next_open_ms(window, ["Europe/London"], utc("2026-10-25T00:40")) == utc("2026-10-25T01:00")


def test_a_window_across_midnight() -> None:
    zone = "Asia/Shanghai"
    assert next_open_ms(NIGHT, [zone], at("2026-01-05T21:59:59.999", zone)) == at("2026-01-05T22:00", zone)
    for open_at in ("2026-01-05T22:00", "2026-01-05T23:59", "2026-01-06T00:00", "2026-01-06T05:59:59.999"):
        assert next_open_ms(NIGHT, [zone], at(open_at, zone)) == 0
    assert next_open_ms(NIGHT, [zone], at("2026-01-06T06:00", zone)) == at("2026-01-06T22:00", zone)


def test_a_number_in_several_zones_waits_until_the_window_is_open_in_all() -> None:
    zones = ["America/New_York", "America/Los_Angeles"]
    assert next_open_ms(DAY, zones, at("2026-01-05T09:00", "America/New_York")) == at(
        "2026-01-05T09:00", "America/Los_Angeles"
    )
    assert next_open_ms(DAY, zones, at("2026-01-05T20:59", "America/New_York")) == 0
    assert next_open_ms(DAY, zones, at("2026-01-05T21:00", "America/New_York")) == at(
        "2026-01-06T09:00", "America/Los_Angeles"
    )
    # Kolkata is two and a half hours behind Shanghai: 09:00 there is 11:30 here.
    shanghai = "Asia/Shanghai"
    assert next_open_ms(DAY, [shanghai, "Asia/Kolkata"], at("2026-01-05T10:00", shanghai)) == at(
        "2026-01-05T11:30", shanghai
    )


def test_zones_whose_windows_never_meet_follow_the_first_zone() -> None:
    hour = Window.parse("09:00-10:00")  # UTC-10 and UTC+14 are a day apart on the clock: 24 hours
    now = utc("2026-01-05T12:00")
    honolulu, kiritimati = "Pacific/Honolulu", "Pacific/Kiritimati"
    assert next_open_ms(hour, [honolulu, kiritimati], now) == next_open_ms(hour, [honolulu], now) != 0
    assert next_open_ms(hour, [kiritimati, honolulu], now) == next_open_ms(hour, [kiritimati], now)
    assert next_open_ms(hour, [honolulu, kiritimati], at("2026-01-05T09:30", honolulu)) == 0


@pytest.mark.parametrize("zones", [["Mars/Olympus_Mons"], ["Asia/Shanghai", "utc"], [""], ["../etc/passwd"]])
def test_an_unknown_zone_is_refused(zones: list[str]) -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        next_open_ms(DAY, zones, 0)


def test_no_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="no time zone given"):
        next_open_ms(DAY, [], 0)


# --- the property: the answer is open in every zone, and no earlier minute is -------------------------------

ZONES = [
    "Asia/Shanghai", "Europe/London", "America/New_York", "America/Los_Angeles", "Asia/Kolkata", "Pacific/Chatham",
    "Australia/Lord_Howe", "America/St_Johns", "Asia/Kathmandu", "Pacific/Honolulu", "Pacific/Kiritimati", "UTC",
]  # fmt: skip
# Days around DST changes of the zones above in 2026, where the search is most likely to go wrong.
CHANGES = [utc(day) for day in ("2026-03-08", "2026-03-29", "2026-04-05", "2026-09-27", "2026-10-04",
                                "2026-10-25", "2026-11-01")]  # fmt: skip
MINUTES = st.integers(0, 1439) | st.sampled_from([0, 30, 60, 90, 120, 150, 165, 180, 540, 1260])
WINDOWS = st.tuples(MINUTES, MINUTES).filter(lambda pair: pair[0] != pair[1]).map(lambda pair: Window(*pair))
NOWS = st.integers(utc("2025-01-01T00:00"), utc("2027-12-31T00:00")) | st.builds(
    int.__add__, st.sampled_from(CHANGES), st.integers(-3 * 86_400_000, 3 * 86_400_000)
)


def _open_in_all(window: Window, zones: list[str], at_ms: int) -> bool:
    for zone in zones:
        local = datetime.fromtimestamp(at_ms // 1000, ZoneInfo(zone))
        minute = local.hour * 60 + local.minute
        if window.start < window.end:
            inside = window.start <= minute < window.end
        else:  # across midnight: shut from the end to the start
            inside = not window.end <= minute < window.start
        if not inside:
            return False
    return True


def _first_open(window: Window, zones: list[str], now_ms: int) -> int | None:
    """The first instant from `now_ms` to `now_ms + HORIZON_MS` open in every zone, minute by minute: every
    offset here is whole minutes, so whether a zone is open changes only on a minute of UTC."""
    if _open_in_all(window, zones, now_ms):
        return now_ms
    for minute in range(now_ms // MINUTE_MS + 1, (now_ms + HORIZON_MS) // MINUTE_MS + 1):
        if _open_in_all(window, zones, minute * MINUTE_MS):
            return minute * MINUTE_MS
    return None


@given(window=WINDOWS, zones=st.lists(st.sampled_from(ZONES), min_size=1, max_size=3, unique=True), now=NOWS)
def test_the_answer_is_the_first_instant_open_in_every_zone(window: Window, zones: list[str], now: int) -> None:
    answer = next_open_ms(window, zones, now)
    first = _first_open(window, zones, now)
    if first is None:  # the windows never meet: the first zone decides
        first = _first_open(window, zones[:1], now)
        assert first is not None
    assert answer == (0 if first == now else first)
