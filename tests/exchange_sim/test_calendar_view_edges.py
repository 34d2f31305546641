"""CalendarView boundaries as Exchange draws them, and no restrictions on a view."""

from __future__ import annotations

import datetime as dt

import pytest
from exchangelib import CalendarItem, EWSDateTime, EWSTimeZone
from exchangelib.errors import ErrorInvalidOperation

UTC = EWSTimeZone("UTC")


def event(account, subject: str, start: EWSDateTime, hours: int = 2) -> CalendarItem:
    item = CalendarItem(account=account, folder=account.calendar, subject=subject, start=start, end=start + dt.timedelta(hours=hours))
    item.save()
    return item


def test_a_view_that_starts_where_an_item_ends_includes_it(account):
    first = event(account, "First", EWSDateTime(2027, 1, 4, 8, tzinfo=UTC))
    event(account, "Second", EWSDateTime(2027, 2, 1, 8, tzinfo=UTC))
    assert [i.subject for i in account.calendar.view(start=first.end, end=first.end + dt.timedelta(days=1))] == ["First"]


def test_a_view_that_ends_where_an_item_starts_leaves_it_out(account):
    first = event(account, "First", EWSDateTime(2027, 1, 4, 8, tzinfo=UTC))
    second = event(account, "Second", EWSDateTime(2027, 2, 1, 8, tzinfo=UTC))
    assert [i.subject for i in account.calendar.view(start=first.start, end=second.start)] == ["First"]


def test_a_view_refuses_a_restriction(account):
    first = event(account, "First", EWSDateTime(2027, 1, 4, 8, tzinfo=UTC))
    with pytest.raises(ErrorInvalidOperation):
        account.calendar.view(start=first.start, end=first.end).filter(subject="First").count()
