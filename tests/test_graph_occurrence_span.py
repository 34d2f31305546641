"""A series read over Graph expands its pattern once: the span of instances asked for and the
occurrences checked for deletion are what the two expansions before (one for the span, one for
the deleted occurrences) gave, over generated patterns, starts and zones."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from synccore.mailbox.base import CalendarEvent, ConnectionConfig, Series
from synccore.mailbox.graph import calendar as graph_calendar
from synccore.mailbox.graph.calendar import CalendarOperations

NOW = datetime(2026, 12, 7, 4, 30, tzinfo=UTC)


class Calendar(CalendarOperations):
    def __init__(self) -> None:
        self.config = ConnectionConfig(backend="graph")


def two_expansions(ops: CalendarOperations, event: CalendarEvent) -> tuple[datetime, list[datetime]] | None:
    """The previous reading, kept as the reference: the span's end from one expansion, the
    starts up to it from a second one."""
    _, window_end = ops.calendar_window()
    limit = window_end + timedelta(days=366)
    last = None
    try:
        for last in Series(event.recurrence, event.start, event.time_zone).starts():
            if last > limit:
                break
    except (ValueError, TypeError, KeyError, zoneinfo.ZoneInfoNotFoundError):
        return None
    if last is None:
        return None
    last = min(last, limit)
    starts = []
    for original in Series(event.recurrence, event.start, event.time_zone).starts(after=event.start):
        if original > last:
            break
        starts.append(original)
    return last, starts


rrules = st.sampled_from(
    [
        "FREQ=DAILY;COUNT=10",
        "FREQ=DAILY",
        "FREQ=DAILY;INTERVAL=3;UNTIL=20271231",
        "FREQ=WEEKLY;COUNT=8",
        "FREQ=WEEKLY;BYDAY=MO,WE,FR",
        "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU;UNTIL=20270301T080000Z",
        "FREQ=MONTHLY;BYMONTHDAY=31",
        "FREQ=MONTHLY;BYDAY=-1FR;COUNT=12",
        "FREQ=YEARLY;BYMONTH=3;BYMONTHDAY=1",
        "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30",  # no occurrence at all
        "FREQ=WEEKLY;UNTIL=20200101",  # ended before it began
        "FREQ=SOMETIMES",  # not a pattern
    ]
)
starts = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC))
zones = st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Nowhere/Unknown"])


@settings(max_examples=150, deadline=None)
@given(rrule=rrules, start=starts, zone=zones)
def test_one_expansion_gives_the_span_and_starts_of_two(rrule, start, zone):
    event = CalendarEvent(start=start, end=start + timedelta(hours=1), time_zone=zone, recurrence=rrule)
    ops = Calendar()
    with mock.patch.object(graph_calendar, "_now", return_value=NOW):
        assert ops._occurrence_span(event) == two_expansions(ops, event)
