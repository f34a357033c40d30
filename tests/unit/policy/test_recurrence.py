"""Recurrence: a batch runs at its start, then every day, week or month at the same local wall-clock time,
across daylight-saving changes and short months, never after its end."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.policy.recurrence import Recurrence, check, next_run_ms, runs_between

MINUTE_MS = 60_000
DAY_MS = 86_400_000
NEW_YORK = "America/New_York"
LONDON = "Europe/London"
SHANGHAI = "Asia/Shanghai"


def at(local: str, zone: str, fold: int = 0) -> int:
    """Epoch ms of a local wall-clock time ("2026-03-08T03:00"); `fold` 1 for its second occurrence."""
    return int(datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(zone), fold=fold).timestamp() * 1000)


def utc(instant: str) -> int:
    return at(instant, "UTC")


def runs(r: Recurrence, count: int, after_ms: int | None = None) -> list[int]:
    start = r.start_ms - 1 if after_ms is None else after_ms
    return runs_between(r, start, 2**62, count)


# --- check ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("r", "words"),
    [
        (Recurrence("hourly", 0), "every 'hourly' is not one of once, daily, weekly, monthly"),
        (Recurrence("daily", 0, time_zone="Mars/Olympus"), "unknown time zone 'Mars/Olympus'"),
        (Recurrence("daily", 0, time_zone=""), "unknown time zone ''"),
        (Recurrence("daily", 1000, end_ms=999), "end_ms 999 is before start_ms 1000"),
        (Recurrence("daily", -1), "start_ms -1 is not an instant"),
    ],
)
def test_check_says_what_is_wrong(r: Recurrence, words: str) -> None:
    problem = check(r)
    assert problem is not None
    assert words in problem


@pytest.mark.parametrize(
    "r",
    [Recurrence("once", 1000), Recurrence("monthly", 1000, end_ms=1000, time_zone=SHANGHAI), Recurrence("weekly", 0)],
)
def test_check_passes_a_good_recurrence(r: Recurrence) -> None:
    assert check(r) is None


def test_next_run_of_a_bad_recurrence_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        next_run_ms(Recurrence("daily", 0, time_zone="Nowhere/Else"), 0)


# --- once -------------------------------------------------------------------------------------------------


def test_once_runs_only_at_its_start() -> None:
    r = Recurrence("once", utc("2026-05-01T09:00"))
    assert next_run_ms(r, 0) == r.start_ms
    assert next_run_ms(r, r.start_ms - 1) == r.start_ms
    assert next_run_ms(r, r.start_ms) is None
    assert next_run_ms(r, r.start_ms + DAY_MS) is None


# --- daily and daylight saving ----------------------------------------------------------------------------


def test_daily_keeps_london_wall_clock_time_across_both_changes() -> None:
    # 2026: clocks go forward at 01:00 GMT on 29 March, back at 02:00 BST on 25 October.
    spring = Recurrence("daily", at("2026-03-28T09:00", LONDON), time_zone=LONDON)
    assert runs(spring, 3) == [utc("2026-03-28T09:00"), utc("2026-03-29T08:00"), utc("2026-03-30T08:00")]
    autumn = Recurrence("daily", at("2026-10-24T09:00", LONDON), time_zone=LONDON)
    assert runs(autumn, 3) == [utc("2026-10-24T08:00"), utc("2026-10-25T09:00"), utc("2026-10-26T09:00")]


def test_a_time_london_skips_runs_when_the_clock_shows_0200() -> None:
    r = Recurrence("daily", at("2026-03-28T01:30", LONDON), time_zone=LONDON)
    assert runs(r, 3) == [utc("2026-03-28T01:30"), utc("2026-03-29T01:00"), utc("2026-03-30T00:30")]
    assert datetime.fromtimestamp(runs(r, 2)[1] / 1000, ZoneInfo(LONDON)).strftime("%H:%M") == "02:00"


def test_a_time_new_york_skips_runs_at_0300_then_back_at_0230() -> None:
    # 2026-03-08: New York's clocks jump from 02:00 EST to 03:00 EDT (07:00 UTC).
    r = Recurrence("daily", at("2026-03-07T02:30", NEW_YORK), time_zone=NEW_YORK)
    assert runs(r, 3) == [utc("2026-03-07T07:30"), utc("2026-03-08T07:00"), utc("2026-03-09T06:30")]
    assert next_run_ms(r, utc("2026-03-08T06:59:59.999")) == utc("2026-03-08T07:00")
    assert next_run_ms(r, utc("2026-03-08T07:00")) == utc("2026-03-09T06:30")


def test_a_time_new_york_shows_twice_runs_once_at_its_first_occurrence() -> None:
    # 2026-11-01: New York's clocks go from 02:00 EDT back to 01:00 EST, so 01:30 comes at 05:30 and 06:30 UTC.
    r = Recurrence("daily", at("2026-10-31T01:30", NEW_YORK), time_zone=NEW_YORK)
    assert runs(r, 3) == [utc("2026-10-31T05:30"), utc("2026-11-01T05:30"), utc("2026-11-02T06:30")]
    assert next_run_ms(r, utc("2026-11-01T05:30")) == utc("2026-11-02T06:30")


def test_a_start_at_the_second_occurrence_runs_there_then_at_the_first_ones() -> None:
    start = at("2026-11-01T01:30", NEW_YORK, fold=1)
    assert start == utc("2026-11-01T06:30")
    r = Recurrence("daily", start, time_zone=NEW_YORK)
    assert runs(r, 2) == [start, utc("2026-11-02T06:30")]


def test_shanghai_has_no_daylight_saving() -> None:
    r = Recurrence("daily", at("2026-03-01T08:00", SHANGHAI), time_zone=SHANGHAI)
    assert runs(r, 3) == [utc("2026-03-01T00:00"), utc("2026-03-02T00:00"), utc("2026-03-03T00:00")]
    assert next_run_ms(r, at("2026-07-04T12:00", SHANGHAI)) == utc("2026-07-05T00:00")


def test_milliseconds_of_the_start_are_kept() -> None:
    r = Recurrence("daily", utc("2026-01-01T10:00:00.123"))
    assert next_run_ms(r, r.start_ms) == utc("2026-01-02T10:00:00.123")


# --- weekly and monthly -----------------------------------------------------------------------------------


def test_weekly_runs_on_the_starts_weekday() -> None:
    start = at("2026-01-05T10:00", SHANGHAI)  # a Monday
    r = Recurrence("weekly", start, time_zone=SHANGHAI)
    assert next_run_ms(r, start) == at("2026-01-12T10:00", SHANGHAI)
    assert next_run_ms(r, at("2026-01-13T10:00", SHANGHAI)) == at("2026-01-19T10:00", SHANGHAI)
    assert next_run_ms(r, at("2026-01-19T09:59:59.999", SHANGHAI)) == at("2026-01-19T10:00", SHANGHAI)


def test_weekly_across_a_dst_change_keeps_the_local_time() -> None:
    r = Recurrence("weekly", at("2026-03-02T09:00", NEW_YORK), time_zone=NEW_YORK)
    assert runs(r, 3) == [utc("2026-03-02T14:00"), utc("2026-03-09T13:00"), utc("2026-03-16T13:00")]


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        ("2026-01-31", ["2026-01-31", "2026-02-28", "2026-03-31", "2026-04-30", "2026-05-31"]),
        ("2028-01-31", ["2028-01-31", "2028-02-29", "2028-03-31", "2028-04-30", "2028-05-31"]),
        ("2026-01-29", ["2026-01-29", "2026-02-28", "2026-03-29", "2026-04-29", "2026-05-29"]),
        ("2024-01-29", ["2024-01-29", "2024-02-29", "2024-03-29", "2024-04-29", "2024-05-29"]),
        ("2026-01-30", ["2026-01-30", "2026-02-28", "2026-03-30", "2026-04-30", "2026-05-30"]),
        ("2026-11-30", ["2026-11-30", "2026-12-30", "2027-01-30", "2027-02-28", "2027-03-30"]),
    ],
)
def test_monthly_on_a_late_day_runs_on_the_last_day_of_short_months(start: str, expected: list[str]) -> None:
    r = Recurrence("monthly", at(f"{start}T10:00", SHANGHAI), time_zone=SHANGHAI)
    assert runs(r, 5) == [at(f"{day}T10:00", SHANGHAI) for day in expected]


def test_monthly_keeps_the_local_time_across_dst() -> None:
    r = Recurrence("monthly", at("2026-02-15T09:00", LONDON), time_zone=LONDON)
    assert runs(r, 3) == [utc("2026-02-15T09:00"), utc("2026-03-15T09:00"), utc("2026-04-15T08:00")]


# --- end --------------------------------------------------------------------------------------------------


def test_a_run_exactly_at_the_end_runs_and_none_comes_after() -> None:
    start = utc("2026-01-01T10:00")
    r = Recurrence("daily", start, end_ms=start + 2 * DAY_MS)
    assert runs(r, 10) == [start, start + DAY_MS, start + 2 * DAY_MS]
    assert next_run_ms(r, start + 2 * DAY_MS) is None


def test_an_end_just_before_a_run_excludes_it() -> None:
    start = utc("2026-01-01T10:00")
    r = Recurrence("daily", start, end_ms=start + 2 * DAY_MS - 1)
    assert runs(r, 10) == [start, start + DAY_MS]


def test_an_end_equal_to_the_start_runs_once() -> None:
    start = utc("2026-01-01T10:00")
    assert runs(Recurrence("weekly", start, end_ms=start), 10) == [start]
    assert runs(Recurrence("once", start, end_ms=start), 10) == [start]


# --- far from the start -----------------------------------------------------------------------------------


def test_after_far_in_the_future_is_computed_from_the_calendar() -> None:
    r = Recurrence("daily", at("2026-03-07T02:30", NEW_YORK), time_zone=NEW_YORK)
    began = time.perf_counter()
    for year in range(2100, 2400):
        assert next_run_ms(r, at(f"{year}-06-01T12:00", NEW_YORK)) == at(f"{year}-06-02T02:30", NEW_YORK)
    assert time.perf_counter() - began < 1.0  # 300 calls; stepping day by day would take minutes


def test_monthly_far_in_the_future_lands_on_leap_day() -> None:
    r = Recurrence("monthly", at("2026-01-31T10:00", SHANGHAI), time_zone=SHANGHAI)
    assert next_run_ms(r, at("2400-02-15T00:00", SHANGHAI)) == at("2400-02-29T10:00", SHANGHAI)


def test_no_run_past_the_year_9999() -> None:
    r = Recurrence("daily", utc("2026-01-01T10:00"))
    assert next_run_ms(r, utc("9999-12-31T12:00")) is None


# --- runs_between -----------------------------------------------------------------------------------------


def test_runs_between_is_after_exclusive_until_inclusive_and_limited() -> None:
    start = utc("2026-01-01T10:00")
    r = Recurrence("daily", start)
    assert runs_between(r, start, start + 3 * DAY_MS, 10) == [start + DAY_MS, start + 2 * DAY_MS, start + 3 * DAY_MS]
    assert runs_between(r, start - 1, start + 3 * DAY_MS, 2) == [start, start + DAY_MS]
    assert runs_between(r, start - 1, start + 3 * DAY_MS, 0) == []
    assert runs_between(r, start, start + DAY_MS - 1, 10) == []


def _reference(start: datetime, after_ms: int) -> int:
    """The first daily run after `after_ms`, stepping day by day from `start` and minute by minute through a
    gap: slow and independent of the module's arithmetic."""
    zone = start.tzinfo
    assert isinstance(zone, ZoneInfo)
    day = 0
    while True:
        wall = start.replace(tzinfo=None) + timedelta(days=day)
        instant = int(wall.replace(tzinfo=zone, fold=0).timestamp() * 1000)
        if datetime.fromtimestamp(instant / 1000, zone).replace(tzinfo=None) != wall:  # skipped: walk on
            instant = int(wall.replace(tzinfo=zone, fold=1).timestamp() * 1000)
            while datetime.fromtimestamp(instant / 1000, zone).replace(tzinfo=None) < wall:
                instant += MINUTE_MS
        if day == 0:
            instant = int(start.timestamp() * 1000)
        if instant > after_ms:
            return instant
        day += 1


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from([NEW_YORK, LONDON, "Australia/Lord_Howe", SHANGHAI]),
    st.integers(0, 365 * 2),
    st.integers(0, 24 * 60 - 1),
    st.integers(0, 400 * DAY_MS),
)
def test_daily_matches_stepping_day_by_day(zone: str, day: int, minute: int, later_ms: int) -> None:
    start = (datetime(2025, 1, 1) + timedelta(days=day, minutes=minute)).replace(tzinfo=ZoneInfo(zone))
    r = Recurrence("daily", int(start.timestamp() * 1000), time_zone=zone)
    after = r.start_ms + later_ms
    assert next_run_ms(r, after) == _reference(datetime.fromtimestamp(r.start_ms / 1000, ZoneInfo(zone)), after)
