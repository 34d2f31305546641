"""GetItem answers of calendar items are read by the product itself (fastread.py): for every item
the simulator answers, and for variants of that XML, the event equals exchangelib's parse followed
by ``from_calendar_item``, field by field, or the item is left to exchangelib (which then reads it
exactly as before, errors included). ``get_events`` as a whole answers what the former reading
(``account.fetch`` of every field, exchangelib's items) answered. CI=true runs more examples."""

from __future__ import annotations

import copy
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from exchangelib import CalendarItem
from exchangelib.services import GetItem
from exchangelib.util import TNS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from synccore.mailbox import base
from synccore.mailbox.base import Attendee, CalendarEvent, ConnectionConfig
from synccore.mailbox.ews.backend import EwsBackend
from synccore.mailbox.ews.client import read_items, translate
from synccore.mailbox.ews.fastread import EventReader, ReadEvent, event_fields
from synccore.mailbox.ews.translation import exception_ids, from_calendar_item, read_properties
from tests.conftest import IN_CI
from tests.fixtures.ews_offline import offline_account

ALICE = "alice@contoso.example"
PROPERTIES = ("Region", "Account_Id")
T = "{" + TNS + "}"
EXAMPLES = int(os.environ.get("FAST_READ_EXAMPLES", 300 if IN_CI else 40))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
    derandomize=not IN_CI,
)


@pytest.fixture
def ews(exchange_sim):
    user, password = exchange_sim.credentials
    backend = EwsBackend(
        ConnectionConfig(
            backend="ews", ews_url=exchange_sim.url, username=user, password=password, batch_size=7
        )
    )
    yield backend
    backend.close()


# --- The reference: exchangelib's parse and the translation ----------------------------------


def exchangelib_read(elem: Any, properties=PROPERTIES) -> tuple[CalendarEvent, list[str]] | Exception:
    """What get_events made of an element before fastread.py (on a copy: exchangelib empties it)."""
    try:
        item = GetItem(account=offline_account())._elem_to_obj(copy.deepcopy(elem))
        event = from_calendar_item(item, "")
        event.properties = read_properties(item, properties)
        return event, exception_ids(item)
    except Exception as exc:
        return exc


def assert_same_or_left(elem: Any, properties=PROPERTIES) -> ReadEvent | None:
    before = etree.tostring(elem)
    fast = EventReader(properties)(elem)
    assert etree.tostring(elem) == before  # exchangelib may still read it
    if fast is None:
        return None
    expected = exchangelib_read(elem, properties)
    assert not isinstance(expected, Exception), f"read here, but exchangelib fails: {expected!r}"
    event, ids = expected
    for name in CalendarEvent.__dataclass_fields__:
        got, want = getattr(fast.event, name), getattr(event, name)
        assert got == want, name
        assert repr(got) == repr(want), name  # the same types too (never exchangelib's classes)
    assert fast.exception_ids == ids
    return fast


def answered(ews: EwsBackend, item_ids: list[str], properties=PROPERTIES) -> list[Any]:
    """The t:CalendarItem elements the simulator answers to get_events' GetItem."""
    return read_items(
        ews.account(ALICE),
        [(i, None) for i in item_ids],
        event_fields(properties),
        copy.deepcopy,
        chunk_size=50,
    )


# --- Generated calendar items, as the simulator holds and answers them --------------------------

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "America/Sao_Paulo", "Australia/Sydney"]
RRULES = [
    "",
    "FREQ=DAILY;COUNT=6",
    "FREQ=WEEKLY;BYDAY=MO,WE;COUNT=8",
    "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU;UNTIL=20291231",
    "FREQ=MONTHLY;BYMONTHDAY=15;COUNT=5",
    "FREQ=MONTHLY;BYDAY=-1FR;COUNT=4",
    "FREQ=YEARLY;BYMONTH=3;BYMONTHDAY=1;COUNT=3",
    "FREQ=DAILY",
]
# Text Outlook can hold (no characters XML cannot carry: those the product's writes replace).
texts = st.one_of(
    st.just(""),
    st.text(
        st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff"), max_size=20
    ),
    st.sampled_from(["<b>x</b> & y", "  padded  ", "é\u00a0ü"]),
)
people = st.sampled_from(
    [("bob@contoso.example", "Bob"), ("Carol@Contoso.example", ""), ("dave@fabrikam.example", "Dave D")]
)


