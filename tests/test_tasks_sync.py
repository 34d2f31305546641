"""Two-way task synchronization (rules T1–T6), CRM activities of type Task ⇄ the mailbox's tasks
(EWS: the Tasks folder; Graph: the default Microsoft To Do list; Domino: Notes To Do items), against
exchange_sim, using its user-side API to act as people in Outlook / To Do / Notes (one store: the
same task). Domino's own To Do tests are in tests/test_domino_tasks.py."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from synccore import mapping
from synccore.mailbox.base import TransientMailboxError
from synccore.models import (
    Activity,
    FieldMapping,
    GraphSubscription,
    ItemLink,
    LinkState,
    Outcome,
    PushSubscriptionState,
    SynchronizerState,
    SyncKind,
    SyncRun,
)
from synccore.runtime import service as runtime
from synccore.runtime.push import graph as graph_push
from synccore.sync.preview import preview_passes
from synccore.sync.service import run_passes
from synccore.sync.tasks import TaskPass, TaskSyncDisabled, run_task_pass
from tests.fixtures import factories as f
from tests.fixtures.crm import connection_fields

pytestmark = [pytest.mark.django_db, pytest.mark.backends("ews", "graph", "domino")]

DUE = date(2027, 3, 10)


@pytest.fixture(autouse=True)
def _tasks_on(crm):
    crm.configure(synchronize_tasks=True)


def task(crm, subject: str = "Call Ann", *, user=None, **fields) -> Activity:
    employee = (user or crm.alice).employee
    values = {"type": "task", "subject": subject, "due": DUE, "responsible": employee}
    midnight = datetime(DUE.year, DUE.month, DUE.day, tzinfo=UTC)
    return f.activity(crm.env, start=fields.pop("start", midnight), **(values | fields))


def task_pass(crm, user=None):
    return run_task_pass((user or crm.alice).pk)


def outlook(crm, user=None) -> list:
    return crm.mailbox(user).tasks()


def subjects(crm, user=None) -> list[str]:
    return sorted(t.props.get("Subject") for t in outlook(crm, user))


def quiet(crm, user=None) -> SyncRun:
    """A further pass changes nothing on either side (no ping-pong) and costs one request."""
    before = crm.mailbox_requests()
    run = task_pass(crm, user)
    assert (run.created, run.updated, run.deleted, run.conflicts) == (0, 0, 0, 0), run.error
    assert crm.mailbox_requests() - before == 1
    return run


class TestT1WhoAndWhen:
    def test_t1_no_task_pass_while_task_sync_is_off_or_the_user_has_it_off(self, crm):
        crm.configure(synchronize_tasks=False)
        with pytest.raises(TaskSyncDisabled):
            task_pass(crm)
        crm.configure(synchronize_tasks=True, tasks_direction="off")
        with pytest.raises(TaskSyncDisabled):
            task_pass(crm)
        crm.configure(tasks_direction="both")
        crm.alice.tasks_enabled = False
        crm.alice.save()
        with pytest.raises(TaskSyncDisabled):
            task_pass(crm)

    def test_t1_a_task_goes_only_to_its_responsibles_mailbox(self, crm):
        task(crm, "Alice's")
        task(crm, "Bob's", user=crm.bob)
        task(crm, "Off", synchronize=False)
        f.activity(crm.env, subject="A meeting", responsible=crm.alice.employee)
        assert task_pass(crm).created == 1
        assert task_pass(crm, crm.bob).created == 1
        assert subjects(crm) == ["Alice's"]
        assert subjects(crm, crm.bob) == ["Bob's"]
        quiet(crm)

    def test_t1_sync_now_kind_tasks_runs_only_task_passes(self, crm, capsys):
        task(crm, "Alice's")
        call_command("sync_now", environment=crm.env.name, kind="tasks")
        assert set(SyncRun.objects.values_list("kind", flat=True)) == {SyncKind.TASKS}
        assert subjects(crm) == ["Alice's"]
        assert '"created": 1' in capsys.readouterr().out

    def test_t1_a_task_pass_keeps_its_own_health_and_the_status_shows_it(self, crm):
        task(crm)
        task_pass(crm)
        crm.alice.refresh_from_db()
        assert crm.alice.kind_health["tasks"]["state"] == "healthy"
        assert crm.alice.last_task_pass_at is not None
        (row,) = [u for u in runtime.status(crm.env.pk)["users"] if u["email"] == crm.alice.mailbox_email]
        assert row["tasks"]["state"] == "healthy" and row["tasks"]["enabled"]


class TestT2Completion:
    def test_t2_a_task_completed_in_the_crm_is_never_created(self, crm):
        task(crm, "Done", status="completed", completed_at=timezone.now())
        task(crm, "Open")
        task_pass(crm)
        assert subjects(crm) == ["Open"]

    def test_t2_completing_in_outlook_completes_the_crm_task_and_stays_quiet(self, crm):
        activity = task(crm)
        task_pass(crm)
        (item,) = outlook(crm)
        crm.mailbox().complete_task(item)
        run = task_pass(crm)
        assert run.updated == 1
        activity.refresh_from_db()
        assert activity.status == "completed" and activity.completed_at is not None
        quiet(crm)

    def test_t2_completing_in_the_crm_completes_the_mailbox_task_and_stays_quiet(self, crm):
        activity = task(crm)
        task_pass(crm)
        activity.status, activity.completed_at = "completed", timezone.now() - timedelta(days=3)
        activity.save()
        assert task_pass(crm).updated == 1
        (item,) = outlook(crm)
        assert item.props["Status"] == "Completed" and item.props["PercentComplete"] == 100.0
        quiet(crm)
        # Reopened in Outlook: the CRM task is open again.
        crm.mailbox().edit(item, Status="NotStarted")
        task_pass(crm)
        activity.refresh_from_db()
        assert (activity.status, activity.completed_at) == ("open", None)
        quiet(crm)


class TestT3Mapping:
    def test_t3_the_default_rows_write_subject_status_days_importance_body_and_reminder(self, crm):
        crm.configure(reminder_task_minutes=60)
        task(
            crm,
            "Offer",
            comment="Ask about the offer",
            priority="high",
            start=datetime(2027, 3, 1, 9, tzinfo=UTC),
        )
        task_pass(crm)
        (item,) = outlook(crm)
        props = item.props
        assert props["Subject"] == "Offer" and props["Importance"] == "High"
        assert props["DueDate"].date() == DUE and props["StartDate"].date() == date(2027, 3, 1)
        assert "[/]Ask about the offer[\\]" in item.body_text
        assert props["ReminderIsSet"]
        assert props["ReminderDueBy"] == datetime(2027, 3, 9, 23, tzinfo=UTC)
        assert set(FieldMapping.objects.filter(environment=crm.env, entity=mapping.TASK).values_list(
            "crm_field", "exchange_field"
        )) >= {("subject", "subject"), ("status", "status"), ("due", "due"), ("comment", "body")}

    def test_t3_outlook_text_outside_the_markers_stays_and_the_comment_is_pulled(self, crm):
        activity = task(crm, comment="From the CRM")
        task_pass(crm)
        (item,) = outlook(crm)
        crm.mailbox().edit(item, Body={"type": "Text", "content": "My note\n\n[/]Changed in Outlook[\\]"})
        task_pass(crm)
        activity.refresh_from_db()
        assert activity.comment == "Changed in Outlook"
        activity.comment = "Changed in the CRM"
        activity.save()
        task_pass(crm)
        text = outlook(crm)[0].body_text
        assert "My note" in text and "Changed in the CRM" in text
        quiet(crm)

    def test_t3_a_disabled_row_is_not_written_and_a_one_way_row_is_not_pulled(self, crm):
        FieldMapping.create_defaults(crm.env)
        FieldMapping.objects.filter(environment=crm.env, entity=mapping.TASK, exchange_field="importance").update(
            enabled=False
        )
        FieldMapping.objects.filter(environment=crm.env, entity=mapping.TASK, exchange_field="due").update(
            direction=mapping.CRM_TO_EXCHANGE
        )
        activity = task(crm, priority="high")
        task_pass(crm)
        (item,) = outlook(crm)
        assert item.props["Importance"] == "Normal"
        crm.mailbox().edit(item, Importance="Low", DueDate=datetime(2027, 4, 1, tzinfo=UTC))
        task_pass(crm)
        activity.refresh_from_db()
        assert (activity.priority, activity.due) == ("high", DUE)
        assert outlook(crm)[0].props["DueDate"].date() == DUE  # written over with the CRM's day
        quiet(crm)


    def test_t3_a_row_exchange_to_crm_takes_outlooks_edits_and_never_writes_the_crms(self, crm):
        FieldMapping.create_defaults(crm.env)
        FieldMapping.objects.filter(environment=crm.env, entity=mapping.TASK, exchange_field="importance").update(
            direction=mapping.EXCHANGE_TO_CRM
        )
        activity = task(crm, priority="normal")
        task_pass(crm)
        activity.priority = "high"
        activity.save()
        task_pass(crm)
        (item,) = outlook(crm)
        assert item.props["Importance"] == "Normal"
        crm.mailbox().edit(item, Importance="Low")
        task_pass(crm)
        activity.refresh_from_db()
        assert activity.priority == "low"
        quiet(crm)


class TestT4FromOutlook:
    def test_t4_an_outlook_task_becomes_a_crm_task_linked_to_the_one_matching_contact(self, crm):
        ann = f.contact(crm.env, email1="ann@fabrikam.example")
        crm.mailbox().create_task(
            "Call ann@fabrikam.example", DueDate=datetime(2027, 5, 2, tzinfo=UTC), Importance="High"
        )
        assert task_pass(crm).created == 1
        activity = Activity.objects.get(type="task")
        assert (activity.subject, activity.due, activity.priority) == ("Call ann@fabrikam.example", date(2027, 5, 2), "high")
        assert activity.responsible == crm.alice.employee and activity.contact == ann
        assert not activity.created_by_erp
        quiet(crm)

    def test_t4_a_company_named_in_the_task_is_linked_when_it_is_the_only_one(self, crm):
        fabrikam = f.company(crm.env, "Fabrikam")
        f.company(crm.env, "Contoso Ltd")
        crm.mailbox().create_task("Send Fabrikam the offer")
        task_pass(crm)
        assert Activity.objects.get(type="task").company == fabrikam

    def test_t4_two_matches_link_none_and_are_listed_for_the_administrator(self, crm):
        f.contact(crm.env, email1="ann@fabrikam.example")
        f.contact(crm.env, email1="bob@fabrikam.example")
        crm.mailbox().create_task("Meet ann@fabrikam.example and bob@fabrikam.example")
        task_pass(crm)
        activity = Activity.objects.get(type="task")
        assert activity.contact is None and activity.company is None
        link = ItemLink.objects.get(activity=activity)
        assert link.state == LinkState.AMBIGUOUS and "several CRM records" in link.last_error
        assert LinkState.AMBIGUOUS in runtime.ATTENTION_LINK_STATES
        quiet(crm)
        assert ItemLink.objects.get(activity=activity).state == LinkState.AMBIGUOUS

    def test_t4_a_task_completed_before_it_was_ever_synced_is_not_imported(self, crm):
        item = crm.mailbox().create_task("Old")
        crm.mailbox().complete_task(item)
        task_pass(crm)
        assert not Activity.objects.filter(type="task").exists()


class TestT5Directions:
    def test_t5_crm_to_mailbox_writes_crm_tasks_and_overwrites_outlook_edits(self, crm):
        crm.configure(tasks_direction="crm_to_mailbox")
        activity = task(crm, "From the CRM")
        crm.mailbox().create_task("Outlook's own")
        task_pass(crm)
        assert not Activity.objects.filter(subject="Outlook's own").exists()
        item = crm.mailbox().find("tasks", Subject="From the CRM")[0]
        crm.mailbox().edit(item, Subject="Edited in Outlook")
        task_pass(crm)
        activity.refresh_from_db()
        assert activity.subject == "From the CRM"
        assert crm.mailbox().get(item).props["Subject"] == "From the CRM"
        quiet(crm)

    def test_t5_mailbox_to_crm_imports_and_pulls_but_never_writes_the_mailbox(self, crm):
        crm.configure(tasks_direction="mailbox_to_crm")
        task(crm, "CRM only")
        item = crm.mailbox().create_task("From Outlook")
        task_pass(crm)
        assert subjects(crm) == ["From Outlook"]
        activity = Activity.objects.get(subject="From Outlook")
        activity.subject = "Edited in the CRM"
        activity.save()
        crm.mailbox().edit(item, Importance="High")
        task_pass(crm)
        activity.refresh_from_db()
        assert activity.priority == "high" and activity.subject == "Edited in the CRM"
        assert crm.mailbox().get(item).props["Subject"] == "From Outlook"
        quiet(crm)

    def test_t5_both_ways_merges_fields_changed_on_each_side(self, crm):
        activity = task(crm, "Both")
        task_pass(crm)
        (item,) = outlook(crm)
        crm.mailbox().edit(item, Importance="Low")
        activity.subject = "Renamed in the CRM"
        activity.save()
        task_pass(crm)
        activity.refresh_from_db()
        assert activity.priority == "low"
        assert crm.mailbox().get(item).props["Subject"] == "Renamed in the CRM"
        quiet(crm)

    def test_t5_off_runs_no_task_pass_from_sync_now(self, crm):
        crm.configure(tasks_direction="off")
        task(crm)
        run_passes(crm.env.name, kind="tasks")
        assert not SyncRun.objects.filter(kind=SyncKind.TASKS).exists()
        assert outlook(crm) == []


class TestT6Deletions:
    def test_t6_deleting_in_the_crm_deletes_the_mailbox_task(self, crm):
        activity = task(crm)
        task_pass(crm)
        activity.retire()
        assert task_pass(crm).deleted == 1
        assert outlook(crm) == []
        assert not ItemLink.objects.filter(kind=mapping.TASK).exists()
        quiet(crm)

    def test_t6_deleted_in_outlook_is_kept_in_the_crm_by_default_and_not_written_again(self, crm):
        activity = task(crm)
        task_pass(crm)
        crm.mailbox().delete(outlook(crm)[0])
        task_pass(crm)
        assert Activity.objects.filter(pk=activity.pk).exists()
        assert ItemLink.objects.get(activity=activity).state == LinkState.DELETED_REMOTE
        assert outlook(crm) == []
        quiet(crm)

    def test_t6_a_task_a_failed_pass_created_and_outlook_deleted_is_seen_deleted(self, crm, monkeypatch):
        # The failed pass keeps the old token, and no token reports the deletion of an item
        # created after it: the next pass reads what the failed one linked.
        task(crm, "First")
        task_pass(crm)
        activity = task(crm, "Second")
        original = TaskPass.write

        def written_then_dropped(self, *args, **kwargs):
            original(self, *args, **kwargs)
            raise TransientMailboxError("connection dropped after the writes")

        monkeypatch.setattr(TaskPass, "write", written_then_dropped)
        assert task_pass(crm).outcome == Outcome.FAILED
        monkeypatch.setattr(TaskPass, "write", original)
        crm.mailbox().delete(next(t for t in outlook(crm) if t.props.get("Subject") == "Second"))
        task_pass(crm)
        assert ItemLink.objects.get(activity=activity).state == LinkState.DELETED_REMOTE
        assert subjects(crm) == ["First"]
        quiet(crm)

    def test_t6_deleted_in_outlook_deletes_the_crm_task_under_the_delete_policy(self, crm):
        crm.configure(personal_deletion_policy="delete")
        activity = task(crm)
        task_pass(crm)
        crm.mailbox().delete(outlook(crm)[0])
        assert task_pass(crm).deleted == 1
        assert not Activity.objects.filter(pk=activity.pk).exists()

    def test_t6_an_edit_in_the_crm_beats_a_delete_in_outlook(self, crm):
        activity = task(crm)
        task_pass(crm)
        crm.mailbox().delete(outlook(crm)[0])
        activity.subject = "Still wanted"
        activity.save()
        task_pass(crm)
        assert subjects(crm) == ["Still wanted"]

    def test_t6_an_edit_in_outlook_beats_a_delete_in_the_crm(self, crm):
        activity = task(crm)
        task_pass(crm)
        activity.retire()
        crm.mailbox().edit(outlook(crm)[0], Subject="Still needed")
        task_pass(crm)
        activity = Activity.objects.get(pk=activity.pk)
        assert activity.subject == "Still needed" and activity.deleted_at is None
        assert subjects(crm) == ["Still needed"]
        quiet(crm)

    def test_t6_the_safety_limit_holds_a_mass_delete(self, crm):
        crm.configure(safety_limit_minimum=3, safety_limit_percent=20)
        tasks = [task(crm, f"Task {i}") for i in range(10)]
        task_pass(crm)
        for activity in tasks[:6]:
            activity.retire()
        run = task_pass(crm)
        assert run.outcome == Outcome.HELD and "safety limit" in run.error
        assert len(outlook(crm)) == 10
        crm.alice.refresh_from_db()
        assert crm.alice.kind_health["tasks"]["state"] == "held"
        runtime.confirm_deletions(crm.alice.pk)
        assert task_pass(crm).deleted == 6
        assert len(outlook(crm)) == 4


class TestCostAndPreview:
    def test_a_thousand_new_tasks_cost_the_issue_budget_and_an_idle_pass_one_request(self, crm):
        crm.configure(batch_size=100)
        # Domino has no batch requests: one request per To Do written (docs/domino.md, adapted).
        per_request = crm.writes_per_request(100)
        Activity.objects.bulk_create(
            Activity(
                environment=crm.env,
                type="task",
                subject=f"Task {i:04d}",
                due=DUE,
                responsible=crm.alice.employee,
                start=datetime(2027, 3, 10, tzinfo=UTC),
                end=datetime(2027, 3, 10, tzinfo=UTC),
            )
            for i in range(1000)
        )
        before = crm.mailbox_requests()
        assert task_pass(crm).created == 1000
        cost = crm.mailbox_requests() - before
        if crm.is_graph:
            # The issue's ⌈1000/20⌉ + 5 leaves no room for the one delta round that must follow
            # the writes: 1000 tasks are ⌈1000/200⌉ = 5 pages of it (Exchange Online's largest),
            # plus the lookup of the default list: 56 (docs/architecture.md, known gaps).
            assert cost <= math.ceil(1000 / per_request) + math.ceil(1000 / 200) + 1
        else:
            assert cost <= math.ceil(1000 / per_request) + 5
        assert len(outlook(crm)) == 1000
        quiet(crm)

    def test_a_preview_lists_the_task_decisions_and_writes_nothing(self, crm):
        task(crm, "Planned")
        preview = preview_passes(crm.env.name, kind="tasks")
        assert [(a.action.kind, a.action.rule) for a in preview.actions] == [("create", "T1")]
        assert outlook(crm) == [] and not ItemLink.objects.exists()


class TestPush:
    @pytest.mark.django_db(transaction=True)
    @pytest.mark.backends("graph")
    def test_k14_graph_subscribes_to_the_todo_list_and_an_outlook_task_enqueues_a_task_pass(
        self, crm, live_server, settings
    ):
        settings.PUBLIC_BASE_URL = live_server.url
        crm.configure(push_enabled=True, synchronize_activities=False)
        crm.sim.graph.subscriptions.retry_delays = [0.1]
        crm.bob.tasks_enabled = False
        crm.bob.save()
        crm.env.set_state(SynchronizerState.RUNNING)
        assert graph_push.maintain(crm.env.pk)["created"] == 1
        row = GraphSubscription.objects.get()
        assert (row.sync_user, row.kind, row.state) == (crm.alice, "tasks", PushSubscriptionState.ACTIVE)
        assert "/todo/lists/" in row.resource and row.resource.endswith("/tasks")
        assert not graph_push._out_of_step(crm.env)
        OrmQ.objects.all().delete()
        crm.mailbox().create_task("Pushed")
        assert crm.sim.graph.subscriptions.wait_idle()
        assert (crm.alice.pk, "tasks", "push") in push_passes()
        # After the task pass the stored list id gives the same resource: nothing to maintain.
        task_pass(crm)
        assert not graph_push._out_of_step(crm.env)
        assert graph_push.maintain(crm.env.pk) == {"created": 0, "renewed": 0, "removed": 0, "failed": 0}


def push_passes() -> set[tuple]:
    found = set()
    for row in OrmQ.objects.all():
        task = SignedPackage.loads(row.payload)
        if task["func"] == "synccore.tasks.run_pass" and task["args"][2] == "push":
            found.add(tuple(task["args"][:3]))
    return found


class TestH2Move:
    @pytest.mark.backends("ews")
    def test_h2_tasks_written_over_ews_are_found_again_over_graph_and_never_imported_twice(
        self, crm, _graph_process_state
    ):
        graph = connection_fields(crm.sim, "graph")
        graph.pop("backend")
        crm.configure(**graph)
        first = task(crm, "Written over EWS")
        second = task(crm, "Also over EWS", due=date(2027, 4, 1))
        task_pass(crm)
        crm.alice.backend = "graph"
        crm.alice.save()
        run = task_pass(crm)
        assert run.outcome == Outcome.SUCCESS, run.error
        assert Activity.objects.filter(type="task").count() == 2
        assert len(outlook(crm)) == 2
        states = set(ItemLink.objects.filter(kind=mapping.TASK).values_list("state", flat=True))
        assert states == {LinkState.SYNCED}
        # Still linked: a CRM edit reaches the same To Do task.
        second.subject = "Edited after the move"
        second.save()
        task_pass(crm)
        assert subjects(crm) == ["Edited after the move", first.subject]
        quiet(crm)
