"""A series master as Exchange answers it: the range's dates as xs:date with the series' UTC offset, IsRecurring false."""

from __future__ import annotations

import datetime as dt

from exchangelib import CalendarItem, EWSDate, EWSTimeZone
from exchangelib.recurrence import DailyPattern, Recurrence

from exchange_sim import Simulator

BERLIN = EWSTimeZone("Europe/Berlin")


def make_series(account, start: dt.datetime, **recurrence) -> CalendarItem:
    item = CalendarItem(
        account=account,
        folder=account.calendar,
        subject="Standup",
        start=start,
        end=start + dt.timedelta(minutes=30),
        recurrence=Recurrence(pattern=DailyPattern(interval=1), start=start.date(), **recurrence),
    )
    item.save()
    return item


def test_the_range_dates_come_back_as_dates_with_the_series_offset(account, exchange_sim: Simulator):
    exchange_sim.request_log.enabled = True
    winter = make_series(account, dt.datetime(2027, 1, 4, 9, tzinfo=BERLIN), number=3)
    summer = make_series(account, dt.datetime(2027, 7, 5, 9, tzinfo=BERLIN), end=dt.date(2027, 7, 9))
    fetched = account.calendar.get(id=winter.id).recurrence
    assert fetched.boundary.start == EWSDate(2027, 1, 4) and type(fetched.boundary.start) is EWSDate
    assert fetched == winter.recurrence
    account.calendar.get(id=summer.id)
    answer = exchange_sim.request_log.entries()[-1].response
    assert "<t:StartDate>2027-07-05+02:00</t:StartDate>" in answer
    assert "<t:EndDate>2027-07-09+02:00</t:EndDate>" in answer


def test_a_utc_series_writes_z_as_its_offset(account, exchange_sim: Simulator):
    exchange_sim.request_log.enabled = True
    series = make_series(account, dt.datetime(2027, 1, 4, 9, tzinfo=EWSTimeZone("UTC")), number=2)
    account.calendar.get(id=series.id)
    assert "<t:StartDate>2027-01-04Z</t:StartDate>" in exchange_sim.request_log.entries()[-1].response


def test_a_master_is_not_is_recurring_but_its_occurrences_are(account):
    start = dt.datetime(2027, 1, 4, 9, tzinfo=BERLIN)
    series = make_series(account, start, number=3)
    master = account.calendar.get(id=series.id)
    assert (master.type, master.is_recurring) == ("RecurringMaster", False)
    occurrences = list(account.calendar.view(start=start, end=start + dt.timedelta(days=3)))
    assert [(o.type, o.is_recurring) for o in occurrences] == [("Occurrence", True)] * 3
