"""SLA arithmetic: every expected instant below was worked out by hand, shown in a comment.

Berlin is UTC+1 (CET) in winter and UTC+2 (CEST) in summer; in 2026 the clocks go
forward on Sunday 29 March and back on Sunday 25 October. Handy weekdays:
2026-06-05, 2026-03-27, 2026-10-23 and 2026-12-25 are Fridays; 2026-06-01 a Monday.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from responders.sla import (
    DEFAULT_POLICIES,
    DEFAULT_RULES,
    BusinessHours,
    Calendar,
    add_working_time,
    due_time,
    select_policy,
    warning_time,
    working_time_between,
)

BERLIN = ZoneInfo("Europe/Berlin")
H = timedelta(hours=1)
NINE_TO_SIX = ((time(9), time(18)),)
ALWAYS = Calendar()


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


def office(*holidays: date) -> Calendar:
    """Monday to Friday, 09:00-18:00 Berlin time: 9 working hours a day."""
    weekly = {day: NINE_TO_SIX for day in range(5)}
    return Calendar(BusinessHours("Europe/Berlin", weekly, frozenset(holidays)))


# --- 24x7 -------------------------------------------------------------------------

def test_24x7_24h_from_friday_10_is_saturday_10() -> None:
    # No calendar: plain elapsed time.
    assert add_working_time(utc(2026, 6, 5, 10), 24 * H, ALWAYS) == utc(2026, 6, 6, 10)


def test_result_is_utc_for_a_local_start() -> None:
    # 12:00 CEST is 10:00 UTC; +1 h is 11:00 UTC, given back in UTC.
    end = add_working_time(berlin(2026, 6, 5, 12), H, ALWAYS)
    assert end == utc(2026, 6, 5, 11) and end.tzinfo is UTC


# --- business hours ---------------------------------------------------------------

def test_business_24h_from_friday_15_lands_on_wednesday_noon() -> None:
    # Fri 15-18 = 3 h (21 left), Mon 9 h (12 left), Tue 9 h (3 left),
    # Wed 09:00 + 3 h = 12:00 CEST = 10:00 UTC.
    end = add_working_time(berlin(2026, 6, 5, 15), 24 * H, office())
    assert end == berlin(2026, 6, 10, 12) == utc(2026, 6, 10, 10)


def test_business_across_weekend_friday_17_plus_2h_is_monday_10() -> None:
    # Fri 17-18 = 1 h, the weekend is closed, Mon 09:00 + 1 h = 10:00 CEST = 08:00 UTC.
    assert add_working_time(berlin(2026, 6, 5, 17), 2 * H, office()) == utc(2026, 6, 8, 8)


def test_business_start_on_saturday_counts_from_monday_nine() -> None:
    # Nothing counts until Mon 09:00 CEST; + 3 h = 12:00 CEST = 10:00 UTC.
    assert add_working_time(berlin(2026, 6, 6, 11), 3 * H, office()) == utc(2026, 6, 8, 10)


def test_business_due_exactly_at_closing_stays_on_that_day() -> None:
    # Fri 15-18 is exactly 3 h: due Fri 18:00 CEST, not Mon 09:00.
    assert add_working_time(berlin(2026, 6, 5, 15), 3 * H, office()) == berlin(2026, 6, 5, 18)


def test_business_listed_monday_holiday_is_skipped() -> None:
    # As the Wednesday case, but Mon 8 June is a holiday: Fri 3 h (21 left), Tue 9 h
    # (12 left), Wed 9 h (3 left), Thu 09:00 + 3 h = 12:00 CEST = 10:00 UTC.
    end = add_working_time(berlin(2026, 6, 5, 15), 24 * H, office(date(2026, 6, 8)))
    assert end == utc(2026, 6, 11, 10)


def test_business_german_christmas_from_holidays_package_is_skipped() -> None:
    hours = office().hours
    assert hours is not None
    calendar = Calendar.with_country_holidays(hours, "DE", [2026, 2027])
    assert calendar.hours is not None
    assert {date(2026, 12, 25), date(2026, 12, 26)} <= calendar.hours.holidays
    # Thu 24 Dec (a working day) 15-18 = 3 h (6 left); Fri 25 is Christmas, then the
    # weekend; Mon 28 09:00 + 6 h = 15:00 CET = 14:00 UTC.
    start = berlin(2026, 12, 24, 15)
    assert add_working_time(start, 9 * H, calendar) == utc(2026, 12, 28, 14)
    # Without the holidays the same clock ends on Fri 25 at 15:00 CET.
    assert add_working_time(start, 9 * H, office()) == utc(2026, 12, 25, 14)


def test_business_lunch_break_and_midnight_end() -> None:
    # Mon 09-12 and 13-18, Sat 20:00 to midnight. From Mon 11:00 CEST, 2 h: 11-12 (1 h),
    # lunch, 13:00 + 1 h = 14:00 CEST = 12:00 UTC.
    weekly = {0: ((time(13), time(18)), (time(9), time(12))), 5: ((time(20), time(0)),)}
    calendar = Calendar(BusinessHours("Europe/Berlin", weekly))
    assert add_working_time(berlin(2026, 6, 1, 11), 2 * H, calendar) == utc(2026, 6, 1, 12)
    # Sat 6 June 20:00 to Sun 00:00 CEST is 4 h; all of it ends at midnight CEST = 22:00 UTC.
    assert add_working_time(berlin(2026, 6, 6, 20), 4 * H, calendar) == utc(2026, 6, 6, 22)


# --- DST ----------------------------------------------------------------------------

@pytest.mark.parametrize("start, expected", [
    # Sat 28 March 20:00 CET = 19:00 UTC; 24 real hours later is Sun 19:00 UTC, which
    # reads 21:00 CEST: the wall clock moved 25 h because an hour was skipped.
    (berlin(2026, 3, 28, 20), utc(2026, 3, 29, 19)),
    # Sat 24 October 20:00 CEST = 18:00 UTC; 24 real hours later is Sun 18:00 UTC,
    # 19:00 CET: the wall clock moved 23 h because an hour repeated.
    (berlin(2026, 10, 24, 20), utc(2026, 10, 25, 18)),
])
def test_dst_24x7_clock_ends_exactly_24_real_hours_later(start: datetime,
                                                         expected: datetime) -> None:
    # Both the UTC clock and a round-the-clock Berlin calendar (all-day local days of
    # 23 and 25 hours) count real time.
    berlin_24x7 = Calendar(BusinessHours("Europe/Berlin", {}))
    assert add_working_time(start, 24 * H, ALWAYS) == expected
    assert add_working_time(start, 24 * H, berlin_24x7) == expected


@pytest.mark.parametrize("start, expected", [
    # Fri 27 March 15:00 CET: 3 h to closing (6 left); clocks go forward on Sunday;
    # Mon 30 March 09:00 + 6 h = 15:00 CEST = 13:00 UTC (14:00 UTC would be the bug of
    # keeping Friday's offset).
    (berlin(2026, 3, 27, 15), utc(2026, 3, 30, 13)),
    # Fri 23 October 15:00 CEST: 3 h (6 left); clocks go back on Sunday;
    # Mon 26 October 15:00 CET = 14:00 UTC.
    (berlin(2026, 10, 23, 15), utc(2026, 10, 26, 14)),
])
def test_dst_business_clock_from_friday_ends_monday_15_local(start: datetime,
                                                             expected: datetime) -> None:
    end = add_working_time(start, 9 * H, office())
    assert end == expected
    assert end.astimezone(BERLIN).time() == time(15)


@pytest.mark.parametrize("day", [date(2026, 3, 29), date(2026, 10, 25)])
def test_dst_nine_to_six_on_the_change_day_is_nine_hours(day: date) -> None:
    # A Sunday 09:00-18:00 day on the DST Sunday: the change happens at night.
    calendar = Calendar(BusinessHours("Europe/Berlin", {6: NINE_TO_SIX}))
    start = datetime.combine(day, time(0), tzinfo=BERLIN)
    assert working_time_between(start, start + 24 * H, calendar) == 9 * H


# --- pauses -------------------------------------------------------------------------

def test_pause_of_two_hours_moves_24x7_due_by_two_hours() -> None:
    # Mon 10:00 + 24 h = Tue 10:00; paused 12:00-14:00, so Tue 12:00.
    pauses = [(utc(2026, 6, 1, 12), utc(2026, 6, 1, 14))]
    assert due_time(utc(2026, 6, 1, 10), 24 * H, ALWAYS, pauses) == utc(2026, 6, 2, 12)


def test_pause_over_weekend_moves_business_due_by_covered_working_time_only() -> None:
    # Unpaused: Wed 10 June 12:00 CEST (see the Wednesday case). Paused Fri 17:00 to
    # Mon 10:00 CEST: 65 real hours, but only Fri 17-18 and Mon 09-10 are working
    # time, so the due time moves 2 h: Wed 14:00 CEST = 12:00 UTC.
    pauses = [(berlin(2026, 6, 5, 17), berlin(2026, 6, 8, 10))]
    assert due_time(berlin(2026, 6, 5, 15), 24 * H, office(), pauses) == utc(2026, 6, 10, 12)


def test_open_pause_stops_the_clock_so_no_due_time() -> None:
    pauses = [(utc(2026, 6, 1, 11), None)]
    assert due_time(utc(2026, 6, 1, 10), 24 * H, ALWAYS, pauses) is None
    assert warning_time(utc(2026, 6, 1, 10), 24 * H, ALWAYS, pauses, 0.8) is None


def test_open_pause_after_the_due_time_keeps_the_breach() -> None:
    # Due Tue 10:00; a pause opened Wed cannot undo the breach of Tuesday.
    pauses = [(utc(2026, 6, 3, 9), None)]
    assert due_time(utc(2026, 6, 1, 10), 24 * H, ALWAYS, pauses) == utc(2026, 6, 2, 10)


def test_pause_and_resume_twice_adds_both_pauses() -> None:
    # Paused 11:00-12:30 (1.5 h) and 15:00-16:00 (1 h), given out of order:
    # Tue 10:00 + 2.5 h = Tue 12:30.
    pauses = [(utc(2026, 6, 1, 15), utc(2026, 6, 1, 16)),
              (utc(2026, 6, 1, 11), utc(2026, 6, 1, 12, 30))]
    assert due_time(utc(2026, 6, 1, 10), 24 * H, ALWAYS, pauses) == utc(2026, 6, 2, 12, 30)


def test_overlapping_pauses_count_once() -> None:
    # 11:00-13:00 and 12:00-14:00 cover 11:00-14:00: 3 h, so Tue 13:00.
    pauses = [(utc(2026, 6, 1, 11), utc(2026, 6, 1, 13)),
              (utc(2026, 6, 1, 12), utc(2026, 6, 1, 14))]
    assert due_time(utc(2026, 6, 1, 10), 24 * H, ALWAYS, pauses) == utc(2026, 6, 2, 13)


def test_pauses_subtract_from_working_time_between() -> None:
    # Mon 10:00 to Tue 10:00 is 24 h; minus a 2 h pause = 22 h.
    pauses = [(utc(2026, 6, 1, 12), utc(2026, 6, 1, 14))]
    assert working_time_between(utc(2026, 6, 1, 10), utc(2026, 6, 2, 10), ALWAYS,
                                pauses) == 22 * H


# --- warning ------------------------------------------------------------------------

def test_warning_at_80_percent_of_24h_is_19h12m_after_start() -> None:
    # 0.8 * 24 h = 19.2 h = 19 h 12 min: Mon 10:00 + 19:12 = Tue 05:12.
    assert warning_time(utc(2026, 6, 1, 10), 24 * H, ALWAYS, (), 0.8) == utc(2026, 6, 2, 5, 12)


# --- policies -----------------------------------------------------------------------

def test_select_policy_self_exclusion_is_urgent_one_hour() -> None:
    policy = select_policy("self_exclusion", "normal", DEFAULT_POLICIES, DEFAULT_RULES)
    assert policy.name == "urgent" and policy.first_response == H


def test_select_policy_refund_normal_is_default() -> None:
    policy = select_policy("refund", "normal", DEFAULT_POLICIES, DEFAULT_RULES)
    assert policy.name == "default" and policy.first_response == 24 * H
    assert policy.resolution == 72 * H


def test_select_policy_appeal_is_appeal() -> None:
    policy = select_policy("appeal", "normal", DEFAULT_POLICIES, DEFAULT_RULES)
    assert policy.name == "appeal" and policy.resolution == timedelta(days=14)


def test_select_policy_unknown_category_is_default() -> None:
    policy = select_policy("no-such-thing", "low", DEFAULT_POLICIES, DEFAULT_RULES)
    assert policy.name == "default"
    assert select_policy("x", "low", DEFAULT_POLICIES, ()).name == "default"


def test_select_policy_urgent_priority_is_urgent() -> None:
    assert select_policy("refund", "urgent", DEFAULT_POLICIES, DEFAULT_RULES).name == "urgent"


def test_select_policy_rule_naming_missing_policy_raises() -> None:
    with pytest.raises(KeyError, match="nonexistent"):
        select_policy("refund", "normal", DEFAULT_POLICIES, ((None, None, "nonexistent"),))


# --- inverse property -----------------------------------------------------------------

@pytest.mark.parametrize("calendar", [
    ALWAYS,
    office(date(2026, 5, 1), date(2026, 12, 25)),
    Calendar(BusinessHours("Europe/Moscow", {
        0: ((time(9), time(13)), (time(14), time(18))),
        2: ((time(22), time(0)),),
        5: ((time(10), time(14)),),
    })),
], ids=["24x7", "berlin-office", "moscow-split"])
def test_working_time_between_inverts_add_working_time(calendar: Calendar) -> None:
    rng = random.Random(7)
    for _ in range(200):
        start = utc(2026, 1, 1) + timedelta(seconds=rng.randrange(365 * 24 * 3600))
        amount = timedelta(seconds=rng.randrange(200 * 3600))
        end = add_working_time(start, amount, calendar)
        assert end >= start
        assert working_time_between(start, end, calendar) == amount
        # And the other way: the working time up to any instant, added back, reaches
        # no later than that instant (earlier when it lies outside working hours).
        later = start + timedelta(seconds=rng.randrange(30 * 24 * 3600))
        elapsed = working_time_between(start, later, calendar)
        assert add_working_time(start, elapsed, calendar) <= later


# --- errors -------------------------------------------------------------------------

def test_calendar_without_working_time_raises_value_error() -> None:
    # Only Mondays work, and every Monday for six years is a holiday.
    mondays = frozenset(date(2026, 6, 1) + timedelta(weeks=w) for w in range(6 * 53))
    calendar = Calendar(BusinessHours("Europe/Berlin", {0: NINE_TO_SIX}, mondays))
    with pytest.raises(ValueError, match="no working time"):
        add_working_time(utc(2026, 6, 1), H, calendar)


@pytest.mark.parametrize("weekly, message", [
    ({0: ()}, "no working interval"),
    ({7: NINE_TO_SIX}, "weekday"),
    ({0: ((time(18), time(9)),)}, "ends before"),
    ({0: ((time(9), time(13)), (time(12), time(18)))}, "overlap"),
])
def test_bad_business_hours_raise_value_error(weekly: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BusinessHours("Europe/Berlin", weekly)


def test_unknown_time_zone_and_naive_datetimes_raise_value_error() -> None:
    with pytest.raises(ValueError, match="time zone"):
        BusinessHours("Mars/Olympus_Mons", {0: NINE_TO_SIX})
    with pytest.raises(ValueError, match="timezone-aware"):
        add_working_time(datetime(2026, 6, 1, 10), H, ALWAYS)


def test_long_business_amount_walks_by_day() -> None:
    # 72 working hours = 8 full office days: from Mon 1 June 09:00 CEST, Mon-Fri is 5
    # days (45 h), the next Mon-Wed 3 days (27 h): Wed 10 June 18:00 CEST = 16:00 UTC.
    assert add_working_time(berlin(2026, 6, 1, 9), 72 * H, office()) == utc(2026, 6, 10, 16)
