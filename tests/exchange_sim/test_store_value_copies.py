"""The store's copies of item values (plain, plain_copy) answer what their general forms answer: a
fresh container at every level, atoms as they are, datetimes as aware UTC; a text body's HTML is the
same text however often it is converted."""

from __future__ import annotations

import copy
from collections import OrderedDict
from datetime import UTC, date, datetime, timedelta, timezone

from exchange_sim.store import plain, plain_copy, text_to_html

BERLIN = timezone(timedelta(hours=1))


def _values() -> dict:
    return {
        "Subject": "Review",
        "IsAllDayEvent": False,
        "ReminderMinutesBeforeStart": 15,
        "Start": datetime(2027, 3, 10, 9, tzinfo=UTC),
        "End": datetime(2027, 3, 10, 11, tzinfo=BERLIN),
        "Naive": datetime(2027, 3, 10, 9),
        "Day": date(2027, 3, 10),
        "Nothing": None,
        "Raw": b"\x00\x01",
        "Categories": ["Red", "Blue"],
        "Body": {"type": "Text", "content": "Agenda"},
        "RequiredAttendees": [
            {"Mailbox": {"EmailAddress": "bob@contoso.example"}, "ResponseType": "Accept", "LastResponseTime": datetime(2027, 3, 1, 8, tzinfo=BERLIN)},
        ],
        "_exceptions": {"2027-03-17T09:00:00Z": {"Subject": "Moved", "Start": datetime(2027, 3, 17, 10, tzinfo=UTC)}},
        "Pair": ("a", ["b"]),
        "Ordered": OrderedDict(a=[1, 2]),
    }


def _reference_plain(value):
    """plain as it read before its fast paths: every dict and list through isinstance."""
    if isinstance(value, datetime):
        offset = value.utcoffset() or timedelta(0)
        naive = datetime(value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond)
        return (naive - offset).replace(tzinfo=UTC)
    if isinstance(value, dict):
        return {k: _reference_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_reference_plain(v) for v in value]
    return value


def _containers(value) -> list[int]:
    """The ids of the dicts and lists in a value (a tuple, which plain keeps as it is, not looked into)."""
    if isinstance(value, dict):
        return [id(value), *(i for v in value.values() for i in _containers(v))]
    if isinstance(value, list):
        return [id(value), *(i for v in value for i in _containers(v))]
    return []


def test_plain_answers_what_its_general_form_answers_in_fresh_containers():
    values = _values()
    made = plain(values)
    assert made == _reference_plain(values)
    assert [type(v) for v in made.values()] == [type(v) for v in _reference_plain(values).values()]
    assert made["End"] == datetime(2027, 3, 10, 10, tzinfo=UTC) and made["End"].tzinfo is UTC
    assert not set(_containers(made)) & set(_containers(values))


def test_plain_copy_answers_what_deepcopy_answers_in_fresh_containers():
    values = _values()
    copied = plain_copy(values)
    assert copied == copy.deepcopy(values)
    assert type(copied["Pair"]) is tuple and type(copied["Ordered"]) is OrderedDict
    assert not set(_containers(copied)) & set(_containers(values))
    copied["RequiredAttendees"][0]["Mailbox"]["EmailAddress"] = "changed"
    assert values["RequiredAttendees"][0]["Mailbox"]["EmailAddress"] == "bob@contoso.example"


def test_a_text_body_converts_to_the_same_html_each_time():
    text = "line one\nline <two> & more"
    first = text_to_html(text)
    assert text_to_html("".join(["line one\n", "line <two> & more"])) == first
    assert "line one<br>\r\nline &lt;two&gt; &amp; more" in first and first.startswith("<html>")
