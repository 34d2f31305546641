"""calendarView and calendarView/delta: occurrences and exceptions (no masters), a window fixed in the token."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse

ALICE = "alice@contoso.example"
A = f"/users/{ALICE}"
WINDOW = {"startDateTime": "2027-03-01T00:00:00Z", "endDateTime": "2027-04-01T00:00:00Z"}
WEEKLY = {
    "Recurrence": {
        "pattern": {"type": "WeeklyRecurrence", "Interval": "1", "DaysOfWeek": "Monday", "FirstDayOfWeek": "Monday"},
        "range": {"type": "NumberedRecurrence", "StartDate": "2027-03-01", "NumberOfOccurrences": "4"},
    }
}


def at(day: int, hour: int = 9) -> datetime:
    return datetime(2027, 3, day, hour, tzinfo=UTC)


def delta_round(graph, url, **kwargs) -> tuple[list[dict], str, int]:
    entries, requests = [], 0
    answer = graph.get(url, **kwargs)
    while True:
        requests += 1
        assert answer.status_code == 200, answer.text
        body = answer.json()
        entries += body["value"]
        if "@odata.deltaLink" in body:
            return entries, body["@odata.deltaLink"], requests
        answer = graph.get(body["@odata.nextLink"], headers=kwargs.get("headers"))


def test_calendar_view_lists_occurrences_and_exceptions_but_not_masters(exchange_sim, graph):
    user = exchange_sim.user(ALICE)
    series = user.create_event("Jour fixe", at(1), at(1, 10), send=False, **WEEKLY)
    user.edit(user.occurrence(series, 2), Start=at(9), End=at(9, 10))
    user.create_event("Single", at(5), at(5, 10), send=False)
    user.create_event("Later", at(1) + timedelta(days=60), at(1, 10) + timedelta(days=60), send=False)
    view = graph.get(f"{A}/calendarView", params=WINDOW).json()["value"]
    assert [(e["subject"], e["type"]) for e in view] == [
        ("Jour fixe", "occurrence"),
        ("Single", "singleInstance"),
        ("Jour fixe", "exception"),
        ("Jour fixe", "occurrence"),
        ("Jour fixe", "occurrence"),
    ]
    missing = graph.get(f"{A}/calendarView")
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "ErrorInvalidParameter"
    paged = graph.get(f"{A}/calendarView", params={**WINDOW, "$top": "2", "$select": "subject,start"}).json()
    assert len(paged["value"]) == 2 and "@odata.nextLink" in paged


def test_a_delta_round_then_an_idle_round_of_one_request(exchange_sim, graph):
    user = exchange_sim.user(ALICE)
    user.create_event("Jour fixe", at(1), at(1, 10), send=False, **WEEKLY)
    entries, delta_link, requests = delta_round(graph, f"{A}/calendarView/delta", params=WINDOW, headers={"Prefer": "odata.maxpagesize=3"})
    assert len(entries) == 4 and requests == 2 and {e["type"] for e in entries} == {"occurrence"}
    assert "startDateTime" not in parse_qs(urlparse(delta_link).query)  # the window is in the token
    exchange_sim.counters.reset()
    idle, _, requests = delta_round(graph, delta_link)
    assert idle == [] and requests == 1
    assert exchange_sim.counters.for_mailbox(ALICE, protocol="graph") == 1


def test_the_next_round_brings_changes_exceptions_and_removals(exchange_sim, graph):
    user = exchange_sim.user(ALICE)
    series = user.create_event("Jour fixe", at(1), at(1, 10), send=False, **WEEKLY)
    single = user.create_event("Single", at(5), at(5, 10), send=False)
    leaving = user.create_event("Leaving", at(6), at(6, 10), send=False)
    first, delta_link, _ = delta_round(graph, f"{A}/calendarView/delta", params=WINDOW)
    ids = {(e["subject"], e["start"]["dateTime"][:10]): e["id"] for e in first}
    user.delete(user.occurrence(series, 3))
    user.edit(single, Location="Room 2")
    user.edit(leaving, Start=at(6) + timedelta(days=60), End=at(6, 10) + timedelta(days=60))
    user.create_event("New", at(20), at(20, 10), send=False)
    entries, delta_link, _ = delta_round(graph, delta_link)
    removed = {e["id"] for e in entries if "@removed" in e}
    assert ids[("Jour fixe", "2027-03-15")] in removed and ids[("Leaving", "2027-03-06")] in removed
    changed = {(e["subject"], e["type"]) for e in entries if "@removed" not in e}
    assert ("Single", "singleInstance") in changed and ("New", "singleInstance") in changed
    assert not any(e.get("type") == "seriesMaster" for e in entries)
    single_entry = next(e for e in entries if e.get("subject") == "Single")
    assert single_entry["location"]["displayName"] == "Room 2"


def test_events_changed_outside_the_window_come_as_removed(exchange_sim, graph):
    user = exchange_sim.user(ALICE)
    _, delta_link, _ = delta_round(graph, f"{A}/calendarView/delta", params=WINDOW)
    outside = user.create_event("Far away", at(1) + timedelta(days=90), at(1, 10) + timedelta(days=90), send=False)
    entries, _, _ = delta_round(graph, delta_link)
    assert [e["@removed"] for e in entries] == [{"reason": "deleted"}]
    assert outside.id.replace("+", "-").replace("/", "_") == entries[0]["id"]


def test_invalid_tokens_are_410_and_unsupported_options_400(exchange_sim, graph):
    _, delta_link, _ = delta_round(graph, f"{A}/calendarView/delta", params=WINDOW)
    assert graph.get(f"{A}/calendarView/delta", params={"$deltatoken": "garbage"}).status_code == 410
    exchange_sim.graph.invalidate_delta_tokens()
    answer = graph.get(delta_link)
    assert answer.status_code == 410 and answer.json()["error"]["code"] == "SyncStateNotFound"
    assert graph.get(f"{A}/calendarView/delta", params={**WINDOW, "$select": "subject"}).status_code == 400
    assert graph.get(f"{A}/calendarView/delta").status_code == 400  # a first round needs the window
