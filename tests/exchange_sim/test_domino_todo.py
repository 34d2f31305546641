"""The Domino front end's To Do items (PIM search, pimitem, a ``jstask`` in the calendar) over the
shared store, and the schema validity of the front end's answers (openapi.pim.json)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import httpx

from exchange_sim import Simulator
from tests.fixtures.domino_schema import validate

ALICE = "alice@contoso.example"
TASKS = {"type": "DQL", "query": "Form = 'Task'"}


def login(sim: Simulator) -> httpx.Client:
    username, password = sim.credentials
    client = httpx.Client(base_url=sim.domino_url, timeout=10, params={"mailboxid": ALICE})
    answer = client.post("/v1/auth", json={"username": username, "password": password})
    assert answer.status_code == 200, answer.text
    client.headers["Authorization"] = f"Bearer {answer.json()['bearer']}"
    return client


def stamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def todo(title: str, **extra: object) -> dict[str, object]:
    return {"@type": "jstask", "title": title, "due": "2030-05-06T00:00:00", "showWithoutTime": True, **extra}


def test_a_todo_made_over_domino_is_the_task_ews_and_graph_see(exchange_sim: Simulator) -> None:
    client = login(exchange_sim)
    created = client.post(
        "/pim-v1/calendar/default",
        json=todo("Call Ann", description="About the offer", priority=1, AdditionalFields={"CrmSyncId": "crm-1"}),
    )
    assert created.status_code == 200, created.text
    body = created.json()
    validate(body, "JSTask")
    assert (body["@type"], body["title"], body["due"], body["progress"], body["priority"]) == (
        "jstask", "Call Ann", "2030-05-06T00:00:00", "needs-action", 1,
    )  # fmt: skip
    (item,) = exchange_sim.user(ALICE).tasks()
    assert item.props["Subject"] == "Call Ann" and item.props["Importance"] == "High"
    assert item.props["DueDate"] == datetime(2030, 5, 6, tzinfo=UTC)
    assert item.extended_value("CrmSyncId") == "crm-1"
    assert exchange_sim.user(ALICE).events() == []  # a To Do, not a calendar entry

    read = client.get(f"/pim-v1/pimitem/{body['uid']}")
    assert read.status_code == 200
    validate(read.json(), "JSTask")
    assert read.json() == body


def test_search_lists_ids_and_stamps_and_moves_the_stamp_on_every_edit(exchange_sim: Simulator) -> None:
    exchange_sim.clock.set(datetime(2030, 1, 1, tzinfo=UTC), frozen=True)
    alice = exchange_sim.user(ALICE)
    item = alice.create_task("Outlook's", DueDate=date(2030, 1, 5))
    client = login(exchange_sim)
    first = client.post("/pim-v1/search", json=TASKS).json()
    validate(first, "SearchResult")
    (entry,) = first["result"]
    assert first["count"] == 1 and entry["Form"] == "Task" and "CrmSyncId" not in entry
    alice.edit(item, Subject="Outlook's 2")
    (again,) = client.post("/pim-v1/search", json=TASKS).json()["result"]
    assert again["@unid"] == entry["@unid"] and stamp(again["@lastmodified"]) > stamp(entry["@lastmodified"])
    read = client.get(f"/pim-v1/pimitem/{entry['@unid']}").json()
    assert read["updated"] == again["@lastmodified"] and read["title"] == "Outlook's 2"


def test_search_pages_by_count_and_skip_and_knows_only_the_todo_query(exchange_sim: Simulator) -> None:
    alice = exchange_sim.user(ALICE)
    for i in range(5):
        alice.create_task(f"Task {i}")
    client = login(exchange_sim)
    page = client.post("/pim-v1/search", json={**TASKS, "count": 2, "skip": 4}).json()
    assert page["count"] == 5 and len(page["result"]) == 1
    assert client.post("/pim-v1/search", json={"type": "DQL", "query": "Form in ('memo')"}).status_code == 400
    assert client.post("/pim-v1/search", json={"type": "FT", "query": "Ann"}).status_code == 501


def test_completion_both_ways_progress_and_the_completion_day(exchange_sim: Simulator) -> None:
    exchange_sim.clock.set(datetime(2030, 3, 1, 15, tzinfo=UTC), frozen=True)
    client = login(exchange_sim)
    uid = client.post("/pim-v1/calendar/default", json=todo("Ship it")).json()["uid"]
    done = client.put(f"/pim-v1/pimitem/{uid}", json={"progress": "completed", "percentComplete": 100})
    assert done.status_code == 200
    validate(done.json(), "JSTask")
    assert done.json()["progress"] == "completed" and done.json()["percentComplete"] == 100
    assert done.json()["progressUpdated"] == "2030-03-01T00:00:00Z"
    (item,) = exchange_sim.user(ALICE).tasks()
    assert item.props["Status"] == "Completed" and item.props["CompleteDate"] == datetime(2030, 3, 1, tzinfo=UTC)

    reopened = client.put(f"/pim-v1/pimitem/{uid}", json={"progress": "needs-action", "percentComplete": 0}).json()
    assert reopened["progress"] == "needs-action" and "progressUpdated" not in reopened
    exchange_sim.user(ALICE).complete_task(item)  # ticked off in Outlook
    assert client.get(f"/pim-v1/pimitem/{uid}").json()["progress"] == "completed"


def test_update_writes_only_what_is_given_and_clears_what_is_null(exchange_sim: Simulator) -> None:
    client = login(exchange_sim)
    when = (datetime(2030, 5, 6, 7, 30, tzinfo=UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    alerts = {"1": {"@type": "Alert", "trigger": {"@type": "AbsoluteTrigger", "when": when}}}
    uid = client.post("/pim-v1/calendar/default", json=todo("Remind me", alerts=alerts, start="2030-05-01T00:00:00")).json()["uid"]
    body = client.put(f"/pim-v1/pimitem/{uid}", json={"title": "Remind me 2", "start": None}).json()
    validate(body, "JSTask")
    assert body["title"] == "Remind me 2" and "start" not in body and body["due"] == "2030-05-06T00:00:00"
    assert body["alerts"]["1"]["trigger"]["when"] == when
    assert "alerts" not in client.put(f"/pim-v1/pimitem/{uid}", json={"alerts": {}}).json()
    assert client.put(f"/pim-v1/pimitem/{uid}", json={"progress": "done"}).status_code == 400
    assert client.put(f"/pim-v1/pimitem/{uid}", json={"colour": "red"}).status_code == 400
    assert client.put("/pim-v1/pimitem/0123456789ABCDEF0123456789ABCDEF", json={"title": "x"}).status_code == 404


def test_delete_moves_the_todo_to_the_trash_and_it_leaves_the_search(exchange_sim: Simulator) -> None:
    client = login(exchange_sim)
    uid = client.post("/pim-v1/calendar/default", json=todo("Gone soon")).json()["uid"]
    assert client.delete(f"/pim-v1/calendar/default/{uid}").status_code == 200
    assert exchange_sim.user(ALICE).tasks() == []
    assert client.post("/pim-v1/search", json=TASKS).json() == {"count": 0, "result": []}
    assert client.get(f"/pim-v1/pimitem/{uid}").status_code == 404
    assert client.delete(f"/pim-v1/calendar/default/{uid}").status_code == 404


def test_faults_reach_the_todo_operations(exchange_sim: Simulator) -> None:
    client = login(exchange_sim)
    exchange_sim.faults.http_503(operation="domino.search", retry_after=1)
    assert client.post("/pim-v1/search", json=TASKS).status_code == 503
    assert client.post("/pim-v1/search", json=TASKS).status_code == 200
    assert exchange_sim.counters["domino.search"] == 2


def test_every_kind_of_answer_is_valid_against_the_pim_spec(exchange_sim: Simulator) -> None:
    """Calendar entries (single, repeating, a meeting), To Do items, searches and errors, in the
    shapes openapi.pim.json gives them."""
    client = login(exchange_sim)
    participants = {
        "a": {"@type": "Participant", "email": ALICE, "roles": {"owner": True, "chair": True}},
        "b": {"@type": "Participant", "email": "bob@contoso.example", "roles": {"attendee": True}},
    }
    event = {"@type": "jsevent", "title": "Meet", "start": "2030-05-06T10:00:00", "duration": "PT1H", "timeZone": "Europe/Berlin"}
    rule = [{"@type": "RecurrenceRule", "frequency": "weekly", "byDay": [{"@type": "NDay", "day": "mo"}], "count": 3}]
    reminder = {"1": {"@type": "Alert", "trigger": {"@type": "OffsetTrigger", "offset": "-PT15M", "relativeTo": "start"}}}
    bodies = [
        event,
        {**event, "title": "Weekly", "recurrenceRules": rule, "alerts": reminder},
        {**event, "title": "Meeting", "participants": participants, "locations": {"1": {"@type": "Location", "name": "Room 1"}}},
    ]
    for body in bodies:
        created = client.post("/pim-v1/calendar/default", json=body)
        assert created.status_code == 200, created.text
        validate(created.json(), "JSEvent")
    listed = client.get("/pim-v1/calendar/default", params={"startdate": "2030-05-01", "enddate": "2030-06-01"}).json()
    assert len(listed) == 3
    for entry in listed:
        validate(entry, "JSEvent")
        validate(client.get(f"/pim-v1/calendar/default/{entry['uid']}").json(), "JSEvent")
        validate(client.get(f"/pim-v1/pimitem/{entry['uid']}").json(), "JSEvent")
    exchange_sim.user(ALICE).create_task("Outlook's", DueDate=date(2030, 5, 6), StartDate=date(2030, 5, 1), Importance="Low")
    validate(client.post("/pim-v1/search", json=TASKS).json(), "SearchResult")
    for found in client.post("/pim-v1/search", json=TASKS).json()["result"]:
        validate(client.get(f"/pim-v1/pimitem/{found['@unid']}").json(), "JSTask")
    missing = client.get("/pim-v1/pimitem/0123456789ABCDEF0123456789ABCDEF")
    assert missing.status_code == 404
    validate(missing.json(), "ErrorMessage")
    exchange_sim.clock.advance(timedelta(seconds=1))
