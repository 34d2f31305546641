"""EWS task items in the Tasks folder, driven with exchangelib's Task: create, read, update (completion both
ways), delete, bulk, SyncFolderItems, the sync-id extended property; answers valid against types.xsd."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from exchangelib import EWSDate, EWSDateTime, EWSTimeZone, ExtendedProperty, Task
from exchangelib.errors import ErrorIrresolvableConflict, ErrorItemNotFound

from exchange_sim import Simulator
from tests.exchange_sim.conftest import SYNC_ID_SET

ALICE = "alice@contoso.example"
UTC_ZONE = EWSTimeZone("UTC")


class CrmSyncId(ExtendedProperty):
    property_set_id = SYNC_ID_SET
    property_name = "CrmSyncId"
    property_type = "String"


@pytest.fixture(autouse=True)
def _sync_id_field():
    Task.register("crm_sync_id", CrmSyncId)
    yield
    Task.deregister("crm_sync_id")


def make_task(account, **kwargs) -> Task:
    task = Task(folder=account.tasks, **{"subject": "Call Ann", **kwargs})
    task.save()
    return task


def test_a_task_round_trips_every_synchronized_field(account, exchange_sim: Simulator):
    made = make_task(
        account,
        body="Ask about the offer",
        status="InProgress",
        percent_complete=Decimal(40),
        due_date=EWSDate(2027, 3, 10),
        start_date=EWSDate(2027, 3, 1),
        importance="High",
        categories=["CRM"],
        reminder_is_set=True,
        reminder_due_by=EWSDateTime(2027, 3, 10, 8, tzinfo=UTC_ZONE),
        crm_sync_id="crm-41",
    )
    got = account.tasks.get(id=made.id)
    assert (got.subject, got.status, got.percent_complete, got.importance) == ("Call Ann", "InProgress", Decimal(40), "High")
    assert (got.due_date, got.start_date, got.complete_date, got.is_complete) == (date(2027, 3, 10), date(2027, 3, 1), None, False)
    assert got.reminder_is_set and got.reminder_due_by == datetime(2027, 3, 10, 8, tzinfo=UTC)
    assert got.categories == ["CRM"] and got.crm_sync_id == "crm-41" and "Ask about the offer" in got.body
    stored = exchange_sim.user(ALICE).tasks()[0]
    assert stored.props["ItemClass"] == "IPM.Task" and stored.folder_id == exchange_sim.user(ALICE).folder("tasks").id


def test_a_new_task_is_not_started_at_zero_percent_without_a_reminder(account):
    got = account.tasks.get(id=make_task(account).id)
    assert (got.status, got.percent_complete, got.reminder_is_set, got.importance) == ("NotStarted", Decimal(0), False, "Normal")


def test_completing_a_task_sets_percent_complete_and_the_completion_day(account, exchange_sim: Simulator):
    exchange_sim.clock.set(datetime(2027, 3, 9, 23, 30, tzinfo=UTC), frozen=True)  # already the 10th in Berlin (UTC+1)
    task = make_task(account, status="InProgress", percent_complete=Decimal(30))
    task.status = "Completed"
    task.save(update_fields=["status"])
    got = account.tasks.get(id=task.id)
    assert (got.status, got.percent_complete, got.is_complete) == ("Completed", Decimal(100), True)
    assert got.complete_date == datetime(2027, 3, 10, tzinfo=UTC)


def test_reopening_a_completed_task_drops_the_completion(account):
    task = make_task(account)
    task.complete()
    task.status = "NotStarted"
    task.percent_complete = Decimal(0)
    task.save(update_fields=["status", "percent_complete"])
    got = account.tasks.get(id=task.id)
    assert (got.status, got.percent_complete, got.complete_date, got.is_complete) == ("NotStarted", Decimal(0), None, False)


def test_a_task_completed_in_outlook_and_reopened_there_reads_so_over_ews(account, exchange_sim: Simulator):
    task = make_task(account, status="InProgress", percent_complete=Decimal(50))
    alice = exchange_sim.user(ALICE)
    alice.complete_task(task)
    assert account.tasks.get(id=task.id).status == "Completed"
    alice.edit(task, PercentComplete=60)
    got = account.tasks.get(id=task.id)
    assert (got.status, got.percent_complete, got.complete_date) == ("InProgress", Decimal(60), None)


def test_a_task_created_completed_is_complete_at_once(account):
    got = account.tasks.get(id=make_task(account, status="Completed", percent_complete=Decimal(100)).id)
    assert got.is_complete and got.complete_date is not None


def test_an_update_with_a_stale_change_key_is_an_irresolvable_conflict(account, exchange_sim: Simulator):
    task = make_task(account)
    exchange_sim.user(ALICE).edit(task, Subject="Edited in Outlook")
    task.subject = "Edited by the CRM"
    with pytest.raises(ErrorIrresolvableConflict):
        account.bulk_update([(task, ["subject"])])


def test_tasks_are_created_updated_and_deleted_in_bulk_one_request_per_chunk(account, exchange_sim: Simulator):
    exchange_sim.counters.reset()
    made = account.bulk_create(folder=account.tasks, items=[Task(subject=f"T{i}", crm_sync_id=f"crm-{i}") for i in range(5)], chunk_size=2)
    assert exchange_sim.counters["CreateItem"] == 3 and all(r.id for r in made)
    tasks = list(account.tasks.all().order_by("subject"))
    for task in tasks:
        task.status = "Completed"
    results = account.bulk_update([(t, ["status"]) for t in tasks], chunk_size=5)
    assert exchange_sim.counters["UpdateItem"] == 1 and all(isinstance(r, tuple) for r in results)
    assert {t.props["PercentComplete"] for t in exchange_sim.user(ALICE).tasks()} == {100.0}
    exchange_sim.user(ALICE).delete(tasks[0], hard=True)
    results = account.bulk_delete(tasks, chunk_size=5)
    assert isinstance(results[0], ErrorItemNotFound) and results[1:] == [True] * 4
    assert exchange_sim.user(ALICE).tasks() == []


def test_a_task_moved_to_the_trash_waits_in_deleted_items(account, exchange_sim: Simulator):
    task = make_task(account)
    task.move_to_trash()
    assert exchange_sim.user(ALICE).tasks() == [] and len(exchange_sim.user(ALICE).items("deleteditems")) == 1


def test_sync_folder_items_reports_task_changes_since_a_state(account, exchange_sim: Simulator):
    alice = exchange_sim.user(ALICE)
    edited = alice.create_task("Edited")
    deleted = alice.create_task("Deleted")
    list(account.tasks.sync_items())
    state = account.tasks.item_sync_state
    alice.complete_task(edited)
    alice.delete(deleted)
    alice.create_task("New", DueDate=date(2027, 4, 1))
    changes = list(account.tasks.sync_items(sync_state=state))
    summary = {(kind, getattr(obj, "subject", None) or obj.id) for kind, obj in changes}
    assert summary == {("update", "Edited"), ("delete", deleted.id), ("create", "New")}
    updated = next(obj for kind, obj in changes if kind == "update")
    assert updated.status == "Completed" and updated.percent_complete == Decimal(100)
    assert list(account.tasks.sync_items(sync_state=account.tasks.item_sync_state)) == []


def test_a_task_is_found_by_its_sync_id(account, exchange_sim: Simulator):
    make_task(account, subject="Mine", crm_sync_id="crm-7")
    make_task(account, subject="Other", crm_sync_id="crm-8")
    assert [t.subject for t in account.tasks.filter(crm_sync_id="crm-7")] == ["Mine"]
    assert [t.subject for t in exchange_sim.user(ALICE).find_by_extended("CrmSyncId", "crm-7")] == ["Mine"]


def test_task_dates_are_days(exchange_sim: Simulator, account):
    alice = exchange_sim.user(ALICE)
    task = alice.create_task("Due", DueDate=datetime(2027, 3, 10, 17, 45, tzinfo=UTC), StartDate=date(2027, 3, 2))
    assert task.props["DueDate"] == datetime(2027, 3, 10, tzinfo=UTC) and task.props["StartDate"] == datetime(2027, 3, 2, tzinfo=UTC)
    got = account.tasks.get(id=task.id)
    assert (got.due_date, got.start_date) == (date(2027, 3, 10), date(2027, 3, 2))
    assert not exchange_sim.schema_violations


def test_a_pull_subscription_on_the_tasks_folder_reports_task_changes(account, exchange_sim: Simulator):
    subscription_id, watermark = account.tasks.subscribe_to_pull()
    alice = exchange_sim.user(ALICE)
    task = alice.create_task("Watched")
    alice.complete_task(task)
    exchange_sim.user(ALICE).create_contact(GivenName="Not a task")
    events = [e for n in account.tasks.get_events(subscription_id, watermark) for e in n.events]
    assert [(type(e).__name__, e.item_id.id) for e in events if hasattr(e, "item_id")] == [
        ("CreatedEvent", task.id),
        ("ModifiedEvent", task.id),
    ]
