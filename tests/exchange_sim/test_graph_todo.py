"""Graph Microsoft To Do: lists (the default list is the Tasks folder), tasks (create, read, PATCH with If-Match,
DELETE, paging), completion, linkedResources, delta with @removed, $batch and 429s."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from urllib.parse import parse_qs, urlparse

import pytest

from exchange_sim import Simulator
from tests.fixtures.exchange_sim import graph_client

ALICE, BOB = "alice@contoso.example", "bob@contoso.example"
A = f"/users/{ALICE}"
CRM_LINK = {"applicationName": "CRM", "externalId": "crm-41", "displayName": "Call Ann", "webUrl": "https://crm.example/a/41"}


def default_list(graph, user: str = ALICE) -> str:
    lists = graph.get(f"/users/{user}/todo/lists").json()["value"]
    return next(entry["id"] for entry in lists if entry["wellknownListName"] == "defaultList")


@pytest.fixture
def tasks_url(graph) -> str:
    return f"{A}/todo/lists/{default_list(graph)}/tasks"


def create(graph, url: str, body: dict) -> dict:
    answer = graph.post(url, json=body)
    assert answer.status_code == 201, answer.text
    return answer.json()


def day(text: str) -> dict:
    return {"dateTime": text, "timeZone": "UTC"}


def test_the_default_list_is_the_tasks_folder_and_other_lists_are_task_folders(exchange_sim: Simulator, graph):
    lists = graph.get(f"{A}/todo/lists").json()["value"]
    assert [(entry["displayName"], entry["wellknownListName"], entry["isOwner"]) for entry in lists] == [("Tasks", "defaultList", True)]
    made = graph.post(f"{A}/todo/lists", json={"displayName": "CRM follow-ups"})
    assert made.status_code == 201 and made.json()["wellknownListName"] == "none"
    assert [entry["displayName"] for entry in graph.get(f"{A}/todo/lists").json()["value"]] == ["Tasks", "CRM follow-ups"]
    assert exchange_sim.user(ALICE).folder("CRM follow-ups").folder_class == "IPF.Task"
    assert graph.delete(f"{A}/todo/lists/{lists[0]['id']}").status_code == 400
    assert graph.delete(f"{A}/todo/lists/{made.json()['id']}").status_code == 204


def test_a_task_is_created_with_every_synchronized_field_and_read_back(exchange_sim: Simulator, graph, tasks_url):
    created = create(
        graph,
        tasks_url,
        {
            "title": "Call Ann",
            "body": {"content": "Ask about the offer", "contentType": "text"},
            "status": "inProgress",
            "importance": "high",
            "dueDateTime": day("2027-03-10T00:00:00"),
            "startDateTime": day("2027-03-01T00:00:00"),
            "isReminderOn": True,
            "reminderDateTime": {"dateTime": "2027-03-10T09:00:00", "timeZone": "W. Europe Standard Time"},
            "categories": ["CRM"],
        },
    )
    assert (created["title"], created["status"], created["importance"], created["isReminderOn"]) == ("Call Ann", "inProgress", "high", True)
    assert created["dueDateTime"] == {"dateTime": "2027-03-10T00:00:00.0000000", "timeZone": "UTC"}
    assert created["reminderDateTime"] == {"dateTime": "2027-03-10T08:00:00.0000000", "timeZone": "UTC"}
    assert created["categories"] == ["CRM"] and "completedDateTime" not in created
    assert created["body"]["contentType"] == "html" and "Ask about the offer" in created["body"]["content"]
    stored = exchange_sim.user(ALICE).tasks()[0]
    assert stored.props["DueDate"] == datetime(2027, 3, 10, tzinfo=UTC) and stored.props["ReminderDueBy"] == datetime(2027, 3, 10, 8, tzinfo=UTC)
    read = graph.get(f"{tasks_url}/{created['id']}", headers={"Prefer": 'outlook.body-content-type="text"'}).json()
    assert read["body"] == {"content": "Ask about the offer", "contentType": "text"}


def test_dates_are_answered_in_the_preferred_zone(graph, tasks_url):
    created = create(graph, tasks_url, {"title": "Due", "dueDateTime": day("2027-03-10T00:00:00")})
    local = graph.get(f"{tasks_url}/{created['id']}", headers={"Prefer": 'outlook.timezone="Pacific Standard Time"'}).json()
    assert local["dueDateTime"] == {"dateTime": "2027-03-09T16:00:00.0000000", "timeZone": "Pacific Standard Time"}


def test_completing_a_task_sets_the_completion_day_and_reopening_drops_it(exchange_sim: Simulator):
    exchange_sim.clock.set(datetime(2027, 3, 10, 15, tzinfo=UTC), frozen=True)  # before the token is issued
    with graph_client(exchange_sim) as graph:
        tasks_url = f"{A}/todo/lists/{default_list(graph)}/tasks"
        created = create(graph, tasks_url, {"title": "Call Ann", "status": "inProgress"})
        done = graph.patch(f"{tasks_url}/{created['id']}", json={"status": "completed"}).json()
        assert done["status"] == "completed" and done["completedDateTime"] == day("2027-03-10T00:00:00.0000000")
        assert exchange_sim.user(ALICE).tasks()[0].props["PercentComplete"] == 100.0
        reopened = graph.patch(f"{tasks_url}/{created['id']}", json={"status": "notStarted"}).json()
    assert reopened["status"] == "notStarted" and "completedDateTime" not in reopened
    stored = exchange_sim.user(ALICE).tasks()[0]
    assert stored.props["PercentComplete"] == 0.0 and "CompleteDate" not in stored.props


def test_a_completion_day_given_with_the_status_is_kept(graph, tasks_url):
    created = create(graph, tasks_url, {"title": "Done earlier"})
    done = graph.patch(f"{tasks_url}/{created['id']}", json={"status": "completed", "completedDateTime": day("2027-02-01T00:00:00")}).json()
    assert done["completedDateTime"] == day("2027-02-01T00:00:00.0000000")


def test_patch_with_a_stale_etag_is_412_and_with_the_current_one_succeeds(exchange_sim: Simulator, graph, tasks_url):
    created = create(graph, tasks_url, {"title": "Call Ann"})
    exchange_sim.user(ALICE).edit(created["id"].replace("-", "+").replace("_", "/"), Subject="Edited in Outlook")
    stale = graph.patch(f"{tasks_url}/{created['id']}", json={"title": "CRM"}, headers={"If-Match": created["@odata.etag"]})
    assert stale.status_code == 412 and stale.json()["error"]["code"] == "ErrorIrresolvableConflict"
    current = graph.get(f"{tasks_url}/{created['id']}").json()
    fresh = graph.patch(f"{tasks_url}/{created['id']}", json={"title": "CRM"}, headers={"If-Match": current["@odata.etag"]})
    assert fresh.status_code == 200 and fresh.json()["title"] == "CRM" and fresh.json()["@odata.etag"] != current["@odata.etag"]


def test_delete_removes_the_task_from_the_list(exchange_sim: Simulator, graph, tasks_url):
    created = create(graph, tasks_url, {"title": "Gone"})
    assert graph.delete(f"{tasks_url}/{created['id']}").status_code == 204
    assert graph.get(f"{tasks_url}/{created['id']}").status_code == 404
    assert exchange_sim.user(ALICE).tasks() == []


def test_a_task_of_another_list_or_mailbox_is_not_found(exchange_sim: Simulator, graph, tasks_url):
    bobs = exchange_sim.user(BOB).create_task("Bob's")
    assert graph.get(f"{tasks_url}/{bobs.id.replace('+', '-').replace('/', '_')}").status_code == 404
    other = graph.post(f"{A}/todo/lists", json={"displayName": "Other"}).json()
    created = create(graph, tasks_url, {"title": "In Tasks"})
    assert graph.get(f"{A}/todo/lists/{other['id']}/tasks/{created['id']}").status_code == 404


def test_listing_pages_with_top_and_next_links(exchange_sim: Simulator, graph, tasks_url):
    alice = exchange_sim.user(ALICE)
    for n in range(5):
        alice.create_task(f"T{n}")
    page = graph.get(tasks_url, params={"$top": 2}).json()
    titles = [t["title"] for t in page["value"]]
    while "@odata.nextLink" in page:
        page = graph.get(page["@odata.nextLink"]).json()
        titles += [t["title"] for t in page["value"]]
    assert titles == [f"T{n}" for n in range(5)]
    completed = graph.get(tasks_url, params={"$filter": "status eq 'notStarted'", "$select": "title"}).json()["value"]
    assert len(completed) == 5 and set(completed[0]) <= {"id", "title", "@odata.etag"}


def test_a_linked_resource_made_with_the_task_carries_the_external_id(graph, tasks_url):
    created = create(graph, tasks_url, {"title": "Call Ann", "linkedResources": [CRM_LINK]})
    assert len(created["linkedResources"]) == 1 and created["linkedResources"][0]["externalId"] == "crm-41"
    link_id = created["linkedResources"][0]["id"]
    links = graph.get(f"{tasks_url}/{created['id']}/linkedResources").json()["value"]
    assert links == [{"id": link_id, **CRM_LINK}]
    two = graph.post(tasks_url, json={"title": "Two", "linkedResources": [CRM_LINK, CRM_LINK]})
    assert two.status_code == 400 and "Only one item in linkedResources" in two.json()["error"]["message"]


def test_linked_resources_are_created_changed_and_deleted_under_the_task(graph, tasks_url):
    created = create(graph, tasks_url, {"title": "Call Ann"})
    links_url = f"{tasks_url}/{created['id']}/linkedResources"
    link = graph.post(links_url, json=CRM_LINK)
    assert link.status_code == 201 and link.json()["externalId"] == "crm-41"
    changed = graph.patch(f"{links_url}/{link.json()['id']}", json={"externalId": "crm-42"}).json()
    assert changed["externalId"] == "crm-42" and changed["applicationName"] == "CRM"
    assert graph.get(f"{links_url}/{link.json()['id']}").json()["externalId"] == "crm-42"
    assert graph.delete(f"{links_url}/{link.json()['id']}").status_code == 204
    assert graph.get(links_url).json()["value"] == []


def test_a_task_is_found_by_its_external_id_by_listing_with_expanded_linked_resources(exchange_sim: Simulator, graph, tasks_url):
    exchange_sim.user(ALICE).create_task("Made in Outlook")
    create(graph, tasks_url, {"title": "Ours", "linkedResources": [CRM_LINK]})
    listed = graph.get(tasks_url, params={"$expand": "linkedResources"}).json()["value"]
    found = [t for t in listed if any(r["applicationName"] == "CRM" and r["externalId"] == "crm-41" for r in t["linkedResources"])]
    assert [t["title"] for t in found] == ["Ours"]
    assert "linkedResources" not in graph.get(tasks_url).json()["value"][0]
    refused = graph.get(tasks_url, params={"$filter": "linkedResources/any(r: r/externalId eq 'crm-41')"})
    assert refused.status_code == 400


def delta_round(graph, url: str, headers: dict | None = None) -> tuple[list[dict], str, int]:
    entries: list[dict] = []
    answer, requests = graph.get(url, headers=headers), 1
    while True:
        assert answer.status_code == 200, answer.text
        body = answer.json()
        entries += body["value"]
        if "@odata.deltaLink" in body:
            return entries, body["@odata.deltaLink"], requests
        answer, requests = graph.get(body["@odata.nextLink"], headers=headers), requests + 1


def test_delta_pages_a_first_round_then_brings_changes_and_removals(exchange_sim: Simulator, graph, tasks_url):
    alice = exchange_sim.user(ALICE)
    edited, deleted, kept = alice.create_task("Edited"), alice.create_task("Deleted"), alice.create_task("Kept")
    first, delta_link, requests = delta_round(graph, f"{tasks_url}/delta", {"Prefer": "odata.maxpagesize=2"})
    assert sorted(t["title"] for t in first) == ["Deleted", "Edited", "Kept"] and requests == 2
    assert "$deltatoken" in parse_qs(urlparse(delta_link).query)
    ids = {t["title"]: t["id"] for t in first}
    alice.complete_task(edited)
    alice.delete(deleted)
    alice.create_task("New", DueDate=date(2027, 4, 1))
    entries, delta_link, _ = delta_round(graph, delta_link)
    assert {e["id"] for e in entries if "@removed" in e} == {ids["Deleted"]}
    changed = {e["title"]: e for e in entries if "@removed" not in e}
    assert set(changed) == {"Edited", "New"} and changed["Edited"]["status"] == "completed"
    assert kept.id not in {e["id"] for e in entries}
    exchange_sim.counters.reset()
    idle, _, requests = delta_round(graph, delta_link)
    assert idle == [] and requests == 1 and exchange_sim.counters.for_mailbox(ALICE, protocol="graph") == 1


def test_a_delta_token_of_another_list_or_an_invalidated_one_is_410(exchange_sim: Simulator, graph, tasks_url):
    _, delta_link, _ = delta_round(graph, f"{tasks_url}/delta")
    other = graph.post(f"{A}/todo/lists", json={"displayName": "Other"}).json()
    token = parse_qs(urlparse(delta_link).query)["$deltatoken"][0]
    assert graph.get(f"{A}/todo/lists/{other['id']}/tasks/delta", params={"$deltatoken": token}).status_code == 410
    exchange_sim.graph.invalidate_delta_tokens()
    gone = graph.get(delta_link)
    assert gone.status_code == 410 and gone.json()["error"]["code"] == "SyncStateNotFound"


def test_batch_creates_tasks_with_one_http_request(exchange_sim: Simulator, graph, tasks_url):
    exchange_sim.counters.reset()
    requests = [
        {"id": str(n), "method": "POST", "url": tasks_url, "headers": {"Content-Type": "application/json"},
         "body": {"title": f"T{n}", "linkedResources": [{**CRM_LINK, "externalId": f"crm-{n}"}]}}
        for n in range(20)
    ]  # fmt: skip
    answer = graph.post("/$batch", json={"requests": requests})
    assert answer.status_code == 200 and {r["status"] for r in answer.json()["responses"]} == {201}
    assert exchange_sim.counters.for_mailbox(ALICE, protocol="graph") == 1
    assert exchange_sim.counters.sub_requests("graph.todoTasks.create", ALICE) == 20
    assert len(exchange_sim.user(ALICE).tasks()) == 20


def test_throttling_answers_429_with_retry_after(exchange_sim: Simulator, graph, tasks_url):
    exchange_sim.faults.throttled(times=1, retry_after=3, operation="graph.todoTasks.create")
    throttled = graph.post(tasks_url, json={"title": "Later"})
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "3"
    assert graph.post(tasks_url, json={"title": "Later"}).status_code == 201


def test_an_app_without_a_tasks_role_is_refused(exchange_sim: Simulator):
    exchange_sim.graph.add_app("contacts-only", "pw", roles=("Contacts.ReadWrite",))
    with graph_client(exchange_sim, ("contacts-only", "pw")) as client:
        assert client.get(f"{A}/todo/lists").status_code == 403


def test_a_subscription_to_a_list_notifies_its_task_changes_from_either_front_end(exchange_sim: Simulator, graph, webhook_receiver):
    list_id = default_list(graph)
    resource = f"users/{ALICE}/todo/lists/{list_id}/tasks"
    body = {"changeType": "created,updated,deleted", "notificationUrl": webhook_receiver.url, "resource": resource, "clientState": "todo"}
    too_far = (exchange_sim.clock.now() + timedelta(minutes=4300)).isoformat()
    assert graph.post("/subscriptions", json={**body, "expirationDateTime": too_far}).status_code == 400
    expires = (exchange_sim.clock.now() + timedelta(minutes=4200)).isoformat()
    assert graph.post("/subscriptions", json={**body, "expirationDateTime": expires}).status_code == 201
    alice = exchange_sim.user(ALICE)
    task = alice.create_task("From Outlook")
    graph.patch(f"{A}/todo/lists/{list_id}/tasks/{task.id.replace('+', '-').replace('/', '_')}", json={"status": "completed"})
    alice.delete(task)
    other = graph.post(f"{A}/todo/lists", json={"displayName": "Other"}).json()
    graph.post(f"{A}/todo/lists/{other['id']}/tasks", json={"title": "Elsewhere"})
    notes = webhook_receiver.wait_for(3)
    assert exchange_sim.graph.subscriptions.wait_idle()
    assert [n["changeType"] for n in webhook_receiver.received()] == ["created", "updated", "deleted"]
    assert notes[0]["resource"].endswith(f"/todo/lists/{list_id}/tasks/{notes[0]['resourceData']['id']}")
    assert notes[0]["resourceData"]["@odata.type"] == "#Microsoft.Graph.todoTask" and notes[0]["clientState"] == "todo"


def test_a_task_moved_to_another_list_is_removed_from_the_first_lists_delta(exchange_sim: Simulator, graph, tasks_url):
    other = graph.post(f"{A}/todo/lists", json={"displayName": "Later"}).json()
    alice = exchange_sim.user(ALICE)
    task = alice.create_task("Moving")
    [seen], delta_link, _ = delta_round(graph, f"{tasks_url}/delta")
    moved = alice.move(task, "Later")  # as Outlook does it: a new id in the other folder
    entries, _, _ = delta_round(graph, delta_link)
    assert entries == [{"@odata.type": "#microsoft.graph.todoTask", "id": seen["id"], "@removed": {"reason": "deleted"}}]
    [there] = graph.get(f"{A}/todo/lists/{other['id']}/tasks").json()["value"]
    assert there["title"] == "Moving" and there["id"] != seen["id"] and moved.id != task.id