@st.composite
def events(draw) -> CalendarEvent:
    start = datetime(2027, 1, 1, tzinfo=UTC) + timedelta(minutes=15 * draw(st.integers(0, 4 * 24 * 400)))
    all_day = draw(st.booleans())
    first = start.date()
    return CalendarEvent(
        subject=draw(texts),
        body=draw(texts),
        location=draw(texts),
        start=start,
        end=start + timedelta(minutes=15 * draw(st.integers(0, 40))),
        is_all_day=all_day,
        start_date=first if all_day else None,
        end_date=first + timedelta(days=draw(st.integers(1, 3))) if all_day else None,
        time_zone=draw(st.sampled_from(ZONES)),
        is_private=draw(st.booleans()),
        reminder_minutes=draw(st.one_of(st.none(), st.sampled_from([0, 5, 15, 1440]))),
        attendees=[
            Attendee(email, name, required=draw(st.booleans()))
            for email, name in draw(st.lists(people, max_size=3, unique=True))
        ],
        recurrence=draw(st.sampled_from(RRULES)),
        sync_id=draw(st.sampled_from(["", "crm-1", "crm-ä"])),
        properties=draw(st.dictionaries(st.sampled_from(PROPERTIES), texts, max_size=2)),
    )


# What Outlook or Exchange may change on the item afterwards (the simulator's own properties).
outlook_edits = st.fixed_dictionaries(
    {},
    optional={
        "Sensitivity": st.sampled_from(["Normal", "Personal", "Private", "Confidential"]),
        "Categories": st.lists(st.sampled_from(["Red", "Blue category"]), max_size=2),
        "IsCancelled": st.booleans(),
        "MyResponseType": st.sampled_from(["Accept", "Tentative", "Decline", "NoResponseReceived"]),
        "Organizer": st.sampled_from(
            [{"Name": "Ext Org", "EmailAddress": "Org@Fabrikam.example", "RoutingType": "SMTP"}]
        ),
        "Body": st.sampled_from(
            [{"type": "HTML", "content": "<p>hi</p>"}, {"type": "Text", "content": "plain"}]
        ),
        "ReminderIsSet": st.booleans(),
        "Location": texts,
    },
)


@FUZZ
@given(
    event=events(),
    edits=outlook_edits,
    occurrence_edits=st.lists(st.integers(1, 3), max_size=3, unique=True),
    data=st.data(),
)
def test_simulated_items_are_read_as_exchangelib_reads_them(
    exchange_sim, ews, event, edits, occurrence_edits, data
):
    alice = exchange_sim.user(ALICE)
    folder_id = ews.ensure_calendar_folder(ALICE)
    (created,) = ews.create_events(ALICE, folder_id, [event], send_invitations=data.draw(st.booleans()))
    assert created.ok, created.error
    item_id = created.ref.item_id
    if edits:
        alice.edit(item_id, send=False, **edits)
    if event.recurrence:
        for index in occurrence_edits:
            occurrence = alice.occurrence(item_id, index)
            if data.draw(st.booleans()):
                alice.delete(occurrence, send=False)
            else:
                shift = timedelta(hours=data.draw(st.integers(-30, 30)))
                alice.edit(
                    occurrence,
                    send=False,
                    Subject="moved",
                    Start=occurrence.props["Start"] + shift,
                    End=occurrence.props["End"] + shift,
                )
    (elem,) = answered(ews, [item_id])
    assert assert_same_or_left(elem) is not None  # the simulator's items are all read here

    # And the whole of get_events answers as the former reading did.
    assert repr(ews.get_events(ALICE, [created.ref], PROPERTIES)) == repr(
        former_get_events(ews, [created.ref], PROPERTIES)
    )


