"""The Domino REST API front end: JWT login, PIM calendar entries (JSCalendar) over the shared store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from exchange_sim import Simulator
from tests.fixtures import domino_schema

ALICE = "alice@contoso.example"
BOB = "bob@contoso.example"


def valid_entries(response: httpx.Response) -> None:
    """Every calendar entry the front end answers is a JSEvent of openapi.pim.json."""
    path = response.request.url.path
    if response.status_code != 200 or "/pim-v1/calendar/" not in path:
        return
    response.read()
    body = response.json()
    for entry in body if isinstance(body, list) else [body] if body.get("@type") == "jsevent" else []:
        domino_schema.validate(entry, "JSEvent")


def login(sim: Simulator, username: str = "", password: str = "") -> httpx.Client:
    if not username:
        username, password = sim.credentials
    client = httpx.Client(base_url=sim.domino_url, timeout=10, event_hooks={"response": [valid_entries]})
    answer = client.post("/v1/auth", json={"username": username, "password": password})
    assert answer.status_code == 200, answer.text
    client.headers["Authorization"] = f"Bearer {answer.json()['bearer']}"
    return client


def entry(title: str, start: str = "2030-05-06T10:00:00", **extra: object) -> dict[str, object]:
    return {"@type": "jsevent", "title": title, "start": start, "duration": "PT1H", "timeZone": "Europe/Berlin", **extra}


def test_auth_gives_a_jwt_with_its_lifetime_and_refuses_a_wrong_password(exchange_sim: Simulator) -> None:
    user, password = exchange_sim.credentials
    with httpx.Client(base_url=exchange_sim.domino_url) as client:
        answer = client.post("/v1/auth", json={"username": user, "password": password})
        assert answer.status_code == 200
        body = answer.json()
        assert body["bearer"].count(".") == 2 and body["expSeconds"] == 21600
        refused = client.post("/v1/auth", json={"username": user, "password": "nope"})
        assert refused.status_code == 401 and refused.json()["status"] == 401
        assert client.get("/pim-v1/calendars", params={"mailboxid": ALICE}).status_code == 401


def test_a_token_expires_on_the_simulator_clock_and_when_expired_by_hand(exchange_sim: Simulator) -> None:
    exchange_sim.domino.token_seconds = 60
    client = login(exchange_sim)
    assert client.get("/pim-v1/calendars", params={"mailboxid": ALICE}).status_code == 200
    exchange_sim.clock.advance(timedelta(seconds=61))
    assert client.get("/pim-v1/calendars", params={"mailboxid": ALICE}).status_code == 401
    client = login(exchange_sim)
    exchange_sim.domino.expire_tokens()
    assert client.get("/pim-v1/calendars", params={"mailboxid": ALICE}).status_code == 401


def test_a_mailbox_owner_reaches_only_their_own_mail_file(exchange_sim: Simulator) -> None:
    client = login(exchange_sim, ALICE, "alice-password")
    assert client.get("/pim-v1/calendars").status_code == 200
    assert client.get("/pim-v1/calendars", params={"mailboxid": BOB}).status_code == 403
    service = login(exchange_sim)
    assert service.get("/pim-v1/calendars", params={"mailboxid": "nobody@contoso.example"}).status_code == 404


def test_create_read_update_list_and_delete_an_entry_seen_from_ews_too(exchange_sim: Simulator) -> None:
    client = login(exchange_sim)
    mailbox = {"mailboxid": ALICE}
    created = client.post(
        "/pim-v1/calendar/default",
        params=mailbox,
        json=entry("Review", description="Agenda", locations={"x": {"@type": "Location", "name": "Room 1"}}, AdditionalFields={"CrmSyncId": "crm-7"}),
    )
    assert created.status_code == 200, created.text
    body = created.json()
    uid = body["uid"]
    assert body["title"] == "Review" and body["start"] == "2030-05-06T10:00:00" and body["duration"] == "PT1H"
    assert body["AdditionalFields"] == {"CrmSyncId": "crm-7"}
    (item,) = exchange_sim.user(ALICE).events()
    assert item.props["Start"] == datetime(2030, 5, 6, 8, tzinfo=UTC)
    assert item.props["Location"] == "Room 1" and item.extended_value("CrmSyncId") == "crm-7"

    read = client.get(f"/pim-v1/calendar/default/{uid}", params=mailbox).json()
    assert read["description"] == "Agenda" and read["updated"] == body["updated"]

    updated = client.put(f"/pim-v1/calendar/default/{uid}", params=mailbox, json={"title": "Review 2"}).json()
    assert updated["title"] == "Review 2" and updated["updated"] > body["updated"]
    assert updated["description"] == "Agenda"  # left out: left as it is

    listed = client.get("/pim-v1/calendar/default", params={**mailbox, "startdate": "2030-05-06", "enddate": "2030-05-06"}).json()
    assert [e["uid"] for e in listed] == [uid]
    assert client.get("/pim-v1/calendar/default", params={**mailbox, "startdate": "2030-05-07", "enddate": "2030-05-09"}).json() == []

    assert client.delete(f"/pim-v1/calendar/default/{uid}", params=mailbox).status_code == 200
    assert client.get(f"/pim-v1/calendar/default/{uid}", params=mailbox).status_code == 404
    assert exchange_sim.user(ALICE).events() == []


def test_an_outlook_edit_moves_updated_even_under_a_frozen_clock(exchange_sim: Simulator) -> None:
    exchange_sim.clock.set(datetime(2030, 1, 1, tzinfo=UTC), frozen=True)
    alice = exchange_sim.user(ALICE)
    item = alice.create_event("Outlook", datetime(2030, 1, 2, 9, tzinfo=UTC), datetime(2030, 1, 2, 10, tzinfo=UTC))
    client = login(exchange_sim)
    before = client.get(f"/pim-v1/calendar/default/{item.props['UID']}", params={"mailboxid": ALICE}).json()
    alice.edit(item, Subject="Outlook 2")
    after = client.get(f"/pim-v1/calendar/default/{item.props['UID']}", params={"mailboxid": ALICE}).json()
    assert after["title"] == "Outlook 2" and after["updated"] != before["updated"]


def test_send_delivers_the_invitation_and_a_cancelled_status_cancels_it(exchange_sim: Simulator) -> None:
    client = login(exchange_sim)
    participants = {
        "a": {"@type": "Participant", "email": ALICE, "roles": {"owner": True, "chair": True}},
        "b": {"@type": "Participant", "email": BOB, "roles": {"attendee": True}},
    }
    body = client.post("/pim-v1/calendar/default", params={"mailboxid": ALICE, "send": "true"}, json=entry("Meet", participants=participants)).json()
    (copy,) = exchange_sim.user(BOB).events()
    assert copy.props["UID"] == body["uid"]
    roles = {p["email"]: p["roles"] for p in body["participants"].values()}
    assert roles == {ALICE: {"owner": True, "chair": True}, BOB: {"attendee": True}}
    answer = client.put(f"/pim-v1/calendar/default/{body['uid']}", params={"mailboxid": ALICE, "send": "true"}, json={"status": "cancelled"})
    assert answer.status_code == 200
    assert exchange_sim.user(ALICE).events() == []
    (copy,) = exchange_sim.user(BOB).events()
    assert copy.props.get("IsCancelled")
    bob_view = client.get(f"/pim-v1/calendar/default/{body['uid']}", params={"mailboxid": BOB}).json()
    assert bob_view["status"] == "cancelled"


def test_without_send_no_invitation_goes_out(exchange_sim: Simulator) -> None:
    client = login(exchange_sim)
    participants = {"b": {"@type": "Participant", "email": BOB, "roles": {"attendee": True}}}
    client.post("/pim-v1/calendar/default", params={"mailboxid": ALICE}, json=entry("Draft", participants=participants))
    assert exchange_sim.user(BOB).events() == []


def test_faults_and_counters_work_for_domino_operations(exchange_sim: Simulator) -> None:
    client = login(exchange_sim)
    exchange_sim.faults.http_503(operation="domino.calendar.list", retry_after=2)
    answer = client.get("/pim-v1/calendar/default", params={"mailboxid": ALICE})
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "2"
    exchange_sim.faults.unauthorized(operation="domino.calendar.list")
    assert client.get("/pim-v1/calendar/default", params={"mailboxid": ALICE}).status_code == 401
    assert client.get("/pim-v1/calendar/default", params={"mailboxid": ALICE}).status_code == 200
    assert exchange_sim.counters["domino.calendar.list"] == 3
    assert exchange_sim.counters.for_mailbox(ALICE, protocol="domino") == 3
    exchange_sim.faults.drop_connection(operation="domino.calendar.get")
    with pytest.raises(httpx.TransportError):
        client.get("/pim-v1/calendar/default/x", params={"mailboxid": ALICE})


def test_bad_input_answers_400(exchange_sim: Simulator) -> None:
    client = login(exchange_sim)
    params = {"mailboxid": ALICE}
    assert client.post("/pim-v1/calendar/default", params=params, json={"title": "no start"}).status_code == 400
    assert client.post("/pim-v1/calendar/default", params=params, json=entry("x", duration="1 hour")).status_code == 400
    rule = [{"@type": "RecurrenceRule", "frequency": "weekly", "count": 3}]
    excluded_and_renamed = {"2030-05-13T10:00:00": {"excluded": True, "title": "x"}}
    answer = client.post("/pim-v1/calendar/default", params=params, json=entry("x", recurrenceRules=rule, recurrenceOverrides=excluded_and_renamed))
    assert answer.status_code == 400
    no_rule = client.post("/pim-v1/calendar/default", params=params, json=entry("x", recurrenceOverrides={"2030-05-13T10:00:00": {"excluded": True}}))
    assert no_rule.status_code == 400
    added = client.post("/pim-v1/calendar/default", params=params, json=entry("x", recurrenceRules=rule, recurrenceOverrides={"2030-05-14T10:00:00": {}}))
    assert added.status_code == 501  # an added occurrence (an RDATE): not simulated
    assert exchange_sim.user(ALICE).events() == []


def test_a_repeating_entry_is_a_series_in_the_store_and_comes_back_as_its_rule(exchange_sim: Simulator) -> None:
    client = login(exchange_sim)
    rule = {"@type": "RecurrenceRule", "frequency": "weekly", "byDay": [{"@type": "NDay", "day": "mo"}], "count": 3}
    body = client.post("/pim-v1/calendar/default", params={"mailboxid": ALICE}, json=entry("Weekly", recurrenceRules=[rule])).json()
    (back,) = body["recurrenceRules"]
    assert (back["frequency"], back["count"], back["byDay"][0]["day"]) == ("weekly", 3, "mo")
    (series,) = exchange_sim.user(ALICE).events()
    view = exchange_sim.user(ALICE).view(datetime(2030, 5, 1, tzinfo=UTC), datetime(2030, 6, 1, tzinfo=UTC))
    assert series.props["Recurrence"] and len(view) == 3


def test_an_occurrence_removed_or_changed_in_outlook_shows_as_an_override(exchange_sim: Simulator) -> None:
    client = login(exchange_sim)
    rule = {"@type": "RecurrenceRule", "frequency": "daily", "count": 3}
    body = client.post("/pim-v1/calendar/default", params={"mailboxid": ALICE}, json=entry("Daily", recurrenceRules=[rule])).json()
    alice = exchange_sim.user(ALICE)
    (series,) = alice.events()
    alice.delete(alice.occurrence(series, 2))
    alice.edit(alice.occurrence(series, 3), Subject="Daily (moved)")
    read = client.get(f"/pim-v1/calendar/default/{body['uid']}", params={"mailboxid": ALICE}).json()
    assert read["recurrenceOverrides"]["2030-05-07T10:00:00"] == {"excluded": True}
    assert read["recurrenceOverrides"]["2030-05-08T10:00:00"]["title"] == "Daily (moved)"


def test_overrides_written_over_domino_are_the_series_exceptions_seen_over_ews(exchange_sim: Simulator) -> None:
    client = login(exchange_sim)
    params = {"mailboxid": ALICE}
    rule = {"@type": "RecurrenceRule", "frequency": "daily", "count": 4}
    overrides = {"2030-05-07T10:00:00": {"excluded": True}, "2030-05-08T10:00:00": {"title": "Moved", "start": "2030-05-08T14:00:00", "duration": "PT30M"}}
    created = client.post("/pim-v1/calendar/default", params=params, json=entry("Daily", recurrenceRules=[rule], recurrenceOverrides=overrides))
    assert created.status_code == 200, created.text
    assert created.json()["recurrenceOverrides"] == overrides
    alice = exchange_sim.user(ALICE)
    view = alice.view(datetime(2030, 5, 1, tzinfo=UTC), datetime(2030, 6, 1, tzinfo=UTC))
    assert [(i.props["Subject"], i.props["Start"].hour, i.props["End"] - i.props["Start"]) for i in view] == [
        ("Daily", 8, timedelta(hours=1)),
        ("Moved", 12, timedelta(minutes=30)),
        ("Daily", 8, timedelta(hours=1)),
    ]
    uid = created.json()["uid"]
    # The whole set is written at once: the removed occurrence back, another one renamed.
    renamed = {"2030-05-09T10:00:00": {"title": "Last", "locations": {"1": {"@type": "Location", "name": "Room 9"}}}}
    updated = client.put(f"/pim-v1/calendar/default/{uid}", params=params, json={"recurrenceOverrides": renamed}).json()
    assert updated["recurrenceOverrides"] == {"2030-05-09T10:00:00": {"title": "Last", "locations": updated["recurrenceOverrides"]["2030-05-09T10:00:00"]["locations"]}}
    (series,) = alice.events()
    last = alice.occurrence(series, 4)
    assert (last.props["Subject"], last.props["Location"]) == ("Last", "Room 9")
    assert len(alice.view(datetime(2030, 5, 1, tzinfo=UTC), datetime(2030, 6, 1, tzinfo=UTC))) == 4
    # An override written again as it is keeps the exception's change key (nothing moved there).
    before = exchange_sim.store.item(series.id).props["_exceptions"]
    client.put(f"/pim-v1/calendar/default/{uid}", params=params, json={"recurrenceOverrides": updated["recurrenceOverrides"], "title": "Daily 2"})
    assert exchange_sim.store.item(series.id).props["_exceptions"] == before


def test_a_new_rule_without_overrides_drops_them_and_with_them_keeps_them(exchange_sim: Simulator) -> None:
    client = login(exchange_sim)
    params = {"mailboxid": ALICE}
    rule = {"@type": "RecurrenceRule", "frequency": "daily", "count": 4}
    overrides = {"2030-05-07T10:00:00": {"excluded": True}}
    uid = client.post("/pim-v1/calendar/default", params=params, json=entry("Daily", recurrenceRules=[rule], recurrenceOverrides=overrides)).json()["uid"]
    longer = {**rule, "count": 5}
    kept = client.put(f"/pim-v1/calendar/default/{uid}", params=params, json={"recurrenceRules": [longer], "recurrenceOverrides": overrides}).json()
    assert kept["recurrenceOverrides"] == overrides
    dropped = client.put(f"/pim-v1/calendar/default/{uid}", params=params, json={"recurrenceRules": [rule]}).json()
    assert "recurrenceOverrides" not in dropped  # as Exchange does when a pattern is written


def test_an_organizers_overrides_reach_the_invitees_mail_file(exchange_sim: Simulator) -> None:
    client = login(exchange_sim)
    participants = {
        "a": {"@type": "Participant", "email": ALICE, "roles": {"owner": True, "chair": True}},
        "b": {"@type": "Participant", "email": BOB, "roles": {"attendee": True}},
    }
    rule = {"@type": "RecurrenceRule", "frequency": "daily", "count": 3}
    send = {"mailboxid": ALICE, "send": "true"}
    uid = client.post("/pim-v1/calendar/default", params=send, json=entry("Meet", participants=participants, recurrenceRules=[rule])).json()["uid"]
    overrides = {"2030-05-07T10:00:00": {"excluded": True}}
    client.put(f"/pim-v1/calendar/default/{uid}", params=send, json={"recurrenceRules": [{**rule, "count": 4}], "recurrenceOverrides": overrides})
    bob = client.get(f"/pim-v1/calendar/default/{uid}", params={"mailboxid": BOB}).json()
    assert bob["recurrenceRules"][0]["count"] == 4 and bob["recurrenceOverrides"] == overrides


def test_an_invitee_responds_in_notes_and_the_organizers_entry_records_it(exchange_sim: Simulator) -> None:
    client = login(exchange_sim)
    participants = {
        "a": {"@type": "Participant", "email": ALICE, "roles": {"owner": True, "chair": True}},
        "b": {"@type": "Participant", "email": BOB, "roles": {"attendee": True}},
    }
    uid = client.post("/pim-v1/calendar/default", params={"mailboxid": ALICE, "send": "true"}, json=entry("Meet", participants=participants)).json()["uid"]
    bob = login(exchange_sim, BOB, "bob-password")
    path = f"/pim-v1/calendarresponse/default/{uid}"
    assert bob.post(path, json={"participantAction": "counter"}).status_code == 501
    assert client.post(path, params={"mailboxid": ALICE}, json={"participantAction": "accepted"}).status_code == 400  # the chair
    answer = bob.post(path, json={"participantAction": "tentative", "participantComment": "maybe"})
    assert answer.status_code == 200, answer.text
    statuses = {p["email"]: p["participationStatus"] for p in client.get(f"/pim-v1/calendar/default/{uid}", params={"mailboxid": ALICE}).json()["participants"].values()}
    assert statuses == {ALICE: "accepted", BOB: "tentative"}
    mine = {p["email"]: p["participationStatus"] for p in bob.get(f"/pim-v1/calendar/default/{uid}").json()["participants"].values()}
    assert mine[BOB] == "tentative"
    responses = client.get(path, params={"mailboxid": ALICE}).json()["participants"]
    assert {p["email"]: p["participationStatus"] for p in responses.values()} == statuses
    for participant in responses.values():
        domino_schema.validate(participant, "Participant")
    (organizer_copy,) = exchange_sim.user(ALICE).events()  # the same response over EWS
    assert [a["ResponseType"] for a in organizer_copy.props["RequiredAttendees"]] == ["Tentative"]
    assert bob.post(path, json={"participantAction": "declined"}).status_code == 200
    assert bob.get(f"/pim-v1/calendar/default/{uid}").status_code == 404  # left the calendar
    assert exchange_sim.counters["domino.calendar.respond"] == 4
