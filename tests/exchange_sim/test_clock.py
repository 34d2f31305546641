"""The settable clock drives the simulator's timestamps, and the calendar follows it across DST."""

from __future__ import annotations

import datetime as dt

from exchangelib import CalendarItem, EWSDateTime, EWSTimeZone

from exchange_sim import Simulator

UTC = EWSTimeZone("UTC")


def test_created_and_modified_times_come_from_the_clock(exchange_sim: Simulator, account):
    exchange_sim.clock.set(dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC), frozen=True)
    made = exchange_sim.user("alice@contoso.example").create_contact(GivenName="Then")
    exchange_sim.clock.advance(dt.timedelta(days=1))
    exchange_sim.user("alice@contoso.example").edit(made, Surname="Later")
    fetched = account.contacts.get(id=made.id)
    assert fetched.datetime_created == EWSDateTime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert fetched.last_modified_time == EWSDateTime(2030, 1, 3, 3, 4, 5, tzinfo=UTC)


def test_a_response_is_stamped_with_the_simulated_time(exchange_sim: Simulator, account):
    exchange_sim.clock.set(dt.datetime(2027, 3, 28, 0, 30, tzinfo=dt.UTC), frozen=True)
    start = EWSDateTime(2027, 4, 1, 9, tzinfo=UTC)
    item = CalendarItem(account=account, folder=account.calendar, subject="M", start=start, end=start + dt.timedelta(hours=1),
                        required_attendees=["bob@contoso.example"])
    item.save(send_meeting_invitations="SendToAllAndSaveCopy")
    bob = exchange_sim.user("bob@contoso.example")
    exchange_sim.clock.advance(dt.timedelta(hours=2))  # across the DST change, which does not matter in UTC
    bob.accept(bob.events()[0])
    [attendee] = account.calendar.get(id=item.id).required_attendees
    assert attendee.last_response_time == EWSDateTime(2027, 3, 28, 2, 30, tzinfo=UTC)


def test_a_calendar_filter_on_start_finds_singles_and_masters(exchange_sim: Simulator, account):
    alice = exchange_sim.user("alice@contoso.example")
    alice.create_event("In", dt.datetime(2027, 5, 3, 9, tzinfo=dt.UTC), dt.datetime(2027, 5, 3, 10, tzinfo=dt.UTC))
    alice.create_event("Out", dt.datetime(2027, 6, 3, 9, tzinfo=dt.UTC), dt.datetime(2027, 6, 3, 10, tzinfo=dt.UTC))
    found = account.calendar.filter(
        start__gte=EWSDateTime(2027, 5, 1, tzinfo=UTC), start__lt=EWSDateTime(2027, 6, 1, tzinfo=UTC)
    ).only("subject")
    assert [i.subject for i in found] == ["In"]