def former_get_events(ews: EwsBackend, refs, properties) -> list[Any]:
    """get_events as it was: every field fetched, exchangelib's items translated."""
    from synccore.mailbox.ews.translation import property_field

    for name in properties:
        property_field(name, CalendarItem)
    account = ews.account(ALICE)
    items = list(account.fetch(ids=[(r.item_id, None) for r in refs], chunk_size=7))
    out, exceptions = [], []
    for ref, item in zip(refs, items, strict=True):
        if isinstance(item, Exception):
            out.append(translate(item))
            continue
        try:
            event = from_calendar_item(item, ref.folder_id)
            event.properties = read_properties(item, properties)
        except base.MailboxError as exc:
            out.append(exc)
            continue
        out.append(event)
        exceptions += [
            (occurrence, occurrence_id, event)
            for occurrence, occurrence_id in zip(
                event.modified_occurrences, exception_ids(item), strict=False
            )
        ]
    if exceptions:
        ews._read_exceptions(account, exceptions, ews.folder(account, refs[0].folder_id))
    return out


# --- Variants of the XML: what the product does not read is left to exchangelib -------------------

SAMPLE = f"""<t:CalendarItem xmlns:t="{TNS}">
  <t:ItemId Id="AAA=" ChangeKey="CK=="/>
  <t:Subject>Weekly</t:Subject>
  <t:Sensitivity>Normal</t:Sensitivity>
  <t:Body BodyType="Text">Agenda</t:Body>
  <t:ReminderIsSet>true</t:ReminderIsSet>
  <t:ReminderMinutesBeforeStart>15</t:ReminderMinutesBeforeStart>
  <t:ExtendedProperty>
    <t:ExtendedFieldURI PropertySetId="6a1f1f7e-3c52-4d43-9a55-8f3c5b0d2a11" PropertyName="Region" PropertyType="String"/>
    <t:Value>EMEA</t:Value>
  </t:ExtendedProperty>
  <t:ExtendedProperty>
    <t:ExtendedFieldURI PropertySetId="6a1f1f7e-3c52-4d43-9a55-8f3c5b0d2a11" PropertyName="CrmSyncId" PropertyType="String"/>
    <t:Value>crm-1</t:Value>
  </t:ExtendedProperty>
  <t:LastModifiedTime>2026-12-07T04:07:10Z</t:LastModifiedTime>
  <t:UID>0400UID</t:UID>
  <t:Start>2027-03-01T09:00:00Z</t:Start>
  <t:End>2027-03-01T10:00:00Z</t:End>
  <t:IsAllDayEvent>false</t:IsAllDayEvent>
  <t:Location>Room</t:Location>
  <t:IsMeeting>true</t:IsMeeting>
  <t:IsCancelled>false</t:IsCancelled>
  <t:MyResponseType>Organizer</t:MyResponseType>
  <t:Organizer><t:Mailbox><t:Name>Alice</t:Name><t:EmailAddress>Alice@contoso.example</t:EmailAddress></t:Mailbox></t:Organizer>
  <t:RequiredAttendees>
    <t:Attendee><t:Mailbox><t:Name>Bob</t:Name><t:EmailAddress>bob@contoso.example</t:EmailAddress></t:Mailbox>
      <t:ResponseType>Accept</t:ResponseType></t:Attendee>
  </t:RequiredAttendees>
  <t:OptionalAttendees>
    <t:Attendee><t:Mailbox><t:EmailAddress>carol@contoso.example</t:EmailAddress></t:Mailbox></t:Attendee>
  </t:OptionalAttendees>
  <t:Duration>PT1H</t:Duration>
  <t:Recurrence>
    <t:WeeklyRecurrence><t:Interval>1</t:Interval><t:DaysOfWeek>Monday</t:DaysOfWeek>
      <t:FirstDayOfWeek>Monday</t:FirstDayOfWeek></t:WeeklyRecurrence>
    <t:NumberedRecurrence><t:StartDate>2027-03-01+01:00</t:StartDate><t:NumberOfOccurrences>5</t:NumberOfOccurrences>
    </t:NumberedRecurrence>
  </t:Recurrence>
  <t:ModifiedOccurrences>
    <t:Occurrence><t:ItemId Id="AAA=.OC1" ChangeKey="CK=="/><t:Start>2027-03-09T09:00:00Z</t:Start>
      <t:End>2027-03-09T11:00:00Z</t:End><t:OriginalStart>2027-03-08T09:00:00Z</t:OriginalStart></t:Occurrence>
  </t:ModifiedOccurrences>
  <t:DeletedOccurrences><t:DeletedOccurrence><t:Start>2027-03-15T09:00:00Z</t:Start></t:DeletedOccurrence>
  </t:DeletedOccurrences>
  <t:StartTimeZone Id="W. Europe Standard Time"/>
  <t:EndTimeZone Id="W. Europe Standard Time"/>
</t:CalendarItem>"""

