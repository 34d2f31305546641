"""Graph events: create/read/update/delete, invitations and cancellations, responses, recurrence, time zones."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.fixtures.exchange_sim import graph_client

ALICE, BOB, CAROL = "alice@contoso.example", "bob@contoso.example", "carol@contoso.example"
A = f"/users/{ALICE}"
BERLIN = "W. Europe Standard Time"
SYNC_ID = "String {6a1f1f7e-3c52-4d43-9a55-8f3c5b0d2a11} Name CrmSyncId"


def when(text: str, zone: str = BERLIN) -> dict:
    return {"dateTime": text, "timeZone": zone}


def event(subject="Review", start="2027-03-10T10:00:00", end="2027-03-10T11:00:00", zone=BERLIN, **extra) -> dict:
    return {"subject": subject, "start": when(start, zone), "end": when(end, zone), **extra}


def attendees(*addresses: str) -> list[dict]:
    return [{"emailAddress": {"address": a, "name": a.split("@")[0].title()}, "type": "required"} for a in addresses]


def create(graph, body, user=ALICE, **kwargs) -> dict:
    answer = graph.post(f"/users/{user}/events", json=body, **kwargs)
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_an_event_is_stored_at_its_instant_and_answered_in_utc_or_the_preferred_zone(exchange_sim, graph):
    created = create(graph, event(body={"contentType": "text", "content": "Agenda"}, location={"displayName": "Room 1"}))
    assert created["start"] == {"dateTime": "2027-03-10T09:00:00.0000000", "timeZone": "UTC"}
    assert created["originalStartTimeZone"] == BERLIN and created["type"] == "singleInstance" and created["isOrganizer"]
    assert created["organizer"]["emailAddress"]["address"] == ALICE and created["location"]["displayName"] == "Room 1"
    assert created["body"]["contentType"] == "html" and "Agenda" in created["body"]["content"] and created["bodyPreview"] == "Agenda"
    stored = exchange_sim.user(ALICE).events()[0]
    assert stored.props["Start"] == datetime(2027, 3, 10, 9, tzinfo=UTC) and stored.props["StartTimeZone"] == BERLIN
    local = graph.get(f"{A}/events/{created['id']}", headers={"Prefer": 'outlook.timezone="Pacific Standard Time"'}).json()
    assert local["start"] == {"dateTime": "2027-03-10T01:00:00.0000000", "timeZone": "Pacific Standard Time"}
    iana = create(graph, event(start="2027-07-01T10:00:00", end="2027-07-01T11:00:00", zone="Europe/Berlin"))
    assert iana["start"]["dateTime"] == "2027-07-01T08:00:00.0000000"


def test_an_unknown_time_zone_is_refused(graph):
    answer = graph.post(f"{A}/events", json=event(zone="Mars Standard Time"))
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "TimeZoneNotSupportedException"


def test_all_day_events_are_floating_days(graph):
    created = create(graph, event(start="2027-03-10T00:00:00", end="2027-03-11T00:00:00", isAllDay=True))
    assert created["isAllDay"] and created["start"]["dateTime"] == "2027-03-10T00:00:00.0000000"
    tokyo = graph.get(f"{A}/events/{created['id']}", headers={"Prefer": 'outlook.timezone="Tokyo Standard Time"'}).json()
    assert tokyo["start"] == {"dateTime": "2027-03-10T00:00:00.0000000", "timeZone": "Tokyo Standard Time"}
    assert tokyo["end"]["dateTime"] == "2027-03-11T00:00:00.0000000"


def test_creating_an_event_with_attendees_sends_the_invitations(exchange_sim, graph):
    created = create(graph, event(attendees=attendees(BOB, "ext@fabrikam.example")))
    copies = exchange_sim.user(BOB).events()
    assert len(copies) == 1 and copies[0].props["UID"] == created["iCalUId"]
    with graph_client(exchange_sim) as client:
        bobs = client.get(f"/users/{BOB}/events").json()["value"]
    assert bobs[0]["isOrganizer"] is False and bobs[0]["responseStatus"]["response"] == "notResponded"
    assert bobs[0]["organizer"]["emailAddress"]["address"] == ALICE


def test_updating_a_meeting_sends_updates_and_removed_attendees_get_cancellations(exchange_sim, graph):
    created = create(graph, event(attendees=attendees(BOB, CAROL)))
    answer = graph.patch(f"{A}/events/{created['id']}", json={"location": {"displayName": "Room 9"}, "attendees": attendees(BOB)})
    assert answer.status_code == 200
    assert exchange_sim.user(BOB).events()[0].props["Location"] == "Room 9"
    assert exchange_sim.user(CAROL).events()[0].props["IsCancelled"] is True


def test_deleting_or_cancelling_the_organizers_meeting_cancels_it_for_attendees(exchange_sim, graph):
    first = create(graph, event("First", attendees=attendees(BOB)))
    second = create(graph, event("Second", attendees=attendees(CAROL)))
    assert graph.delete(f"{A}/events/{first['id']}").status_code == 204
    assert graph.post(f"{A}/events/{second['id']}/cancel", json={"comment": "Sorry"}).status_code == 202
    assert exchange_sim.user(BOB).events()[0].props["IsCancelled"] is True
    assert exchange_sim.user(CAROL).events()[0].props["IsCancelled"] is True
    assert exchange_sim.user(ALICE).events() == []
    with graph_client(exchange_sim) as client:
        bobs = client.get(f"/users/{BOB}/events").json()["value"]
        answer = client.post(f"/users/{BOB}/events/{bobs[0]['id']}/cancel", json={})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "ErrorInvalidRequest"


def test_an_attendee_responds_and_the_organizers_copy_records_it(exchange_sim, graph):
    created = create(graph, event(attendees=attendees(BOB)))
    bobs = graph.get(f"/users/{BOB}/events").json()["value"][0]
    assert graph.post(f"/users/{BOB}/events/{bobs['id']}/accept", json={"sendResponse": True}).status_code == 202
    organizer = graph.get(f"{A}/events/{created['id']}").json()
    assert organizer["attendees"][0]["status"]["response"] == "accepted"
    assert graph.get(f"/users/{BOB}/events/{bobs['id']}").json()["responseStatus"]["response"] == "accepted"
    assert graph.post(f"{A}/events/{created['id']}/accept", json={}).status_code == 400


def test_a_transaction_id_makes_a_create_idempotent(exchange_sim, graph):
    body = event(transactionId="crm-7-attempt", attendees=attendees(BOB))
    first = create(graph, body)
    again = create(graph, body)
    assert again["id"] == first["id"] and again["transactionId"] == "crm-7-attempt"
    assert len(exchange_sim.user(ALICE).events()) == 1 and len(exchange_sim.user(BOB).events()) == 1


def test_if_match_with_a_stale_change_key_is_412(exchange_sim, graph):
    created = create(graph, event())
    exchange_sim.user(ALICE).touch(exchange_sim.user(ALICE).events()[0])  # Exchange rewrites it: the change key moves
    answer = graph.patch(f"{A}/events/{created['id']}", json={"subject": "New"}, headers={"If-Match": created["@odata.etag"]})
    assert answer.status_code == 412 and answer.json()["error"]["code"] == "ErrorIrresolvableConflict"


def test_the_sync_id_is_found_by_filter_and_expanded(graph):
    created = create(graph, event(singleValueExtendedProperties=[{"id": SYNC_ID, "value": "act-1"}]))
    create(graph, event("Other"))
    query = {
        "$filter": f"singleValueExtendedProperties/Any(ep: ep/id eq '{SYNC_ID}' and ep/value eq 'act-1')",
        "$expand": f"singleValueExtendedProperties($filter=id eq '{SYNC_ID}')",
        "$select": "subject",
    }
    found = graph.get(f"{A}/events", params=query).json()["value"]
    assert [e["id"] for e in found] == [created["id"]]
    assert found[0]["singleValueExtendedProperties"] == [{"id": SYNC_ID, "value": "act-1"}]


RECURRENCES = [
    {"pattern": {"type": "daily", "interval": 2}, "range": {"type": "numbered", "startDate": "2027-03-01", "numberOfOccurrences": 4}},
    {"pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday", "wednesday"], "firstDayOfWeek": "monday"},
     "range": {"type": "endDate", "startDate": "2027-03-01", "endDate": "2027-03-31"}},
    {"pattern": {"type": "absoluteMonthly", "interval": 1, "dayOfMonth": 15}, "range": {"type": "noEnd", "startDate": "2027-03-15"}},
    {"pattern": {"type": "relativeMonthly", "interval": 1, "daysOfWeek": ["thursday"], "index": "last"},
     "range": {"type": "numbered", "startDate": "2027-03-01", "numberOfOccurrences": 3}},
    {"pattern": {"type": "absoluteYearly", "dayOfMonth": 1, "month": 4}, "range": {"type": "numbered", "startDate": "2027-04-01", "numberOfOccurrences": 2}},
    {"pattern": {"type": "relativeYearly", "daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"], "index": "first", "month": 5},
     "range": {"type": "numbered", "startDate": "2027-05-01", "numberOfOccurrences": 2}},
]  # fmt: skip


@pytest.mark.parametrize("recurrence", RECURRENCES, ids=lambda r: r["pattern"]["type"])
def test_recurrence_patterns_round_trip(graph, recurrence):
    created = create(graph, event(start="2027-03-01T10:00:00", end="2027-03-01T10:30:00", recurrence=recurrence))
    assert created["type"] == "seriesMaster"
    answered = created["recurrence"]
    for key, value in recurrence["pattern"].items():
        assert answered["pattern"][key] == value, key
    for key, value in recurrence["range"].items():
        assert answered["range"][key] == value, key
    assert answered["range"]["recurrenceTimeZone"] == BERLIN


def test_invalid_recurrences_are_refused(graph):
    bad = {"pattern": {"type": "weekly", "interval": 1}, "range": {"type": "noEnd", "startDate": "2027-03-01"}}
    answer = graph.post(f"{A}/events", json=event(recurrence=bad))
    assert answer.status_code == 400


def test_instances_occurrence_edits_and_deletions(exchange_sim, graph):
    weekly = {"pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"]}, "range": {"type": "numbered", "startDate": "2027-03-01", "numberOfOccurrences": 4}}
    master = create(graph, event("Jour fixe", "2027-03-01T09:00:00", "2027-03-01T09:30:00", recurrence=weekly, attendees=attendees(BOB)))
    window = {"startDateTime": "2027-03-01T00:00:00Z", "endDateTime": "2027-04-01T00:00:00Z"}
    instances = graph.get(f"{A}/events/{master['id']}/instances", params=window).json()["value"]
    assert [i["type"] for i in instances] == ["occurrence"] * 4
    assert {i["seriesMasterId"] for i in instances} == {master["id"]}
    assert instances[1]["originalStart"] == "2027-03-08T08:00:00Z"
    moved = graph.patch(f"{A}/events/{instances[1]['id']}", json={"start": when("2027-03-09T09:00:00"), "end": when("2027-03-09T09:30:00")})
    assert moved.status_code == 200 and moved.json()["type"] == "exception" and moved.json()["id"] == instances[1]["id"]
    assert graph.delete(f"{A}/events/{instances[2]['id']}").status_code == 204
    after = graph.get(f"{A}/events/{master['id']}/instances", params=window).json()["value"]
    assert [(i["type"], i["start"]["dateTime"][:10]) for i in after] == [
        ("occurrence", "2027-03-01"),
        ("exception", "2027-03-09"),
        ("occurrence", "2027-03-22"),
    ]
    bob_view = exchange_sim.user(BOB).view(datetime(2027, 3, 1, tzinfo=UTC), datetime(2027, 4, 1, tzinfo=UTC))
    assert len(bob_view) == 3  # the attendee's copy follows the organizer's exception and deletion
    assert graph.get(f"{A}/events/{master['id']}/instances").status_code == 400


def test_calendars(graph):
    calendars = graph.get(f"{A}/calendars").json()["value"]
    assert [c["name"] for c in calendars] == ["Calendar"] and calendars[0]["isDefaultCalendar"]
    assert graph.get(f"{A}/calendar").json()["id"] == calendars[0]["id"]
    created = graph.post(f"{A}/calendars/{calendars[0]['id']}/events", json=event())
    assert created.status_code == 201
    assert [e["id"] for e in graph.get(f"{A}/calendar/events").json()["value"]] == [created.json()["id"]]


def test_an_event_made_in_outlook_is_read_over_graph(exchange_sim, graph):
    exchange_sim.user(ALICE).create_event(
        "From Outlook", datetime(2027, 3, 10, 9, tzinfo=UTC), datetime(2027, 3, 10, 10, tzinfo=UTC), Sensitivity="Private", LegacyFreeBusyStatus="OOF"
    )
    found = graph.get(f"{A}/events").json()["value"]
    assert [(e["subject"], e["sensitivity"], e["showAs"]) for e in found] == [("From Outlook", "private", "oof")]


def test_what_graph_writes_reads_back_over_ews_within_the_schema(exchange_sim, graph):
    from .conftest import connect

    weekly = {"pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["tuesday"]}, "range": {"type": "endDate", "startDate": "2027-03-02", "endDate": "2027-03-30"}}
    create(
        graph,
        event(
            "Full",
            "2027-03-02T10:00:00",
            "2027-03-02T11:00:00",
            body={"contentType": "html", "content": "<p>Hi</p>"},
            attendees=attendees(BOB),
            recurrence=weekly,
            sensitivity="private",
            showAs="tentative",
            importance="high",
            isReminderOn=True,
            reminderMinutesBeforeStart=30,
            categories=["CRM"],
            singleValueExtendedProperties=[{"id": SYNC_ID, "value": "act-9"}],
        ),
    )
    graph.post(
        f"{A}/contacts",
        json={"givenName": "Ann", "surname": "Lee", "birthday": "1980-05-17T00:00:00Z", "emailAddresses": [{"address": "a@x.example", "name": "Ann"}], "homeAddress": {"city": "Paris"}, "children": ["Kim"]},
    )
    account = connect(exchange_sim)
    [item] = list(account.calendar.all())
    assert (item.subject, item.sensitivity, item.legacy_free_busy_status, item.importance) == ("Full", "Private", "Tentative", "High")
    assert item.reminder_minutes_before_start == 30 and item.categories == ["CRM"] and item.recurrence is not None
    [contact] = list(account.contacts.all())
    assert contact.birthday is not None and contact.physical_addresses[0].city == "Paris"
    assert exchange_sim.schema_violations == []
