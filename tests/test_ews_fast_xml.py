"""The EWS items to create are serialized by the product itself (fastxml.py), byte for byte as
exchangelib would (canonical XML); what exchangelib refuses is left to exchangelib, so it still
fails that one item with exchangelib's error."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from exchangelib import EWSTimeZone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from synccore.mailbox import base
from synccore.mailbox.base import Attendee, CalendarEvent, ContactCard, PostalAddress
from synccore.mailbox.ews.fastxml import calendar_item_xml, contact_xml
from synccore.mailbox.ews.translation import ews_timezone, to_calendar_item, to_contact
from tests.fixtures.ews_offline import offline_account

ACCOUNT = offline_account()
VERSION = ACCOUNT.version


def rarely(bad, good):
    """``bad`` in about one example of ten: most generated items are ones exchangelib takes."""
    return st.sampled_from([False] * 9 + [True]).flatmap(lambda is_bad: bad if is_bad else good)


# Text as the CRM may send it: empty, ordinary, markup, characters XML cannot carry, and
# values around exchangelib's 255-character limit of subjects, names and addresses.
texts = rarely(
    st.text(alphabet="xyz", min_size=250, max_size=260),
    st.one_of(
        st.just(""),
        st.text(max_size=30),
        st.text(alphabet="<>&\"' \x00\x01\x0b\x7f\x85\ufffe\u00e9\U0001f600ab", max_size=20),
    ),
)
short = st.one_of(st.just(""), st.text(max_size=12))
zones = rarely(
    st.just("Nowhere/Unknown"),
    st.one_of(
        st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]),
        st.sampled_from(sorted(EWSTimeZone.IANA_TO_MS_MAP)),
    ),
)
rrules = st.sampled_from(
    [
        "",
        "FREQ=DAILY;COUNT=10",
        "FREQ=DAILY;INTERVAL=3;UNTIL=20301231",
        "FREQ=WEEKLY;BYDAY=MO,WE,FR",
        "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU;COUNT=5",
        "FREQ=MONTHLY;BYMONTHDAY=15",
        "FREQ=MONTHLY;BYDAY=-1FR;COUNT=12",
        "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=1",
        "FREQ=YEARLY;BYMONTH=3;BYMONTHDAY=1",
        "FREQ=YEARLY;BYMONTH=11;BYDAY=4TH",
        "FREQ=HOURLY",
        "FREQ=WEEKLY;COUNT=3;UNTIL=20300101",
    ]
)
names = st.sampled_from(["Region", "Account_Id", "x"])
attendees = st.builds(
    Attendee,
    email=rarely(st.sampled_from(["", "a" * 256]), st.emails()),
    name=short,
    required=st.booleans(),
)
instants = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)
)


@st.composite
def events(draw) -> CalendarEvent:
    all_day = draw(st.booleans())
    start = draw(instants)
    if draw(st.integers(0, 20)) == 0:
        end = start - timedelta(minutes=draw(st.integers(1, 90)))  # refused by exchangelib
    else:
        end = start + timedelta(minutes=draw(st.integers(0, 60 * 24 * 3)))
    first = start.date()
    days = draw(st.integers(-1, 4))
    return CalendarEvent(
        subject=draw(texts),
        body=draw(texts),
        location=draw(texts),
        start=start,
        end=end,
        is_all_day=all_day,
        start_date=first if all_day else None,
        end_date=first + timedelta(days=days) if all_day else None,
        time_zone=draw(zones),
        is_private=draw(st.booleans()),
        reminder_minutes=draw(st.one_of(st.none(), st.integers(-5, 10_000))),
        attendees=draw(st.lists(attendees, max_size=4)),
        uid=draw(short),
        recurrence=draw(rrules),
        sync_id=draw(short),
        properties=draw(st.dictionaries(names, texts, max_size=3)),
    )


@st.composite
def cards(draw) -> ContactCard:
    fields = {name: draw(texts) for name in ContactCard.MAPPED if name != "business_address"}
    return ContactCard(
        **fields,
        business_address=PostalAddress(
            street=draw(short),
            city=draw(short),
            state=draw(short),
            postal_code=draw(short),
            country=draw(short),
        ),
        display_name=draw(texts),
        file_as=draw(texts),
        sync_id=draw(short),
        properties=draw(st.dictionaries(names, texts, max_size=3)),
    )


def canonical(element) -> bytes:
    return etree.tostring(element, method="c14n")


def exchangelib_xml(build) -> bytes | Exception:
    try:
        return canonical(build().to_xml(version=VERSION))
    except (ValueError, TypeError, base.InvalidItem) as exc:
        return exc


def fast_xml(build) -> bytes | Exception | None:
    try:
        element = build()
    except base.InvalidItem as exc:
        return exc
    return None if element is None else canonical(element)


FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(events())
def test_a_new_event_is_serialized_as_exchangelib_serializes_it(event: CalendarEvent) -> None:
    expected = exchangelib_xml(lambda: to_calendar_item(event, ACCOUNT))
    got = fast_xml(lambda: calendar_item_xml(event, VERSION))
    if isinstance(expected, base.InvalidItem):
        # An unknown zone, a recurrence Exchange cannot carry: the same refusal, or left to exchangelib.
        assert got is None or isinstance(got, base.InvalidItem)
    elif isinstance(expected, Exception):
        assert got is None  # refused by exchangelib: left to it, so the item fails with its error
    else:
        assert got == expected


@FUZZ
@given(cards())
def test_a_new_contact_is_serialized_as_exchangelib_serializes_it(card: ContactCard) -> None:
    expected = exchangelib_xml(lambda: to_contact(card, ACCOUNT))
    got = fast_xml(lambda: contact_xml(card, VERSION))
    if isinstance(expected, Exception):
        assert got is None
    else:
        assert got == expected


def meeting(**overrides) -> CalendarEvent:
    values = dict(
        subject="Review",
        body="Agenda",
        location="Room 1",
        start=datetime(2027, 3, 28, 8, tzinfo=UTC),
        end=datetime(2027, 3, 28, 9, tzinfo=UTC),
        time_zone="Europe/Berlin",
        reminder_minutes=15,
        attendees=[Attendee("bob@contoso.example", "Bob"), Attendee("carol@contoso.example", required=False)],
        recurrence="FREQ=WEEKLY;BYDAY=MO;COUNT=4",
        uid="uid-1",
        sync_id="crm-1",
        properties={"Region": "EMEA"},
    )
    values.update(overrides)
    return CalendarEvent(**values)


@pytest.mark.parametrize(
    "event",
    [
        meeting(),
        meeting(recurrence="", attendees=[], properties={}, sync_id="", body="", time_zone="UTC"),
        meeting(
            is_all_day=True,
            start_date=date(2027, 3, 27),
            end_date=date(2027, 3, 29),
            time_zone="America/Sao_Paulo",
        ),
    ],
    ids=["series-meeting", "plain-utc", "all-day-over-dst"],
)
def test_ordinary_events_take_the_fast_path(event: CalendarEvent) -> None:
    element = calendar_item_xml(event, VERSION)
    assert element is not None
    assert canonical(element) == canonical(to_calendar_item(event, ACCOUNT).to_xml(version=VERSION))


def test_ordinary_contacts_take_the_fast_path() -> None:
    card = ContactCard(
        given_name="Ann",
        surname="Lee",
        company_name="Contoso",
        email_address_1="ann@contoso.example",
        business_phone="+49 30 1234",
        business_address=PostalAddress(street="Main St 1", city="Berlin", postal_code="10115", country="DE"),
        notes="met at the fair",
        display_name="Ann Lee",
        file_as="Lee, Ann",
        sync_id="crm-7",
        properties={"Region": "EMEA"},
    )
    element = contact_xml(card, VERSION)
    assert element is not None
    assert canonical(element) == canonical(to_contact(card, ACCOUNT).to_xml(version=VERSION))


def test_a_zone_once_used_is_the_one_exchangelib_gets_again():
    # zoneinfo holds an EWSTimeZone only weakly: without the product's hold, exchangelib's own
    # EWSTimeZone(key) (its parsing of every item read) would load the zone file anew each time.
    zone = ews_timezone("Pacific/Chatham")
    assert ews_timezone("Pacific/Chatham") is zone
    assert EWSTimeZone("Pacific/Chatham") is zone
    with pytest.raises(base.InvalidItem):
        ews_timezone("Nowhere/Unknown")
