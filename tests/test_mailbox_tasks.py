"""The mailbox interface for tasks (issue 18), over the three backends against exchange_sim: the
default Tasks folder over EWS, the default Microsoft To Do list over Graph, Notes To Do items over
Domino. Dates are days,
completion is the server's, the sync id is found again; request budgets of the issue."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime

import pytest

from synccore.mailbox import base
from synccore.mailbox.base import TaskItem
from synccore.sync.connection import backend_for, connection_config
from synccore.sync.preview_backend import PreviewBackend

pytestmark = [pytest.mark.django_db, pytest.mark.backends("ews", "graph", "domino")]


@pytest.fixture
def mailbox(crm):
    backend = backend_for(connection_config(crm.settings))
    yield backend
    backend.close()


def a_task(i: int = 0, **fields) -> TaskItem:
    values = {
        "subject": f"Call Ann {i:04d}",
        "body": "Ask about the offer",
        "due": date(2027, 3, 10),
        "start": date(2027, 3, 1),
        "importance": "high",
        "sync_id": f"crm-task-{i:04d}",
    }
    return TaskItem(**{**values, **fields})


def created(mailbox, address: str, folder: str, tasks: list[TaskItem]) -> list[base.RemoteRef]:
    results = mailbox.create_tasks(address, folder, tasks)
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    return [r.ref for r in results]


def test_a_created_task_reads_back_with_its_days_importance_and_sync_id(crm, mailbox):
    address = crm.alice.mailbox_email
    folder = mailbox.ensure_task_folder(address)
    reminder = datetime(2027, 3, 9, 8, 30, tzinfo=UTC)
    (ref,) = created(mailbox, address, folder, [a_task(reminder=reminder)])
    (task,) = mailbox.get_tasks(address, [ref])
    assert isinstance(task, TaskItem)
    assert (task.subject, task.status, task.importance) == ("Call Ann 0000", "open", "high")
    assert (task.due, task.start, task.completed_at) == (date(2027, 3, 10), date(2027, 3, 1), None)
    assert task.reminder == reminder
    assert task.sync_id == "crm-task-0000"
    assert "Ask about the offer" in task.body
    # The simulator's user sees the same task in the Tasks folder / default list.
    (item,) = crm.mailbox().tasks()
    assert item.props["Subject"] == "Call Ann 0000"


def test_t2_completing_is_the_servers_and_reopening_drops_the_completion_day(crm, mailbox, clock):
    # Noon: the completion day is the mailbox's, and near midnight UTC that is already tomorrow in Berlin.
    clock.set(datetime(2027, 3, 1, 12, tzinfo=UTC), frozen=True)
    address = crm.alice.mailbox_email
    folder = mailbox.ensure_task_folder(address)
    (ref,) = created(mailbox, address, folder, [a_task()])
    (done,) = mailbox.complete_tasks(address, [ref])
    assert done.ok, done.error
    (task,) = mailbox.get_tasks(address, [done.ref])
    assert task.status == "completed"
    assert task.completed_at == date(2027, 3, 1)
    (reopened,) = mailbox.update_tasks(address, [(done.ref, TaskItem(status="open"), ("status",))])
    assert reopened.ok, reopened.error
    (task,) = mailbox.get_tasks(address, [reopened.ref])
    assert (task.status, task.completed_at) == ("open", None)
    assert task.subject == "Call Ann 0000"  # only the named field was written


def test_t2_a_task_completed_in_outlook_reads_as_completed(crm, mailbox):
    address = crm.alice.mailbox_email
    folder = mailbox.ensure_task_folder(address)
    (ref,) = created(mailbox, address, folder, [a_task()])
    (item,) = crm.mailbox().tasks()
    crm.mailbox().complete_task(item)
    (task,) = mailbox.get_tasks(address, [ref])
    assert task.status == "completed" and task.completed_at is not None


def test_an_update_writes_only_the_named_fields_and_clears_a_day(crm, mailbox):
    address = crm.alice.mailbox_email
    folder = mailbox.ensure_task_folder(address)
    (ref,) = created(mailbox, address, folder, [a_task()])
    change = TaskItem(subject="Call Ann again", due=None, importance="low")
    (result,) = mailbox.update_tasks(address, [(ref, change, ("subject", "due"))])
    assert result.ok, result.error
    (task,) = mailbox.get_tasks(address, [result.ref])
    assert (task.subject, task.due, task.start, task.importance) == (
        "Call Ann again",
        None,
        date(2027, 3, 1),
        "high",
    )


def test_changes_since_a_token_list_new_edited_and_deleted_tasks(crm, mailbox):
    address = crm.alice.mailbox_email
    folder = mailbox.ensure_task_folder(address)
    first, second = created(mailbox, address, folder, [a_task(0), a_task(1)])
    page = mailbox.task_changes(address, folder, "")
    assert {r.item_id for r in page.changed} == {first.item_id, second.item_id}
    mailbox.update_tasks(address, [(first, TaskItem(subject="Edited"), ("subject",))])
    (gone,) = mailbox.delete_tasks(address, [second])
    assert gone.ok
    later = mailbox.task_changes(address, folder, page.token)
    assert [r.item_id for r in later.changed] == [first.item_id]
    assert later.deleted == [second.item_id]
    (again,) = mailbox.delete_tasks(address, [second])
    assert again.ok  # already gone counts as deleted


def test_tasks_are_found_again_by_their_sync_ids(crm, mailbox):
    address = crm.alice.mailbox_email
    folder = mailbox.ensure_task_folder(address)
    refs = created(mailbox, address, folder, [a_task(i) for i in range(3)])
    crm.mailbox().create_task("Made in Outlook")
    found = mailbox.find_tasks_by_sync_ids(address, folder, ["crm-task-0001", "crm-task-0002", "nope"])
    assert {k: v.item_id for k, v in found.items()} == {
        "crm-task-0001": refs[1].item_id,
        "crm-task-0002": refs[2].item_id,
    }


def test_an_outlook_task_reads_without_a_sync_id(crm, mailbox):
    address = crm.alice.mailbox_email
    folder = mailbox.ensure_task_folder(address)
    crm.mailbox().create_task("Made in Outlook", Importance="Low")
    page = mailbox.task_changes(address, folder, "")
    (task,) = mailbox.get_tasks(address, page.changed)
    assert (task.subject, task.importance, task.sync_id, task.status) == ("Made in Outlook", "low", "", "open")


def test_a_thousand_new_tasks_cost_the_issue_budget_and_an_idle_read_one_request(crm, mailbox):
    address = crm.alice.mailbox_email
    # Domino has no batch requests: one request per To Do written (docs/domino.md, adapted).
    per_request = crm.writes_per_request(100)
    crm.configure(batch_size=100)
    folder = mailbox.ensure_task_folder(address)
    page = mailbox.task_changes(address, folder, "")
    before = mailbox.requests
    refs = created(mailbox, address, folder, [a_task(i) for i in range(1000)])
    assert len({r.item_id for r in refs}) == 1000
    assert mailbox.requests - before <= math.ceil(1000 / per_request) + 5
    page = mailbox.task_changes(address, folder, mailbox.task_changes(address, folder, page.token).token)
    before = mailbox.requests
    idle = mailbox.task_changes(address, folder, page.token)
    assert (idle.changed, idle.deleted) == ([], [])
    assert mailbox.requests - before == 1


def test_a_preview_reads_tasks_through_and_records_task_writes(crm, mailbox):
    address = crm.alice.mailbox_email
    folder = mailbox.ensure_task_folder(address)
    (ref,) = created(mailbox, address, folder, [a_task()])
    preview = PreviewBackend(mailbox)
    (made,) = preview.create_tasks(address, folder, [a_task(1)])
    preview.complete_tasks(address, [ref])
    preview.delete_tasks(address, [ref])
    assert [w.operation for w in preview.writes] == ["create_tasks", "update_tasks", "delete_tasks"]
    (task, missing) = preview.get_tasks(address, [ref, made.ref])
    assert task.status == "open" and isinstance(missing, base.ItemNotFound)
    assert len(crm.mailbox().tasks()) == 1