TIMES = ["Start", "End", "LastModifiedTime"]
TEXT_VALUES = st.sampled_from(
    [
        "",
        "2027-03-01T09:00:00.5Z",
        "2027-03-01T10:00:00+01:00",
        "2027-03-01T09:00:00",
        "2027-03-01",
        "2027-03-01Z",
        "2027-3-1T9:00:00Z",
        "2027-02-30T09:00:00Z",
        "2027-03-28T01:00:00Z",
        "TRUE",
        "on",
        "yes",
        "0",
        "-5",
        "15 ",
        "abc",
        "Private",
        "P2D",
        "PT23H",
        "x" * 300,
    ]
)


def _child(elem: Any, tag: str) -> Any:
    return elem.find(T + tag)


def mutate(elem: Any, draw) -> None:
    """One change of the item's XML (a change whose element an earlier one removed does nothing)."""
    choice = draw(st.integers(0, 13))
    children = [c for c in elem if isinstance(c.tag, str)]
    body, organizer, duration = _child(elem, "Body"), _child(elem, "Organizer"), _child(elem, "Duration")
    uri = elem.find(f"{T}ExtendedProperty/{T}ExtendedFieldURI")
    mailbox = elem.find(f"{T}RequiredAttendees/{T}Attendee/{T}Mailbox")
    occurrence = elem.find(f"{T}ModifiedOccurrences/{T}Occurrence")
    if choice == 0 and children:  # a value in another form
        target = draw(st.sampled_from(children))
        if len(target) == 0:
            target.text = draw(TEXT_VALUES)
    elif choice == 1 and children:
        elem.remove(draw(st.sampled_from(children)))
    elif choice == 2:
        target = _child(elem, draw(st.sampled_from(TIMES)))
        if target is not None:
            target.text = draw(TEXT_VALUES)
    elif choice == 3 and body is not None:
        body.set("BodyType", draw(st.sampled_from(["HTML", "Best", ""])))
    elif choice == 4:
        zone = _child(elem, draw(st.sampled_from(["StartTimeZone", "EndTimeZone"])))
        value = draw(st.sampled_from(["Europe/Copenhagen", "Nowhere", "", "UTC", "Tokyo Standard Time"]))
        if zone is not None:
            zone.attrib.pop("Id", None)
            if value:
                zone.set(draw(st.sampled_from(["Id", "Name"])), value)
    elif choice == 5:
        etree.SubElement(elem, T + "MeetingTimeZone", TimeZoneName="W. Europe Standard Time")
    elif choice == 6:
        elem.tag = T + draw(st.sampled_from(["MeetingRequest", "Message", "Task"]))
    elif choice == 7 and uri is not None:
        attribute = draw(
            st.sampled_from(["DistinguishedPropertySetId", "PropertyTag", "PropertyId", "PropertyType"])
        )
        uri.set(attribute, draw(st.sampled_from(["PublicStrings", "0x1234", "7", "StringArray", "Integer"])))
    elif choice == 8:
        etree.SubElement(elem, T + "IsAllDayEvent").text = "true"  # a second one: the first counts
        first = _child(elem, "IsAllDayEvent")
        first.text = draw(st.sampled_from(["true", "1", "false", "On"]))
    elif choice == 9 and mailbox is not None and len(mailbox):
        mailbox.remove(mailbox[draw(st.integers(0, len(mailbox) - 1))])
    elif choice == 10 and organizer is not None and len(organizer):
        organizer.remove(organizer[0])
    elif choice == 11:
        etree.SubElement(
            elem, T + draw(st.sampled_from(["Resources", "Attachments", "Unknown", "When", "Size"]))
        )
    elif choice == 12 and occurrence is not None and len(occurrence):
        occurrence.remove(occurrence[draw(st.integers(0, len(occurrence) - 1))])
    elif choice == 13:
        elem.insert(0, etree.Comment("a comment"))
        if duration is not None:
            duration.text = draw(TEXT_VALUES)


