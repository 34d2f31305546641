"""P1: a pass run as a preview reads both sides, says per item what it would do — and writes
nothing anywhere (database, mailboxes, the simulator's write counters); the real pass after it does
what it said."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from django.apps import apps
from django.core.management import call_command
from django.utils import timezone

from syncadmin.models import AuditEntry
from syncadmin.roles import OPERATOR
from synccore.models import Activity, Attendee, SynchronizerState
from synccore.runtime import service as runtime
from synccore.sync.calendar import run_calendar_pass
from synccore.sync.preview import preview_passes
from synccore.sync.tasks import run_task_pass
from tests.fixtures import factories as f
from tests.fixtures.api import client_for, user_with_role

pytestmark = [pytest.mark.django_db, pytest.mark.backends("ews", "graph")]

WRITE_OPERATIONS = ("CreateItem", "UpdateItem", "DeleteItem", "MoveItem", "CreateFolder", "SendItem")
GRAPH_RESOURCES = (
    "contacts",
    "events",
    "contactFolders",
    "calendars",
    "messages",
    "subscriptions",
    "todoLists",
    "todoTasks",
    "todoLinkedResources",
)
DUE = date(2027, 3, 10)


@pytest.fixture
def start():
    return timezone.now().replace(second=0, microsecond=0) + timedelta(days=2)


def meeting(crm, start, *, invite=("bob@contoso.example", "carol@partner.example"), **fields):
    organizer = crm.alice.employee
    activity = f.activity(crm.env, start=start, organizer=organizer, **fields)
    Attendee.objects.create(activity=activity, email=organizer.email, type="employee", meeting_organizer=True)
    for email in invite:
        Attendee.objects.create(activity=activity, email=email, type="employee", invite=True)
    return activity


def task(crm, subject: str, **fields) -> Activity:
    """A CRM task of Alice's, due on DUE (task dates are days)."""
    midnight = datetime(DUE.year, DUE.month, DUE.day, tzinfo=UTC)
    values = {"type": "task", "subject": subject, "due": DUE, "responsible": crm.alice.employee}
    return f.activity(crm.env, start=midnight, **(values | fields))


def outlook_tasks(crm) -> dict[str, str]:
    """Alice's mailbox tasks: subject → status."""
    return {t.props.get("Subject"): t.props.get("Status") for t in crm.mailbox().tasks()}


def database() -> dict[str, list[dict]]:
    """Every row of every table of the product, in a comparable form."""
    dump = {}
    for model in apps.get_app_config("synccore").get_models():
        manager = getattr(model, "all_objects", model.objects)
        dump[model._meta.db_table] = [repr(row) for row in manager.order_by("pk").values()]
    return dump


def mailboxes(sim) -> dict[str, list[tuple]]:
    """Every item and folder of every mailbox, with its change key."""
    out = {}
    for mailbox in sim.store.mailboxes():
        user = sim.user(mailbox.address)
        items = sim.store.all_items(mailbox.address)
        out[mailbox.address] = sorted(
            [(item.id, item.changekey, item.folder_id, item.kind) for item in items]
            + [("folder", folder.id, folder.display_name) for folder in user.folders()]
        )
    return out


def writes(sim) -> int:
    """Write requests the simulator saw: EWS operations, Graph requests and $batch sub-requests."""
    counters = sim.counters
    graph = [
        f"graph.{resource}.{verb}"
        for resource in GRAPH_RESOURCES
        for verb in ("create", "update", "delete", "permanentDelete", "cancel", "move", "copy", "send")
    ]
    return (
        sum(counters[op] for op in WRITE_OPERATIONS)
        + sum(counters[op] for op in graph)
        + sum(counters.sub_requests(op) for op in graph)
    )


def previewed(crm, **options):
    """A preview, checked to have changed nothing anywhere."""
    db_before, mail_before = database(), mailboxes(crm.sim)
    crm.sim.counters.reset()
    preview = preview_passes(crm.env.name, **options)
    assert writes(crm.sim) == 0
    assert crm.sim.counters.total() > 0  # it did read both sides
    assert mailboxes(crm.sim) == mail_before
    assert database() == db_before
    return preview


