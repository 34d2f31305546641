"""Reminder due times: as the client set them, else derived from the start and the minutes before it."""

from __future__ import annotations

import datetime as dt

from exchangelib import CalendarItem, EWSDateTime, EWSTimeZone

UTC = EWSTimeZone("UTC")


def test_a_reminder_due_time_set_by_the_client_is_kept(account):
    start = EWSDateTime(2027, 3, 1, 10, tzinfo=UTC)
    item = CalendarItem(account=account, folder=account.calendar, subject="Call", start=start, end=start + dt.timedelta(hours=1))
    item.reminder_is_set = True
    item.reminder_due_by = EWSDateTime(2027, 2, 27, 8, 30, tzinfo=UTC)
    item.save()
    assert account.calendar.get(id=item.id).reminder_due_by == EWSDateTime(2027, 2, 27, 8, 30, tzinfo=UTC)
    item.reminder_due_by = EWSDateTime(2027, 2, 28, 7, tzinfo=UTC)
    item.save(update_fields=["reminder_due_by"])
    assert account.calendar.get(id=item.id).reminder_due_by == EWSDateTime(2027, 2, 28, 7, tzinfo=UTC)


def test_without_one_it_is_the_start_less_the_reminder_minutes(account):
    start = EWSDateTime(2027, 3, 1, 10, tzinfo=UTC)
    item = CalendarItem(account=account, folder=account.calendar, subject="Call", start=start, end=start + dt.timedelta(hours=1))
    item.reminder_is_set = True
    item.reminder_minutes_before_start = 30
    item.save()
    assert account.calendar.get(id=item.id).reminder_due_by == EWSDateTime(2027, 3, 1, 9, 30, tzinfo=UTC)
