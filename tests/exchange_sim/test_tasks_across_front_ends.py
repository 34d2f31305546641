"""One store, two front ends: a task written over EWS reads the same over Graph To Do, and the other way round."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from exchangelib import EWSDate, EWSDateTime, EWSTimeZone, Task

from exchange_sim import Simulator

ALICE = "alice@contoso.example"
A = f"/users/{ALICE}"


def tasks_url(graph) -> str:
    lists = graph.get(f"{A}/todo/lists").json()["value"]
    return f"{A}/todo/lists/{lists[0]['id']}/tasks"


def test_a_task_created_over_ews_is_seen_over_graph_with_the_same_data(account, graph):
    task = Task(
        folder=account.tasks,
        subject="Call Ann",
        body="Ask about the offer",
        status="WaitingOnOthers",
        percent_complete=Decimal(25),
        due_date=EWSDate(2027, 3, 10),
        start_date=EWSDate(2027, 3, 1),
        importance="Low",
        categories=["CRM"],
        reminder_is_set=True,
        reminder_due_by=EWSDateTime(2027, 3, 10, 8, tzinfo=EWSTimeZone("UTC")),
    )
    task.save()
    [seen] = graph.get(tasks_url(graph), headers={"Prefer": 'outlook.body-content-type="text"'}).json()["value"]
    assert (seen["title"], seen["status"], seen["importance"], seen["categories"]) == ("Call Ann", "waitingOnOthers", "low", ["CRM"])
    assert seen["dueDateTime"] == {"dateTime": "2027-03-10T00:00:00.0000000", "timeZone": "UTC"}
    assert seen["startDateTime"] == {"dateTime": "2027-03-01T00:00:00.0000000", "timeZone": "UTC"}
    assert seen["isReminderOn"] and seen["reminderDateTime"] == {"dateTime": "2027-03-10T08:00:00.0000000", "timeZone": "UTC"}
    assert seen["body"] == {"content": "Ask about the offer", "contentType": "text"}
    assert seen["@odata.etag"] == f'W/"{task.changekey}"'
    task.status = "Completed"
    task.save(update_fields=["status"])
    completed = graph.get(f"{tasks_url(graph)}/{seen['id']}").json()
    assert completed["status"] == "completed" and "completedDateTime" in completed


def test_a_task_created_over_graph_is_seen_over_ews_with_the_same_data(exchange_sim: Simulator, account, graph):
    created = graph.post(
        tasks_url(graph),
        json={
            "title": "Send the offer",
            "body": {"content": "Draft attached", "contentType": "text"},
            "status": "inProgress",
            "importance": "high",
            "dueDateTime": {"dateTime": "2027-03-12T00:00:00", "timeZone": "UTC"},
            "reminderDateTime": {"dateTime": "2027-03-12T07:30:00", "timeZone": "UTC"},
            "categories": ["CRM", "Offer"],
            "linkedResources": [{"applicationName": "CRM", "externalId": "crm-9", "displayName": "Offer"}],
        },
    ).json()
    [task] = list(account.tasks.all())
    assert (task.subject, task.status, task.importance, task.categories) == ("Send the offer", "InProgress", "High", ["CRM", "Offer"])
    assert task.due_date == date(2027, 3, 12) and "Draft attached" in task.text_body
    assert task.reminder_is_set and task.reminder_due_by == datetime(2027, 3, 12, 7, 30, tzinfo=UTC)
    assert task.changekey == created["@odata.etag"][3:-1]
    graph.patch(f"{tasks_url(graph)}/{created['id']}", json={"status": "completed"})
    done = account.tasks.get(id=task.id)
    assert (done.status, done.percent_complete, done.is_complete) == ("Completed", Decimal(100), True)
    assert not exchange_sim.schema_violations


def test_a_task_deleted_over_one_front_end_is_gone_for_the_other(exchange_sim: Simulator, account, graph):
    task = Task(folder=account.tasks, subject="Short-lived")
    task.save()
    url = tasks_url(graph)
    [seen] = graph.get(url).json()["value"]
    task.move_to_trash()
    assert graph.get(f"{url}/{seen['id']}").status_code == 404
    created = graph.post(url, json={"title": "Also short-lived"}).json()
    graph.delete(f"{url}/{created['id']}")
    assert list(account.tasks.all()) == []