@settings(FUZZ, max_examples=EXAMPLES * 5)
@given(data=st.data())
def test_variants_of_the_xml_are_read_as_exchangelib_reads_them_or_left_to_it(data):
    elem = etree.fromstring(SAMPLE)
    for _ in range(data.draw(st.integers(1, 3))):
        mutate(elem, data.draw)
    assert_same_or_left(elem)


def test_the_sample_item_is_read_here():
    read = assert_same_or_left(etree.fromstring(SAMPLE))
    assert read is not None
    event = read.event
    assert (event.subject, event.sync_id, event.properties) == (
        "Weekly",
        "crm-1",
        {"Region": "EMEA", "Account_Id": ""},
    )
    assert event.recurrence == "BYDAY=MO;COUNT=5;FREQ=WEEKLY"
    assert read.exception_ids == ["AAA=.OC1"]
    assert [a.response for a in event.attendees] == ["Accept", "Unknown"]


@pytest.mark.parametrize(
    "change",
    [
        lambda e: _child(e, "Start").__setattr__("text", "2027-03-01T10:00:00+01:00"),
        lambda e: _child(e, "StartTimeZone").set("Id", "Nowhere Standard Time"),
        lambda e: e.__setattr__("tag", T + "MeetingRequest"),
        lambda e: etree.SubElement(e, T + "MeetingTimeZone", TimeZoneName="x"),
        lambda e: _child(e, "Body").set("BodyType", "Best"),
    ],
    ids=["time-with-offset", "unknown-zone", "meeting-request", "meeting-time-zone", "unknown-body-type"],
)
def test_what_is_not_read_here_is_left_to_exchangelib(change):
    elem = etree.fromstring(SAMPLE)
    change(elem)
    assert EventReader(PROPERTIES)(elem) is None


def test_an_item_exchangelib_cannot_read_fails_as_before(exchange_sim, ews):
    folder_id = ews.ensure_calendar_folder(ALICE)
    start = datetime(2027, 3, 1, 9, tzinfo=UTC)
    made = ews.create_events(
        ALICE,
        folder_id,
        [CalendarEvent(subject=f"Call {n}", start=start, end=start + timedelta(hours=1)) for n in range(3)],
        send_invitations=False,
    )
    alice = exchange_sim.user(ALICE)
    alice.edit(made[1].ref.item_id, send=False, StartTimeZone="Nowhere Standard Time")
    alice.delete(made[2].ref.item_id, hard=True)
    before = exchange_sim.counters["GetItem"]
    got = ews.get_events(ALICE, [r.ref for r in made])
    assert exchange_sim.counters["GetItem"] - before == 1
    assert got[0].subject == "Call 0" and got[0].ref == made[0].ref
    assert isinstance(got[1], base.InvalidItem)  # exchangelib's parse: a zone the product does not know
    assert isinstance(got[2], base.ItemNotFound) and got[2].code == "ErrorItemNotFound"
    former = former_get_events(ews, [r.ref for r in made], ())
    assert [(type(g), str(g)) for g in got[1:]] == [(type(f), str(f)) for f in former[1:]]


def test_a_busy_server_is_asked_again(exchange_sim, ews):
    folder_id = ews.ensure_calendar_folder(ALICE)
    start = datetime(2027, 3, 1, 9, tzinfo=UTC)
    (made,) = ews.create_events(
        ALICE,
        folder_id,
        [CalendarEvent(subject="Call", start=start, end=start + timedelta(hours=1))],
        send_invitations=False,
    )
    exchange_sim.faults.server_busy(times=1, back_off_ms=10, operation="GetItem")
    before = ews.requests
    (event,) = ews.get_events(ALICE, [made.ref])
    assert event.subject == "Call"
    assert ews.requests - before == 2
