"""K10: which RRULEs Exchange can represent, decided once (synccore.mailbox.recurrence) for the
API's validation, the model, the calendar normal form and both backends."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError

from synccore.crmio import recurrence_problem
from synccore.mailbox import ews, graph
from synccore.mailbox.base import InvalidItem, Series
from synccore.mailbox.recurrence import Unrepresentable, parse_rrule, to_rrule
from synccore.models import Activity
from synccore.sync.calendar import run_calendar_pass
from tests.fixtures import factories as f

TUESDAY = date(2026, 12, 1)

REPRESENTABLE = {
    "FREQ=DAILY;INTERVAL=3": "FREQ=DAILY;INTERVAL=3",
    "FREQ=WEEKLY;INTERVAL=2": "BYDAY=TU;FREQ=WEEKLY;INTERVAL=2",
    "FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR": "BYDAY=MO,TU,WE,TH,FR;FREQ=WEEKLY",
    "FREQ=MONTHLY;COUNT=6": "BYMONTHDAY=1;COUNT=6;FREQ=MONTHLY",
    "FREQ=MONTHLY;BYDAY=2TU;UNTIL=20270601T000000Z": "BYDAY=2TU;FREQ=MONTHLY;UNTIL=20270601",
    "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1": "BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1;FREQ=MONTHLY",
    "FREQ=MONTHLY;BYMONTHDAY=-1": "BYMONTHDAY=-1;FREQ=MONTHLY",
    "FREQ=YEARLY": "BYMONTH=12;BYMONTHDAY=1;FREQ=YEARLY",
    "FREQ=YEARLY;BYMONTH=3;BYDAY=-1FR": "BYDAY=-1FR;BYMONTH=3;FREQ=YEARLY",
    "FREQ=YEARLY;BYMONTH=5;BYDAY=SA,SU;BYSETPOS=1": "BYDAY=SA,SU;BYMONTH=5;BYSETPOS=1;FREQ=YEARLY",
}
UNREPRESENTABLE = [
    "FREQ=HOURLY",
    "FREQ=WEEKLY;BYHOUR=9",
    "FREQ=YEARLY;INTERVAL=2",  # EWS has no interval on yearly patterns
    "FREQ=DAILY;INTERVAL=2;BYDAY=MO",
    "FREQ=MONTHLY;BYDAY=5TU",
    "FREQ=MONTHLY;BYDAY=MO,WE;BYSETPOS=1",
    "FREQ=MONTHLY;BYMONTHDAY=1,15",
]


@pytest.mark.parametrize(("rule", "spelled"), REPRESENTABLE.items())
def test_k10_a_representable_rule_reads_back_the_same_over_ews_and_graph(rule, spelled):
    assert to_rrule(parse_rrule(rule, TUESDAY)) == spelled
    assert ews.recurrence_to_rrule(ews.rrule_to_recurrence(rule, TUESDAY)) == spelled
    assert graph.recurrence_to_rrule(graph.rrule_to_recurrence(rule, TUESDAY, "Europe/Berlin")) == spelled
    assert recurrence_problem(rule) == ""


@pytest.mark.parametrize("rule", UNREPRESENTABLE)
def test_k10_an_unrepresentable_rule_is_refused_alike_everywhere(rule):
    with pytest.raises(Unrepresentable):
        parse_rrule(rule, TUESDAY)
    with pytest.raises(ValueError):
        ews.rrule_to_recurrence(rule, TUESDAY)
    with pytest.raises(InvalidItem):
        graph.rrule_to_recurrence(rule, TUESDAY, "UTC")
    assert recurrence_problem(rule)


@pytest.mark.parametrize("until", ["20270601T000000Z", "20270601", "20270601T000000"])
def test_until_may_be_a_utc_time_or_a_floating_day(until):
    rule = f"FREQ=WEEKLY;BYDAY=TU;UNTIL={until}"
    assert recurrence_problem(rule) == ""
    start = datetime(2026, 12, 1, 9, tzinfo=UTC)
    Activity(subject="Jour fixe", start=start, end=start, recurrence=rule).clean()


def test_the_model_refuses_what_exchange_cannot_represent():
    start = datetime(2026, 12, 1, 9, tzinfo=UTC)
    with pytest.raises(ValidationError, match="cannot represent"):
        Activity(
            subject="Every other year", start=start, end=start, recurrence="FREQ=YEARLY;INTERVAL=2"
        ).clean()


@pytest.mark.django_db
@pytest.mark.backends("ews", "graph")
@pytest.mark.parametrize(
    "rule",
    [
        "FREQ=MONTHLY;BYDAY=2TU;COUNT=4",
        "FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR;COUNT=10",
        "FREQ=MONTHLY;BYMONTHDAY=-1;COUNT=3",
    ],
)
def test_k10_a_relative_or_weekday_series_reaches_exchange_and_a_second_pass_changes_nothing(crm, rule):
    first = date.today() + timedelta(days=3)
    start = datetime(first.year, first.month, first.day, 9, tzinfo=UTC)
    activity = f.activity(
        crm.env,
        subject="Board",
        start=start,
        end=start + timedelta(hours=1),
        organizer=crm.alice.employee,
        recurrence=rule,
    )
    expected = [s for s in Series(rule, start, "UTC").starts()]
    assert run_calendar_pass(crm.alice.pk).created == 1
    view = crm.mailbox().view(start - timedelta(days=1), expected[-1] + timedelta(days=1))
    assert [o.props["Start"] for o in view] == expected[: len(view)] and view
    again = run_calendar_pass(crm.alice.pk)
    assert (again.created, again.updated, again.deleted, again.conflicts) == (0, 0, 0, 0)
    activity.refresh_from_db()
    assert activity.recurrence == rule
