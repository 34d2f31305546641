"""Notes To Do items as tasks (T1–T6 over Domino, D1): what is Domino's own. The shared task rules
run over Domino in tests/test_tasks_sync.py; here: To Do completion both ways in Notes' words (a
Notes user's own login to the REST API), the cost of an idle pass, creates made idempotent by the
sync id, tokens, and the validity of what the backend writes against openapi.pim.json."""

from __future__ import annotations

from datetime import UTC, date, datetime

import httpx
import pytest
from django.utils import timezone

from synccore.mailbox.domino import tasks as domino_tasks
from synccore.models import Activity, ItemLink, Outcome
from synccore.sync.tasks import run_task_pass
from tests.fixtures import factories as f
from tests.fixtures.domino_schema import validate

pytestmark = [pytest.mark.django_db, pytest.mark.backends("domino")]
ALICE = "alice@contoso.example"
DUE = date(2027, 3, 10)


@pytest.fixture(autouse=True)
def _tasks_on(crm):
    crm.configure(synchronize_tasks=True)


def task(crm, subject: str = "Call Ann", **fields) -> Activity:
    values = {"type": "task", "subject": subject, "due": DUE, "responsible": crm.alice.employee}
    return f.activity(crm.env, start=datetime(2027, 3, 10, tzinfo=UTC), **(values | fields))


def task_pass(crm):
    return run_task_pass(crm.alice.pk)


def notes(crm, address: str = ALICE) -> httpx.Client:
    """Act as the mail file's owner in Notes: their own login to the REST API."""
    client = httpx.Client(base_url=crm.sim.domino_url)
    answer = client.post("/v1/auth", json={"username": address, "password": address.split("@")[0] + "-password"})
    client.headers["Authorization"] = f"Bearer {answer.json()['bearer']}"
    return client


def todo_of(crm, activity: Activity) -> dict:
    return notes(crm).get(f"/pim-v1/pimitem/{activity.links.get().remote_id}").json()


def test_d1_a_crm_task_becomes_a_notes_to_do_with_the_sync_id_valid_against_the_pim_spec(crm):
    activity = task(crm, priority="high", comment="Bring the offer")
    assert task_pass(crm).created == 1
    todo = todo_of(crm, activity)
    validate(todo, "JSTask")
    assert (todo["@type"], todo["title"], todo["due"], todo["priority"], todo["progress"]) == (
        "jstask", "Call Ann", "2027-03-10T00:00:00", 1, "needs-action",
    )  # fmt: skip
    assert todo["AdditionalFields"]["CrmSyncId"] == str(activity.links.get().sync_id)
    assert crm.mailbox().events() == []  # a To Do, not a calendar entry


def test_t2_to_do_completion_both_ways_over_domino(crm):
    """Ticked off in Notes: the CRM task is completed; completed in the CRM: the Notes To Do is."""
    in_notes, in_crm = task(crm, "Done in Notes"), task(crm, "Done in the CRM")
    assert task_pass(crm).created == 2
    uid = in_notes.links.get().remote_id
    answer = notes(crm).put(f"/pim-v1/pimitem/{uid}", json={"progress": "completed", "percentComplete": 100})
    assert answer.status_code == 200 and answer.json()["progress"] == "completed"
    in_crm.status, in_crm.completed_at = "completed", timezone.now()
    in_crm.save()
    run = task_pass(crm)
    assert run.outcome == Outcome.SUCCESS and run.updated == 2, run.error
    in_notes.refresh_from_db()
    assert in_notes.status == "completed" and in_notes.completed_at is not None
    todo = todo_of(crm, in_crm)
    assert (todo["progress"], todo["percentComplete"]) == ("completed", 100)
    assert "progressUpdated" in todo  # the completion day the server set
    quiet = task_pass(crm)
    assert (quiet.created, quiet.updated, quiet.deleted) == (0, 0, 0)


def test_a_to_do_made_in_notes_becomes_a_crm_task(crm):
    answer = notes(crm).post(
        "/pim-v1/calendar/default",
        json={"@type": "jstask", "title": "From Notes", "due": "2027-04-01T00:00:00", "showWithoutTime": True},
    )
    assert answer.status_code == 200
    assert task_pass(crm).created == 1
    (activity,) = Activity.objects.filter(environment=crm.env, type="task")
    assert activity.subject == "From Notes" and activity.due == date(2027, 4, 1)
    assert activity.responsible == crm.alice.employee


