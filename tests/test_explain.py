"""P2: every decision a real pass takes about an item is recorded with its rule and reason, and
"Explain" on an item (API, console, command) shows its links and its history of decisions."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from syncadmin.roles import VIEWER
from synccore.models import Activity, Attendee, Decision
from synccore.runtime import housekeeping
from synccore.runtime import service as runtime
from synccore.sync.calendar import run_calendar_pass
from synccore.sync.connection import open_user_backend
from synccore.sync.contacts import run_contact_pass
from synccore.sync.preview import preview_passes
from synccore.sync.tasks import run_task_pass
from tests.fixtures import factories as f
from tests.fixtures.api import client_for, user_with_role

pytestmark = [pytest.mark.django_db, pytest.mark.backends("ews", "graph")]


@pytest.fixture
def start():
    return timezone.now().replace(second=0, microsecond=0) + timedelta(days=2)


def meeting(crm, start, **fields):
    organizer = crm.alice.employee
    activity = f.activity(crm.env, start=start, organizer=organizer, **fields)
    Attendee.objects.create(activity=activity, email=organizer.email, type="employee", meeting_organizer=True)
    Attendee.objects.create(activity=activity, email="bob@contoso.example", type="employee", invite=True)
    return activity


def explained(crm, kind, record):
    return runtime.explain_item(crm.env.pk, kind, record.external_id)


def decisions_of(history, run_id=None):
    return [d for d in history["decisions"] if run_id is None or d["run"] == run_id]


class TestCalendar:
    def test_p2_an_outlook_edit_merged_with_a_crm_edit_of_another_field_shows_both_with_the_rule(self, crm, start):
        activity = meeting(crm, start, subject="Review", location="Room 1")
        first = run_calendar_pass(crm.alice.pk)
        (event,) = crm.mailbox().events()
        crm.mailbox().edit(event, Location="Outlook room")
        activity.subject = "CRM subject"
        activity.save()
        merged = run_calendar_pass(crm.alice.pk)

        history = explained(crm, "activities", activity)
        assert history["record"]["id"] == activity.pk
        assert [(link["user"], link["state"]) for link in history["links"]] == [(crm.alice.mailbox_email, "synced")]
        latest = {d["action"]: d for d in decisions_of(history, merged.pk)}
        assert set(latest) == {"pull", "update"}
        pull, update = latest["pull"], latest["update"]
        assert (pull["side"], pull["rule"], pull["outcome"]) == ("crm", "K8", "done")
        assert pull["fields"] == {"location": {"before": "Room 1", "after": "Outlook room"}}
        assert "Exchange" in pull["reason"]
        assert (update["side"], update["rule"]) == ("exchange", "K8")
        assert update["fields"] == {"subject": {"before": "Review", "after": "CRM subject"}}
        # Newest first: the first pass's create comes after this pass's decisions.
        assert history["decisions"][-1]["action"] == "create" and history["decisions"][-1]["run"] == first.pk

    def test_p2_a_conflict_shows_the_policy_that_decided(self, crm, start):
        crm.configure(conflict_policy="crm_wins")
        activity = meeting(crm, start, subject="Review")
        run_calendar_pass(crm.alice.pk)
        (event,) = crm.mailbox().events()
        crm.mailbox().edit(event, Subject="Outlook subject")
        activity.subject = "CRM subject"
        activity.save()
        run = run_calendar_pass(crm.alice.pk)

        history = explained(crm, "activities", activity)
        (conflict,) = [d for d in decisions_of(history, run.pk) if d["action"] == "conflict"]
        assert conflict["rule"] == "K8, conflict policy: CRM wins"
        assert conflict["fields"] == {"subject": {"before": "CRM subject", "after": "Outlook subject"}}
        assert "CRM's" in conflict["reason"]
        assert [c["field"] for c in history["conflicts"]] == ["subject"]

    def test_p2_an_event_made_in_outlook_is_explained_by_its_import(self, crm, start):
        crm.mailbox().create_event(subject="Lunch", start=start, end=start + timedelta(hours=1))
        run = run_calendar_pass(crm.alice.pk)
        activity = Activity.objects.get(subject="Lunch")
        (decision,) = decisions_of(explained(crm, "activities", activity), run.pk)
        assert (decision["action"], decision["side"], decision["rule"]) == ("import", "crm", "K6")

    def test_p2_an_idle_pass_and_a_preview_record_nothing(self, crm, start):
        meeting(crm, start, subject="Review")
        run_calendar_pass(crm.alice.pk)
        recorded = Decision.objects.count()
        assert recorded > 0
        run_calendar_pass(crm.alice.pk)
        f.activity(crm.env, subject="Dentist", start=start, organizer=crm.alice.employee)
        preview_passes(crm.env.name, user_email=crm.alice.mailbox_email, kind="calendar")
        assert Decision.objects.count() == recorded

    def test_p2_a_calendar_create_carries_its_field_values(self, crm, start):
        activity = meeting(crm, start, subject="Review", location="Room 1")
        preview = preview_passes(crm.env.name, user_email=crm.alice.mailbox_email, kind="calendar")
        (planned,) = [p.action for p in preview.actions if p.action.kind == "create"]
        assert planned.fields["subject"] == (None, "Review")
        assert planned.fields["location"] == (None, "Room 1")
        assert planned.fields["attendees"][1] == ["bob@contoso.example"]
        assert planned.fields["start"][0] is None and planned.fields["start"][1]
        run = run_calendar_pass(crm.alice.pk)

        (create,) = decisions_of(explained(crm, "activities", activity), run.pk)
        assert create["action"] == "create"
        assert create["fields"]["subject"] == {"before": None, "after": "Review"}
        assert create["fields"]["location"] == {"before": None, "after": "Room 1"}
        assert create["fields"]["attendees"] == {"before": None, "after": ["bob@contoso.example"]}
        assert {"start", "end"} <= set(create["fields"])
        assert "subject: None → 'Review'" in create["line"]

    def test_p2_a_task_create_carries_its_field_values(self, crm):
        crm.configure(synchronize_tasks=True)
        due = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=3)
        activity = f.activity(
            crm.env, type="task", subject="Call back", start=due, due=due.date(), responsible=crm.alice.employee
        )
        run = run_task_pass(crm.alice.pk)
        (create,) = decisions_of(explained(crm, "tasks", activity), run.pk)
        assert create["action"] == "create"
        assert create["fields"]["subject"] == {"before": None, "after": "Call back"}
        # Written again after a deletion in Outlook (T6: an edit beats a delete): its fields too.
        crm.mailbox().delete(crm.mailbox().tasks()[0])
        activity.subject = "Still wanted"
        activity.save()
        run = run_task_pass(crm.alice.pk)
        (create,) = decisions_of(explained(crm, "tasks", activity), run.pk)
        assert (create["action"], create["rule"]) == ("create", "T6")
        assert create["fields"]["subject"] == {"before": None, "after": "Still wanted"}


class FailingWrites:
    """The real backend, except that its ``n``-th call of ``name`` fails the pass: before the
    request, or (``after``) once it reached Exchange, as a crash before the link is committed."""

    def __init__(self, backend, name: str, n: int, *, after: bool = False) -> None:
        self._backend, self._name, self._left, self._after = backend, name, n, after

    def __getattr__(self, name: str):
        attribute = getattr(self._backend, name)
        if name != self._name:
            return attribute

        def write(*args, **kwargs):
            self._left -= 1
            if self._left == 0 and not self._after:
                raise RuntimeError("injected failure before a remote write")
            result = attribute(*args, **kwargs)
            if self._left == 0:
                raise RuntimeError("injected crash after a remote write")
            return result

        return write


def outcomes(run) -> dict[str, tuple[str, str]]:
    return {d.subject: (d.action, d.outcome) for d in Decision.objects.filter(run=run)}


class TestFailedPass:
    @pytest.mark.parametrize("after", [False, True], ids=["before", "after"])
    def test_p2_a_failed_pass_records_what_it_wrote_before_the_failure_as_done(self, crm, start, after):
        crm.configure(batch_size=1)
        for i in range(3):
            f.activity(crm.env, subject=f"Visit {i}", start=start + timedelta(hours=i), organizer=crm.alice.employee)
        crm.mailbox().create_event(subject="Lunch", start=start, end=start + timedelta(hours=1))
        backend = FailingWrites(open_user_backend(crm.alice), "create_events", 2, after=after)
        try:
            run = run_calendar_pass(crm.alice.pk, backend=backend)
        finally:
            backend.close()
        assert run.outcome == "failed" and "injected" in run.error

        recorded = outcomes(run)
        written = sorted(e.props["Subject"] for e in crm.mailbox().events() if e.props["Subject"] != "Lunch")
        assert recorded["Lunch"] == ("import", "done")  # written at once, before the creates
        done = sorted(subject for subject, (action, outcome) in recorded.items() if (action, outcome) == ("create", "done"))
        failed = sorted(subject for subject, (action, outcome) in recorded.items() if outcome == "failed")
        assert len(done) == 1 and set(done) <= set(written)
        assert len(failed) == 2 and set(done) | set(failed) == {"Visit 0", "Visit 1", "Visit 2"}
        # The create that reached Exchange before the crash is not confirmed: failed, said so.
        assert len(written) == (2 if after else 1)
        (line,) = {d.detail for d in Decision.objects.filter(run=run, outcome="failed")}
        assert line.startswith("The pass stopped before this was confirmed written") and "injected" in line

        # The next pass writes the rest and adopts what the crash left: every create done once.
        run = run_calendar_pass(crm.alice.pk)
        assert sorted(e.props["Subject"] for e in crm.mailbox().events()) == ["Lunch", "Visit 0", "Visit 1", "Visit 2"]
        assert all(outcome == "done" for _, outcome in outcomes(run).values())

    def test_p2_a_failed_contact_pass_records_what_it_wrote_before_the_failure_as_done(self, crm):
        crm.configure(batch_size=1)
        for i in range(3):
            f.contact(crm.env, first_name="Ann", last_name=f"Lee {i}")
        backend = FailingWrites(open_user_backend(crm.alice), "create_contacts", 2)
        try:
            run = run_contact_pass(crm.alice.pk, backend=backend)
        finally:
            backend.close()
        assert run.outcome == "failed"
        recorded = outcomes(run)
        (written,) = [c.props["DisplayName"] for c in crm.mailbox().contacts()]
        assert recorded.pop(written) == ("create", "done")
        assert sorted(recorded.values()) == [("create", "failed")] * 2

    def test_p2_a_failed_task_pass_records_what_it_wrote_before_the_failure_as_done(self, crm):
        crm.configure(synchronize_tasks=True, batch_size=1)
        due = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=3)
        for i in range(3):
            f.activity(
                crm.env, type="task", subject=f"Call {i}", start=due, due=due.date(), responsible=crm.alice.employee
            )
        backend = FailingWrites(open_user_backend(crm.alice), "create_tasks", 2)
        try:
            run = run_task_pass(crm.alice.pk, backend=backend)
        finally:
            backend.close()
        assert run.outcome == "failed"
        recorded = outcomes(run)
        (written,) = [t.props["Subject"] for t in crm.mailbox().tasks()]
        assert recorded.pop(written) == ("create", "done")
        assert sorted(recorded.values()) == [("create", "failed")] * 2


class TestContacts:
    def test_p2_contact_decisions_with_fields_before_and_after(self, crm):
        contact = f.contact(crm.env, first_name="Ann", last_name="Lee", job_title="Buyer")
        created = crm.contacts_pass()
        contact.job_title = "CFO"
        contact.save()
        updated = crm.contacts_pass()
        history = explained(crm, "contacts", contact)
        assert [(d["run"], d["action"]) for d in history["decisions"]] == [
            (updated.pk, "update"),
            (created.pk, "create"),
        ]
        assert history["decisions"][0]["fields"]["job_title"] == {"before": "Buyer", "after": "CFO"}
        assert history["decisions"][0]["rule"] == "C6"
        assert "job_title: 'Buyer' → 'CFO'" in history["decisions"][0]["line"]


@pytest.mark.backends("ews")
class TestEdges:
    def test_p2_the_api_explains_an_item_and_refuses_unknown_ones(self, crm):
        contact = f.contact(crm.env, first_name="Ann", last_name="Lee")
        crm.contacts_pass()
        client = client_for(user_with_role(VIEWER))
        url = f"/api/v1/environments/{crm.env.pk}/items/contacts/{contact.external_id}/explain/"
        answer = client.get(url)
        assert answer.status_code == 200
        body = answer.json()
        assert set(body) == {
            "environment", "kind", "external_id", "record", "links", "conflicts", "loop_hold", "decisions"
        }
        assert [d["action"] for d in body["decisions"]] == ["create"]
        assert client.get(f"/api/v1/environments/{crm.env.pk}/items/contacts/nope/explain/").status_code == 404
        assert client.get(f"/api/v1/environments/{crm.env.pk}/items/widgets/x/explain/").status_code == 404
        assert client.get("/api/v1/environments/999999/items/contacts/x/explain/").status_code == 404
        assert client_for(None).get(url).status_code in (401, 403)

    def test_p2_the_console_and_the_command_explain_an_item(self, crm, client):
        contact = f.contact(crm.env, first_name="Ann", last_name="Lee")
        crm.contacts_pass()
        client.force_login(user_with_role(VIEWER))
        page = client.get(reverse("console:explain", args=[crm.env.pk, "contact", contact.external_id]))
        assert page.status_code == 200
        assert b'data-action-kind="create"' in page.content and b"Ann Lee" in page.content
        out = StringIO()
        call_command("explain", "contacts", contact.external_id, environment=crm.env.name, stdout=out)
        lines = out.getvalue().splitlines()
        assert any("create in Exchange" in line and "(C2)" in line for line in lines)
        assert json.loads(lines[-1])["decisions"][0]["action"] == "create"

    def test_p2_explain_is_offered_from_the_run_history_and_from_the_crm_record(self, crm, client):
        contact = f.contact(crm.env, first_name="Ann", last_name="Lee")
        run = crm.contacts_pass()
        client.force_login(user_with_role(VIEWER))
        history = client.get(reverse("console:environment", args=[crm.env.pk]) + "?tab=history")
        run_url = reverse("console:run", args=[crm.env.pk, run.pk])
        assert run_url.encode() in history.content
        page = client.get(run_url)
        explain_url = reverse("console:explain", args=[crm.env.pk, "contacts", contact.external_id])
        assert page.status_code == 200 and explain_url.encode() in page.content
        assert b'data-action-kind="create"' in page.content
        assert client.get(reverse("console:run", args=[crm.env.pk, run.pk + 999])).status_code == 404
        client.force_login(user_with_role(None, superuser=True))
        change = client.get(reverse("admin:synccore_contact_change", args=[contact.pk]))
        assert change.status_code == 200 and explain_url.encode() in change.content

    def test_p2_decisions_are_kept_as_long_as_run_history(self, crm):
        f.contact(crm.env, first_name="Ann", last_name="Lee")
        crm.contacts_pass()
        assert Decision.objects.count() == 1
        removed = housekeeping.prune(now=timezone.now() + timedelta(days=400))
        assert removed["decisions"] == 1 and Decision.objects.count() == 0
