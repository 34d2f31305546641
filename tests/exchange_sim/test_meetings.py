"""Meetings between simulator mailboxes: invitations, updates, cancellations, responses."""

from __future__ import annotations

import datetime as dt
import time

from exchangelib import CalendarItem, EWSDateTime, EWSTimeZone
from exchangelib.items import SEND_TO_ALL_AND_SAVE_COPY, SEND_TO_NONE

from exchange_sim import Simulator

from .conftest import connect

UTC = EWSTimeZone("UTC")
START = EWSDateTime(2027, 5, 3, 9, tzinfo=UTC)


def meeting(account, *attendees: str, optional: tuple[str, ...] = (), send=SEND_TO_ALL_AND_SAVE_COPY) -> CalendarItem:
    item = CalendarItem(
        account=account,
        folder=account.calendar,
        subject="Quarterly review",
        start=START,
        end=START + dt.timedelta(hours=1),
        required_attendees=list(attendees),
        optional_attendees=list(optional) or None,
        location="Room 1",
    )
    item.save(send_meeting_invitations=send)
    return account.calendar.get(id=item.id)


def test_sending_delivers_invitee_copies_with_the_same_uid(account, exchange_sim: Simulator):
    organizer_copy = meeting(account, "bob@contoso.example", optional=("carol@contoso.example",))
    assert organizer_copy.is_meeting and organizer_copy.my_response_type == "Organizer"
    for address in ["bob@contoso.example", "carol@contoso.example"]:
        [copy] = list(connect(exchange_sim, address).calendar.all())
        assert copy.uid == organizer_copy.uid
        assert copy.is_meeting
        assert copy.my_response_type == "NoResponseReceived"
        assert copy.organizer.email_address == "alice@contoso.example"
        assert copy.legacy_free_busy_status == "Tentative"
        assert (copy.subject, copy.location, copy.start) == ("Quarterly review", "Room 1", START)
    assert exchange_sim.user("dave@contoso.example").events() == []


def test_send_to_none_delivers_nothing(account, exchange_sim: Simulator):
    meeting(account, "bob@contoso.example", send=SEND_TO_NONE)
    assert exchange_sim.user("bob@contoso.example").events() == []


def test_an_attendee_outside_the_simulator_is_simply_not_delivered(account, exchange_sim: Simulator):
    meeting(account, "bob@contoso.example", "someone@fabrikam.example")
    assert len(exchange_sim.user("bob@contoso.example").events()) == 1


def test_an_update_sent_to_all_reaches_the_invitees(account, exchange_sim: Simulator):
    item = meeting(account, "bob@contoso.example")
    item.location = "Room 2"
    item.save(update_fields=["location"], send_meeting_invitations=SEND_TO_ALL_AND_SAVE_COPY)
    [copy] = exchange_sim.user("bob@contoso.example").events()
    assert copy.props["Location"] == "Room 2"


def test_removing_an_attendee_sends_them_a_cancellation(account, exchange_sim: Simulator):
    item = meeting(account, "bob@contoso.example", "carol@contoso.example")
    item.required_attendees = ["bob@contoso.example"]
    item.save(update_fields=["required_attendees"], send_meeting_invitations=SEND_TO_ALL_AND_SAVE_COPY)
    [carol_copy] = exchange_sim.user("carol@contoso.example").events()
    assert carol_copy.props["IsCancelled"] is True
    assert exchange_sim.user("bob@contoso.example").events()[0].props.get("IsCancelled") is not True


def test_removing_an_attendee_outside_the_simulator_cancels_nothing_and_fails_nothing(
    account, exchange_sim: Simulator
):
    item = meeting(account, "bob@contoso.example", "someone@fabrikam.example")
    item.required_attendees = ["bob@contoso.example"]
    item.save(update_fields=["required_attendees"], send_meeting_invitations=SEND_TO_ALL_AND_SAVE_COPY)
    assert exchange_sim.user("bob@contoso.example").events()[0].props.get("IsCancelled") is not True
    assert exchange_sim.internal_errors == []


