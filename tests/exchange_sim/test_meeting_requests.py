"""Invitations reach the attendee's Inbox as MeetingRequest items; responses and cancellations as Exchange answers them."""

from __future__ import annotations

import datetime as dt

import pytest
from exchangelib import CalendarItem, EWSDateTime, EWSTimeZone
from exchangelib.errors import (
    ErrorInvalidRecipients,
    ErrorItemNotFound,
    ErrorMissingInformationReferenceItemId,
)
from exchangelib.items import SEND_TO_ALL_AND_SAVE_COPY, AcceptItem, MeetingCancellation, MeetingRequest

from exchange_sim import Simulator

from .conftest import connect

UTC = EWSTimeZone("UTC")
START = EWSDateTime(2027, 5, 3, 9, tzinfo=UTC)


def invite(account, *attendees: str, subject: str = "Quarterly review") -> CalendarItem:
    item = CalendarItem(
        account=account, folder=account.calendar, subject=subject, start=START, end=START + dt.timedelta(hours=1),
        required_attendees=list(attendees),
    )
    item.save(send_meeting_invitations=SEND_TO_ALL_AND_SAVE_COPY)
    return item


def test_an_invitation_arrives_as_a_meeting_request_in_the_inbox(account, exchange_sim: Simulator):
    invite(account, "bob@contoso.example")
    bob = connect(exchange_sim, "bob@contoso.example")
    [request] = list(bob.inbox.all())
    [copy] = list(bob.calendar.all())
    assert isinstance(request, MeetingRequest)
    assert (request.subject, request.meeting_request_type, request.is_read) == ("Quarterly review", "NewMeetingRequest", False)
    assert request.associated_calendar_item_id.id == copy.id
    assert request.author.email_address == "alice@contoso.example"


def test_an_update_sent_to_all_arrives_as_a_full_update(account, exchange_sim: Simulator):
    item = invite(account, "bob@contoso.example")
    item.location = "Room 2"
    item.save(update_fields=["location"], send_meeting_invitations=SEND_TO_ALL_AND_SAVE_COPY)
    bob = connect(exchange_sim, "bob@contoso.example")
    assert sorted(r.meeting_request_type for r in bob.inbox.all()) == ["FullUpdate", "NewMeetingRequest"]


def test_accepting_the_request_answers_for_the_calendar_copy_and_files_the_request(account, exchange_sim: Simulator):
    organizer_copy = invite(account, "bob@contoso.example")
    bob = connect(exchange_sim, "bob@contoso.example")
    [request] = list(bob.inbox.all())
    request.accept()
    [copy] = list(bob.calendar.all())
    assert copy.my_response_type == "Accept"
    assert list(bob.inbox.all()) == [] and [type(i) for i in bob.trash.all()] == [MeetingRequest]
    [attendee] = account.calendar.get(id=organizer_copy.id).required_attendees
    assert attendee.response_type == "Accept"


def test_a_response_without_a_reference_item_is_missing_information(account):
    with pytest.raises(ErrorMissingInformationReferenceItemId):
        AcceptItem(account=account).send()


def test_cancelling_keeps_the_cancellation_in_sent_items(account, exchange_sim: Simulator):
    item = invite(account, "bob@contoso.example")
    result = item.cancel()
    [sent] = list(account.sent.all())
    assert isinstance(sent, MeetingCancellation) and sent.id == result.id
    assert sent.subject == "Canceled: Quarterly review"
    with pytest.raises(ErrorItemNotFound):
        item.cancel()  # the organizer's copy went to Deleted Items with a new id


def test_cancelling_a_meeting_that_invites_only_its_organizer_has_no_valid_recipient(account):
    item = invite(account, "alice@contoso.example")
    with pytest.raises(ErrorInvalidRecipients):
        item.cancel()