def test_an_idle_task_pass_costs_at_most_two_requests_per_user(crm):
    for i in range(3):
        task(crm, f"Task {i}")
    task_pass(crm)
    crm.mailbox().create_task("Notes' own", DueDate=DUE)
    task_pass(crm)
    before, searches = crm.mailbox_requests(), crm.sim.counters["domino.search"]
    run = task_pass(crm)
    assert (run.created, run.updated, run.deleted) == (0, 0, 0)
    assert crm.mailbox_requests() - before <= 2
    assert crm.sim.counters["domino.search"] - searches == 1  # the listing of ids and stamps, no reads


def test_a_create_whose_answer_was_lost_is_adopted_by_its_sync_id_not_made_twice(crm):
    activity = task(crm, "Once")
    crm.sim.faults.drop_connection(operation="domino.calendar.create")
    task_pass(crm)  # the create is not repeated by the client (a POST)
    assert crm.mailbox().tasks() == []
    # As if the dropped create had reached the server: a To Do carrying the link's sync id.
    link = ItemLink.objects.get(activity=activity)
    assert not link.remote_id
    notes(crm).post(
        "/pim-v1/calendar/default",
        json={"@type": "jstask", "title": "Once", "due": "2027-03-10T00:00:00", "AdditionalFields": {"CrmSyncId": str(link.sync_id)}},
    )
    task_pass(crm)
    assert [t.props["Subject"] for t in crm.mailbox().tasks()] == ["Once"]
    link.refresh_from_db()
    assert link.remote_id and Activity.objects.filter(type="task").count() == 1


def test_a_token_expired_on_the_server_is_renewed_once_and_the_task_pass_completes(crm):
    task(crm)
    task_pass(crm)
    crm.sim.domino.expire_tokens()
    task(crm, "Second")
    run = task_pass(crm)
    assert run.outcome == Outcome.SUCCESS and run.created == 1


def test_a_foreign_token_reads_the_to_dos_again(crm):
    task(crm)
    task_pass(crm)
    from synccore.models import FolderState, SyncKind

    state = FolderState.objects.get(sync_user=crm.alice, kind=SyncKind.TASKS)
    state.sync_token = "some-other-backend-token"
    state.save()
    run = task_pass(crm)
    assert run.outcome == Outcome.SUCCESS and (run.created, run.deleted) == (0, 0)
    assert domino_tasks.TOKEN_PREFIX in FolderState.objects.get(pk=state.pk).sync_token


def test_a_custom_task_field_cannot_ride_on_a_notes_to_do_and_the_settings_check_says_so(crm):
    """Notes To Dos carry no extended properties of ours (PROPERTY_KINDS): a custom:<key> →
    property:<Name> task row is left out, and named by the settings check."""
    from synccore.models import CustomField, FieldMapping

    assert crm.settings.connection_problems() == []
    CustomField.register(crm.env.pk, "activity", {"region": "text"})
    FieldMapping.objects.create(
        environment=crm.env, entity="task", crm_field="custom:region", exchange_field="property:Region", direction="both"
    )
    problems = " ".join(crm.settings.connection_problems())
    assert "Tasks: HCL Domino To Do items cannot carry Outlook custom fields" in problems and "custom:region" in problems
    task(crm)
    run = task_pass(crm)  # left out, not failed
    assert (run.created, run.failed) == (1, 0)


def test_a_401_burst_in_a_task_pass_is_survived_but_a_persistent_401_fails_it_as_permanent(crm):
    task(crm)
    crm.sim.faults.unauthorized(operation="domino.search")
    run = task_pass(crm)
    assert run.outcome == Outcome.SUCCESS and run.created == 1, run.error
    crm.sim.faults.unauthorized(times=None, operation="domino.search")
    run = task_pass(crm)
    assert run.outcome == Outcome.FAILED and "401" in run.error
    crm.sim.faults.clear()