def test_deleting_with_cancellations_cancels_the_invitee_copies(account, exchange_sim: Simulator):
    item = meeting(account, "bob@contoso.example")
    item.delete(send_meeting_cancellations=SEND_TO_ALL_AND_SAVE_COPY)
    [copy] = list(connect(exchange_sim, "bob@contoso.example").calendar.all())
    assert copy.is_cancelled
    assert copy.subject == "Canceled: Quarterly review"


def test_cancel_calendar_item_cancels_and_removes_the_organizer_copy(account, exchange_sim: Simulator):
    item = meeting(account, "bob@contoso.example")
    item.cancel()
    assert exchange_sim.user("alice@contoso.example").events() == []
    assert exchange_sim.user("bob@contoso.example").events()[0].props["IsCancelled"] is True


def test_an_accept_through_ews_updates_the_organizer_copy(account, exchange_sim: Simulator):
    item = meeting(account, "bob@contoso.example")
    [bob_copy] = list(connect(exchange_sim, "bob@contoso.example").calendar.all())
    bob_copy.accept()
    organizer_copy = account.calendar.get(id=item.id)
    assert [a.response_type for a in organizer_copy.required_attendees] == ["Accept"]
    assert organizer_copy.changekey != item.changekey
    bob_copy = connect(exchange_sim, "bob@contoso.example").calendar.get(id=bob_copy.id)
    assert bob_copy.my_response_type == "Accept"


def test_a_user_side_decline_updates_the_organizer_and_clears_the_calendar(account, exchange_sim: Simulator):
    item = meeting(account, "bob@contoso.example")
    bob = exchange_sim.user("bob@contoso.example")
    bob.decline(bob.find_event(item.uid))
    assert bob.events() == []
    assert [a.response_type for a in account.calendar.get(id=item.id).required_attendees] == ["Decline"]


def test_user_side_meetings_are_delivered_too(exchange_sim: Simulator):
    carol = exchange_sim.user("carol@contoso.example")
    made = carol.create_event(
        "Planning",
        dt.datetime(2027, 5, 4, 9, tzinfo=dt.UTC),
        dt.datetime(2027, 5, 4, 10, tzinfo=dt.UTC),
        RequiredAttendees=[{"Mailbox": {"EmailAddress": "erin@contoso.example"}}],
    )
    erin_copy = exchange_sim.user("erin@contoso.example").find_event(made.props["UID"])
    assert erin_copy.props["MyResponseType"] == "NoResponseReceived"
    exchange_sim.user("erin@contoso.example").tentative(erin_copy)
    organizer = exchange_sim.user("carol@contoso.example").get(made)
    assert organizer.props["RequiredAttendees"][0]["ResponseType"] == "Tentative"


def test_delivery_can_be_delayed(account, exchange_sim: Simulator):
    exchange_sim.meetings.delivery_delay = 0.2
    meeting(account, "bob@contoso.example")
    assert exchange_sim.user("bob@contoso.example").events() == []
    deadline = time.monotonic() + 5
    while not exchange_sim.user("bob@contoso.example").events() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(exchange_sim.user("bob@contoso.example").events()) == 1


def test_an_external_invitation_lands_in_several_calendars_with_one_uid(exchange_sim: Simulator, account):
    start = dt.datetime(2027, 5, 6, 9, tzinfo=dt.UTC)
    for address in ["alice@contoso.example", "bob@contoso.example"]:
        exchange_sim.user(address).receive_meeting("Supplier call", start, start + dt.timedelta(hours=1), "ext@fabrikam.example", uid="EXT-1")
    [copy] = list(account.calendar.all())
    assert (copy.uid, copy.organizer.email_address, copy.my_response_type) == ("EXT-1", "ext@fabrikam.example", "NoResponseReceived")
    assert exchange_sim.user("bob@contoso.example").find_event("EXT-1") is not None


def test_a_server_side_rewrite_moves_only_the_change_key(exchange_sim: Simulator, account):
    alice = exchange_sim.user("alice@contoso.example")
    made = alice.create_event("Quiet", dt.datetime(2027, 5, 6, 9, tzinfo=dt.UTC), dt.datetime(2027, 5, 6, 10, tzinfo=dt.UTC))
    touched = alice.touch(made)
    assert touched.changekey != made.changekey
    assert touched.props == made.props
