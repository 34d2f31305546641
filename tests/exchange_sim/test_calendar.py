"""Calendar items and recurrence: CalendarView expansion, exceptions, DST, all-day, patterns."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from exchangelib import CalendarItem, EWSDate, EWSDateTime, EWSTimeZone
from exchangelib.recurrence import (
    AbsoluteMonthlyPattern,
    DailyPattern,
    EndDatePattern,
    NoEndPattern,
    NumberedPattern,
    Recurrence,
    RelativeMonthlyPattern,
    RelativeYearlyPattern,
    WeeklyPattern,
)
from exchangelib.winzone import MS_TIMEZONE_TO_IANA_MAP

from exchange_sim import Simulator
from exchange_sim.calendar import WINDOWS_TO_IANA, expand_view

BERLIN = EWSTimeZone("Europe/Berlin")
UTC = EWSTimeZone("UTC")


def berlin(*args: int) -> EWSDateTime:
    return EWSDateTime(*args, tzinfo=BERLIN)


def weekly_series(account, start: EWSDateTime, count: int = 5) -> CalendarItem:
    item = CalendarItem(
        account=account,
        folder=account.calendar,
        subject="Jour fixe",
        start=start,
        end=start + dt.timedelta(hours=1),
        recurrence=Recurrence(pattern=WeeklyPattern(interval=1, weekdays=[start.isoweekday()]), start=start.date(), number=count),
    )
    item.save()
    return account.calendar.get(id=item.id)


def test_it_expands_a_weekly_series_across_dst_with_a_moved_and_a_deleted_occurrence(account):
    # Europe/Berlin leaves winter time on 28 March 2027: the series stays at 10:00 local time
    master = weekly_series(account, berlin(2027, 3, 15, 10, 0))
    moved = master.occurrence(3)
    moved.refresh()
    moved.start, moved.end = berlin(2027, 3, 29, 14, 0), berlin(2027, 3, 29, 15, 0)
    moved.save(update_fields=["start", "end"])
    gone = master.occurrence(4)
    gone.refresh()
    gone.delete()

    view = list(account.calendar.view(start=berlin(2027, 3, 1), end=berlin(2027, 5, 1)))

    assert [(v.type, v.start.astimezone(BERLIN).replace(tzinfo=None)) for v in view] == [
        ("Occurrence", dt.datetime(2027, 3, 15, 10, 0)),
        ("Occurrence", dt.datetime(2027, 3, 22, 10, 0)),
        ("Exception", dt.datetime(2027, 3, 29, 14, 0)),
        ("Occurrence", dt.datetime(2027, 4, 12, 10, 0)),
    ]
    assert {v.uid for v in view} == {master.uid}
    assert view[0].start.astimezone(UTC).hour == 9 and view[3].start.astimezone(UTC).hour == 8
    master = account.calendar.get(id=master.id)
    assert [o.original_start.astimezone(BERLIN).day for o in master.modified_occurrences] == [29]
    assert [d.start.astimezone(BERLIN).day for d in master.deleted_occurrences] == [5]


def test_the_master_reports_type_first_and_last_occurrence(account):
    master = weekly_series(account, berlin(2027, 1, 4, 9, 0), count=3)
    assert master.type == "RecurringMaster"
    assert master.first_occurrence.start == berlin(2027, 1, 4, 9, 0)
    assert master.last_occurrence.start == berlin(2027, 1, 18, 9, 0)
    assert isinstance(master.recurrence.boundary, NumberedPattern)


def test_an_occurrence_links_back_to_its_master(account):
    master = weekly_series(account, berlin(2027, 1, 4, 9, 0), count=3)
    occurrence = master.occurrence(2)
    occurrence.refresh()
    assert occurrence.type == "Occurrence"
    linked = occurrence.recurring_master()
    linked.refresh()
    assert (linked.id, linked.type) == (master.id, "RecurringMaster")


@pytest.mark.parametrize(
    ("pattern", "boundary_kwargs", "expected_days"),
    [
        (DailyPattern(interval=2), {"number": 3}, ["2027-01-04", "2027-01-06", "2027-01-08"]),
        (AbsoluteMonthlyPattern(interval=1, day_of_month=4), {"number": 3}, ["2027-01-04", "2027-02-04", "2027-03-04"]),
        (
            RelativeMonthlyPattern(interval=1, weekday=1, week_number=1),
            {"end": EWSDate(2027, 3, 31)},
            ["2027-01-04", "2027-02-01", "2027-03-01"],
        ),
        (RelativeYearlyPattern(weekday=1, week_number=1, month=1), {"number": 2}, ["2027-01-04", "2028-01-03"]),
        (WeeklyPattern(interval=1, weekdays=[1, 3]), {"number": 4}, ["2027-01-04", "2027-01-06", "2027-01-11", "2027-01-13"]),
    ],
)
def test_it_expands_daily_monthly_yearly_and_weekly_patterns(account, pattern, boundary_kwargs, expected_days):
    start = berlin(2027, 1, 4, 9, 0)
    item = CalendarItem(
        account=account,
        folder=account.calendar,
        subject="Series",
        start=start,
        end=start + dt.timedelta(minutes=30),
        recurrence=Recurrence(pattern=pattern, start=start.date(), **boundary_kwargs),
    )
    item.save()
    view = account.calendar.view(start=berlin(2027, 1, 1), end=berlin(2028, 12, 31))
    assert [v.start.astimezone(BERLIN).date().isoformat() for v in view] == expected_days


def test_a_series_without_end_is_expanded_as_far_as_the_view_reaches(account):
    start = berlin(2027, 1, 4, 9, 0)
    CalendarItem(
        account=account,
        folder=account.calendar,
        subject="Forever",
        start=start,
        end=start + dt.timedelta(minutes=30),
        recurrence=Recurrence(pattern=DailyPattern(interval=1), boundary=NoEndPattern(start=start.date())),
    ).save()
    assert len(list(account.calendar.view(start=berlin(2027, 6, 1), end=berlin(2027, 6, 11)))) == 10


def test_an_end_dated_series_stops_at_its_end_date(account):
    start = berlin(2027, 1, 4, 9, 0)
    CalendarItem(
        account=account,
        folder=account.calendar,
        subject="Until",
        start=start,
        end=start + dt.timedelta(minutes=30),
        recurrence=Recurrence(pattern=DailyPattern(interval=1), boundary=EndDatePattern(start=start.date(), end=EWSDate(2027, 1, 6))),
    ).save()
    assert len(list(account.calendar.view(start=berlin(2027, 1, 1), end=berlin(2027, 2, 1)))) == 3


def test_all_day_and_multi_day_events_keep_their_shape(account):
    CalendarItem(account=account, folder=account.calendar, subject="Fair", start=EWSDate(2027, 4, 1), end=EWSDate(2027, 4, 3), is_all_day=True).save()
    CalendarItem(account=account, folder=account.calendar, subject="Trip", start=berlin(2027, 4, 5, 18), end=berlin(2027, 4, 7, 12)).save()
    fair, trip = sorted(account.calendar.all(), key=lambda i: i.subject)
    assert (fair.is_all_day, fair.start, fair.end) == (True, EWSDate(2027, 4, 1), EWSDate(2027, 4, 3))
    assert (trip.start, trip.end) == (berlin(2027, 4, 5, 18), berlin(2027, 4, 7, 12))
    assert [v.subject for v in account.calendar.view(start=berlin(2027, 4, 6), end=berlin(2027, 4, 6, 12))] == ["Trip"]


def test_it_keeps_time_zones_sensitivity_reminder_location_and_text_body(account, exchange_sim: Simulator):
    item = CalendarItem(
        account=account,
        folder=account.calendar,
        subject="Private lunch",
        start=EWSDateTime(2027, 4, 5, 12, tzinfo=EWSTimeZone("America/New_York")),
        end=EWSDateTime(2027, 4, 5, 13, tzinfo=EWSTimeZone("America/New_York")),
        sensitivity="Private",
        reminder_is_set=True,
        reminder_minutes_before_start=30,
        location="Diner",
        body="see you\nthere",
    )
    item.save()
    stored = exchange_sim.user("alice@contoso.example").get(item.id)
    assert stored.props["StartTimeZone"] == "Eastern Standard Time"
    fetched = account.calendar.get(id=item.id)
    assert (fetched.sensitivity, fetched.reminder_minutes_before_start, fetched.location) == ("Private", 30, "Diner")
    assert fetched.start == EWSDateTime(2027, 4, 5, 16, tzinfo=UTC)
    assert fetched.body == "see you\nthere"  # a text body stays text
    assert fetched.uid


def test_dismissing_a_reminder_moves_the_change_key(account, exchange_sim: Simulator):
    alice = exchange_sim.user("alice@contoso.example")
    event = alice.create_event("Call", dt.datetime(2027, 1, 4, 9, tzinfo=dt.UTC), dt.datetime(2027, 1, 4, 10, tzinfo=dt.UTC))
    before = account.calendar.get(id=event.id).changekey
    alice.dismiss_reminder(event)
    assert account.calendar.get(id=event.id).changekey != before


def test_the_user_side_view_matches_the_ews_view(account, exchange_sim: Simulator):
    weekly_series(account, berlin(2027, 3, 15, 10, 0))
    start, end = dt.datetime(2027, 3, 1, tzinfo=dt.UTC), dt.datetime(2027, 5, 1, tzinfo=dt.UTC)
    user_view = exchange_sim.user("alice@contoso.example").view(start, end)
    ews_view = list(account.calendar.view(start=start, end=end))
    assert [i.id for i in user_view] == [v.id for v in ews_view]
    folder = exchange_sim.user("alice@contoso.example").folder("calendar").id
    assert len(expand_view(exchange_sim.store, folder, start, end)) == 5


def test_the_windows_zone_table_agrees_with_cldr_as_exchangelib_ships_it():
    for windows_id, iana in WINDOWS_TO_IANA.items():
        expected = MS_TIMEZONE_TO_IANA_MAP[windows_id]
        assert ZoneInfo(iana).utcoffset(dt.datetime(2027, 1, 15)) == ZoneInfo(expected).utcoffset(dt.datetime(2027, 1, 15))
        assert ZoneInfo(iana).utcoffset(dt.datetime(2027, 7, 15)) == ZoneInfo(expected).utcoffset(dt.datetime(2027, 7, 15))


def test_a_calendar_view_lists_singles_and_occurrences_in_start_order(account, exchange_sim: Simulator):
    weekly_series(account, berlin(2027, 3, 15, 10, 0), count=2)
    alice = exchange_sim.user("alice@contoso.example")
    alice.create_event("Between", berlin(2027, 3, 17, 8, 0), berlin(2027, 3, 17, 9, 0))
    view = account.calendar.view(start=berlin(2027, 3, 1), end=berlin(2027, 4, 1))
    assert [v.subject for v in view] == ["Jour fixe", "Between", "Jour fixe"]


def test_a_user_moves_and_deletes_occurrences_like_in_outlook(account, exchange_sim: Simulator):
    master = weekly_series(account, berlin(2027, 3, 15, 10, 0), count=4)
    alice = exchange_sim.user("alice@contoso.example")
    second = alice.occurrence(master.id, 2)
    alice.edit(second, Start=berlin(2027, 3, 23, 15, 0), End=berlin(2027, 3, 23, 16, 0), Location="Moved")
    alice.delete(alice.occurrence(master.id, 3))
    view = list(account.calendar.view(start=berlin(2027, 3, 1), end=berlin(2027, 5, 1)))
    assert [(v.type, v.start.astimezone(BERLIN).day, v.location) for v in view] == [
        ("Occurrence", 15, None),
        ("Exception", 23, "Moved"),
        ("Occurrence", 5, None),
    ]
    assert account.calendar.get(id=master.id).changekey != master.changekey


def test_changing_the_pattern_drops_the_exceptions(account, exchange_sim: Simulator):
    master = weekly_series(account, berlin(2027, 3, 15, 10, 0), count=4)
    alice = exchange_sim.user("alice@contoso.example")
    alice.delete(alice.occurrence(master.id, 2))
    master = account.calendar.get(id=master.id)
    assert len(master.deleted_occurrences) == 1
    master.recurrence = Recurrence(pattern=WeeklyPattern(interval=2, weekdays=[1]), start=master.start.date(), number=2)
    master.save(update_fields=["recurrence"])
    master = account.calendar.get(id=master.id)
    assert master.deleted_occurrences is None
    assert [v.start.astimezone(BERLIN).day for v in account.calendar.view(start=berlin(2027, 3, 1), end=berlin(2027, 5, 1))] == [15, 29]