def actions_of(preview, kind):
    return sorted(a.action.item.subject for a in preview.actions if a.action.kind == kind)


class TestContacts:
    def test_p1_a_first_sync_previewed_writes_nothing_and_the_real_pass_does_what_it_said(self, crm):
        for i in range(3):
            f.contact(crm.env, first_name="Ann", last_name=f"Lee {i}")
        preview = previewed(crm, user_email=crm.alice.mailbox_email, kind="contacts")
        summary = preview.summary()
        assert (summary["would_create"], summary["would_update"], summary["would_delete"]) == (3, 0, 0)
        assert actions_of(preview, "create") == ["Ann Lee 0", "Ann Lee 1", "Ann Lee 2"]
        run = crm.contacts_pass()
        assert (run.created, run.updated, run.deleted) == (3, 0, 0)
        assert writes(crm.sim) > 0  # the counter of writes sees real ones
        assert sorted(c.props["DisplayName"] for c in crm.mailbox().contacts()) == actions_of(preview, "create")

    def test_p1_changes_and_deletions_previewed_with_fields_before_and_after(self, crm):
        kept = f.contact(crm.env, first_name="Ann", last_name="Lee", job_title="Buyer")
        gone = f.contact(crm.env, first_name="Bo", last_name="Gone")
        crm.contacts_pass()
        kept.job_title = "CFO"
        kept.save()
        gone.delete()
        preview = previewed(crm, user_email=crm.alice.mailbox_email, kind="contacts")
        (update,) = [a.action for a in preview.actions if a.action.kind == "update"]
        assert update.fields["job_title"] == ("Buyer", "CFO")
        summary = preview.summary()
        assert (summary["would_create"], summary["would_update"], summary["would_delete"]) == (0, 1, 1)
        run = crm.contacts_pass()
        assert (run.created, run.updated, run.deleted) == (0, 1, 1)


class TestCalendar:
    def test_p1_meetings_previewed_with_their_invitations_and_nothing_written(self, crm, start):
        meeting(crm, start, subject="Review")
        f.activity(crm.env, subject="Dentist", start=start, organizer=crm.alice.employee)
        preview = previewed(crm, user_email=crm.alice.mailbox_email, kind="calendar")
        assert actions_of(preview, "create") == ["Dentist", "Review"]
        (message,) = preview.messages
        assert (message.kind, message.subject) == ("invitation", "Review")
        assert sorted(message.recipients) == ["bob@contoso.example", "carol@partner.example"]
        assert preview.summary()["invitations"] == 2
        run = run_calendar_pass(crm.alice.pk)
        assert run.created == preview.summary()["would_create"] == 2
        assert writes(crm.sim) > 0
        assert sorted(e.props["Subject"] for e in crm.mailbox().events()) == ["Dentist", "Review"]

    def test_p1_a_conflict_a_stub_and_a_cancellation_previewed_then_done(self, crm, start):
        crm.configure(conflict_policy="crm_wins")
        review = meeting(crm, start, subject="Review", location="Room 1")
        dropped = meeting(crm, start + timedelta(hours=3), subject="Dropped")
        run_calendar_pass(crm.alice.pk)
        review.location = "Room 2"
        review.save()
        (event,) = [e for e in crm.mailbox().events() if e.props["Subject"] == "Review"]
        crm.mailbox().edit(event, Location="Outlook room")
        dropped.delete()
        crm.sim.add_mailbox("olga@partner.example", "Olga", password="olga-pw")
        crm.sim.user("olga@partner.example").create_event(
            "Partner sync",
            start,
            start + timedelta(hours=1),
            RequiredAttendees=[{"Mailbox": {"EmailAddress": "alice@contoso.example"}}],
        )
        preview = previewed(crm, user_email=crm.alice.mailbox_email, kind="calendar")
        summary = preview.summary()
        assert summary["conflicts"] == 1
        assert actions_of(preview, "stub") == ["Partner sync"]
        assert actions_of(preview, "cancel") == ["Dropped"]
        (cancellation,) = [m for m in preview.messages if m.kind == "cancellation"]
        assert sorted(cancellation.recipients) == ["bob@contoso.example", "carol@partner.example"]
        assert summary["cancellations"] == 2
        run = run_calendar_pass(crm.alice.pk)
        assert (run.conflicts, run.deleted) == (1, 1)
        assert sorted(e.props["Subject"] for e in crm.mailbox().events()) == ["Partner sync", "Review"]


class TestTasks:
    @pytest.fixture(autouse=True)
    def _tasks_on(self, crm):
        crm.configure(synchronize_tasks=True)

    def test_p1_a_first_task_pass_previewed_writes_nothing_and_the_real_pass_does_what_it_said(self, crm):
        task(crm, "Call Ann")
        task(crm, "Send the offer")
        task(crm, "Done already", status="completed", completed_at=timezone.now())  # T2: never created
        preview = previewed(crm, user_email=crm.alice.mailbox_email, kind="tasks")
        summary = preview.summary()
        assert (summary["would_create"], summary["would_update"], summary["would_delete"]) == (2, 0, 0)
        assert actions_of(preview, "create") == ["Call Ann", "Send the offer"]
        assert {a.pass_kind for a in preview.actions} == {"tasks"}
        run = run_task_pass(crm.alice.pk)
        assert (run.created, run.updated, run.deleted) == (2, 0, 0)
        assert writes(crm.sim) > 0
        assert sorted(outlook_tasks(crm)) == actions_of(preview, "create")

    def test_p1_a_completion_each_way_a_deletion_and_an_import_previewed_then_done(self, crm):
        completed_in_crm = task(crm, "Call Ann")
        task(crm, "Send the offer")
        deleted_in_crm = task(crm, "Book the room")
        run_task_pass(crm.alice.pk)
        completed_in_crm.status, completed_in_crm.completed_at = "completed", timezone.now()
        completed_in_crm.save()
        deleted_in_crm.retire()
        (offer,) = [t for t in crm.mailbox().tasks() if t.props.get("Subject") == "Send the offer"]
        crm.mailbox().complete_task(offer)
        crm.mailbox().create_task("Visit Fabrikam", DueDate=DUE)

        preview = previewed(crm, user_email=crm.alice.mailbox_email, kind="tasks")
        summary = preview.summary()
        assert (summary["would_create"], summary["would_update"], summary["would_delete"]) == (1, 2, 1)
        assert actions_of(preview, "delete") == ["Book the room"]
        assert actions_of(preview, "import") == ["Visit Fabrikam"]
        changed = {a.action.item.subject: a.action for a in preview.actions if a.action.kind in ("update", "pull")}
        assert sorted(changed) == ["Call Ann", "Send the offer"]
        assert changed["Call Ann"].side == "exchange" and changed["Send the offer"].side == "crm"
        assert changed["Call Ann"].fields["status"][1] == "completed"
        assert changed["Send the offer"].fields["status"][1] == "completed"

        run = run_task_pass(crm.alice.pk)
        assert (run.created, run.updated, run.deleted) == (
            summary["would_create"],
            summary["would_update"],
            summary["would_delete"],
        )
        assert outlook_tasks(crm) == {"Call Ann": "Completed", "Send the offer": "Completed", "Visit Fabrikam": "NotStarted"}
        assert Activity.objects.get(subject="Send the offer").status == "completed"
        assert Activity.objects.filter(subject="Visit Fabrikam", type="task").exists()

    def test_p1_sync_now_kind_tasks_dry_run_ends_with_the_json_line_and_writes_nothing(self, crm, capsys):
        task(crm, "Call Ann")
        db_before, mail_before = database(), mailboxes(crm.sim)
        call_command("sync_now", "--environment", crm.env.name, "--kind", "tasks", "--dry-run")
        out = capsys.readouterr().out.strip().splitlines()
        assert any("would create “Call Ann”" in line for line in out)
        summary = json.loads(out[-1])
        assert (summary["dry_run"], summary["would_create"]) == (True, 1)
        assert (database(), mailboxes(crm.sim)) == (db_before, mail_before)


class TestCommand:
    def test_p1_sync_now_dry_run_prints_the_plan_and_ends_with_one_json_line(self, crm, start, capsys):
        meeting(crm, start, subject="Review")
        db_before, mail_before = database(), mailboxes(crm.sim)
        call_command("sync_now", "--environment", crm.env.name, "--dry-run")
        out = capsys.readouterr().out.strip().splitlines()
        assert any("would create “Review”" in line for line in out)
        summary = json.loads(out[-1])
        assert summary["dry_run"] is True
        assert (summary["would_create"], summary["invitations"]) == (1, 2)
        assert {"would_update", "would_delete", "cancellations", "conflicts", "held"} <= summary.keys()
        assert (database(), mailboxes(crm.sim)) == (db_before, mail_before)
        assert crm.env.state != SynchronizerState.RUNNING  # a preview needs no running synchronizer


class TestApi:
    def test_p1_a_dry_run_answers_200_while_stopped_with_the_summary_and_pages_of_actions(
        self, crm, start, monkeypatch
    ):
        assert crm.env.state == SynchronizerState.STOPPED
        for i in range(3):
            f.contact(crm.env, first_name="Ann", last_name=f"Lee {i}")
        meeting(crm, start, subject="Review")
        monkeypatch.setattr(runtime, "PREVIEW_PAGE_SIZE", 2)
        api = client_for(user_with_role(OPERATOR))
        url = f"/api/v1/environments/{crm.env.pk}/sync-now/"
        db_before, mail_before = database(), mailboxes(crm.sim)
        response = api.post(url, {"dry_run": True, "user": crm.alice.mailbox_email}, format="json")
        assert response.status_code == 200
        body = response.json()
        assert body["summary"]["dry_run"] is True
        assert (body["summary"]["would_create"], body["summary"]["invitations"]) == (4, 2)
        assert body["messages"][0]["kind"] == "invitation"
        seen = body["actions"]
        assert len(seen) == 2
        while body["next_cursor"]:
            body = api.post(
                url,
                {"dry_run": True, "user": crm.alice.mailbox_email, "cursor": body["next_cursor"]},
                format="json",
            ).json()
            seen += body["actions"]
        assert sorted(a["item"]["subject"] for a in seen) == ["Ann Lee 0", "Ann Lee 1", "Ann Lee 2", "Review"]
        assert {a["action"] for a in seen} == {"create"}
        assert (database(), mailboxes(crm.sim)) == (db_before, mail_before)
        assert not AuditEntry.objects.exists()

    def test_p1_a_dry_run_refuses_an_unknown_user_and_a_bad_cursor(self, crm):
        api = client_for(user_with_role(OPERATOR))
        url = f"/api/v1/environments/{crm.env.pk}/sync-now/"
        response = api.post(url, {"dry_run": True, "user": "nobody@contoso.example"}, format="json")
        assert (response.status_code, list(response.json())) == (400, ["user"])
        response = api.post(url, {"dry_run": True, "cursor": "later"}, format="json")
        assert (response.status_code, list(response.json())) == (400, ["cursor"])


class TestConsole:
    def test_p1_preview_beside_sync_now_shows_the_numbers_and_writes_nothing(self, crm, start, client):
        meeting(crm, start, subject="Review")
        client.force_login(user_with_role(OPERATOR))
        page = client.get(f"/environments/{crm.env.pk}/").content.decode()
        assert 'data-action="preview-all"' in page
        db_before, mail_before = database(), mailboxes(crm.sim)
        response = client.post(f"/environments/{crm.env.pk}/preview/", {"kind": "all"})
        assert response.status_code == 200
        page = response.content.decode()
        assert '<td data-field="would_create">1</td>' in page
        assert '<td data-field="invitations">2</td>' in page
        assert "would create “Review”" in page
        assert 'data-action="sync-now-confirmed"' in page
        assert (database(), mailboxes(crm.sim)) == (db_before, mail_before)
        assert not AuditEntry.objects.exists()

    def test_p1_a_viewer_cannot_preview(self, crm, client):
        client.force_login(user_with_role("viewer"))
        assert client.post(f"/environments/{crm.env.pk}/preview/", {"kind": "all"}).status_code in (302, 403)
