"""API: CRM activities of type task (issue 18) — status, due day, completion, priority, the
responsible employee, links to a contact or company — and the ``type=`` filter of the list."""

from __future__ import annotations

import pytest

from synccore.models import Activity
from tests.fixtures import factories
from tests.fixtures.api import *  # noqa: F403  (fixtures)

pytestmark = pytest.mark.django_db


def url(env, tail=""):
    return f"/api/v1/environments/{env.pk}/crm/activities/{tail}"


def upsert(client, env, items):
    response = client.post(url(env, "bulk-upsert/"), items, format="json")
    assert response.status_code == 200, response.content
    return response.json()["results"]


TASK = {
    "external_id": "T-1",
    "type": "task",
    "subject": "Send the offer",
    "time_zone": "Europe/Amsterdam",
    "due": "2027-03-10",
    "priority": "high",
    "responsible_email": "ALICE@contoso.example",
    "contact_external_id": "P-1",
    "company_external_id": "C-1",
}


@pytest.fixture
def linked(env):
    company = factories.company(env, "Fabrikam", external_id="C-1")
    factories.contact(env, first_name="Ann", last_name="Lee", external_id="P-1", company=company)


def test_a_task_round_trips_with_its_own_fields_and_needs_no_start_or_end(admin_api, env, linked):
    assert upsert(admin_api, env, [TASK]) == [{"external_id": "T-1", "status": "created", "errors": {}}]
    body = admin_api.get(url(env, "T-1/")).json()
    assert {k: body[k] for k in ("type", "status", "due", "completed_at", "priority")} == {
        "type": "task",
        "status": "open",
        "due": "2027-03-10",
        "completed_at": None,
        "priority": "high",
    }
    assert body["responsible_email"] == "alice@contoso.example"
    assert (body["contact_external_id"], body["company_external_id"]) == ("P-1", "C-1")
    assert body["start"] == "2027-03-10T00:00:00+01:00"  # the due day, in the activity's zone


def test_completing_a_task_stamps_the_completion_and_reopening_clears_it(admin_api, env, linked):
    upsert(admin_api, env, [TASK])
    upsert(admin_api, env, [{"external_id": "T-1", "status": "completed"}])
    done = admin_api.get(url(env, "T-1/")).json()
    assert done["status"] == "completed" and done["completed_at"]
    completion = {"external_id": "T-1", "status": "completed", "completed_at": "2027-03-09T17:00:00+01:00"}
    upsert(admin_api, env, [completion])
    assert admin_api.get(url(env, "T-1/")).json()["completed_at"] == "2027-03-09T17:00:00+01:00"
    upsert(admin_api, env, [{"external_id": "T-1", "status": "open"}])
    reopened = admin_api.get(url(env, "T-1/")).json()
    assert (reopened["status"], reopened["completed_at"]) == ("open", None)


def test_a_due_date_time_is_taken_as_its_day_in_the_activitys_zone(admin_api, env, linked):
    upsert(admin_api, env, [{**TASK, "due": "2027-03-09T23:30:00+00:00"}])
    assert Activity.objects.get(external_id="T-1").due.isoformat() == "2027-03-10"


def test_unknown_links_values_and_employees_are_refused_per_field(admin_api, env, linked):
    results = upsert(
        admin_api,
        env,
        [
            {**TASK, "external_id": "T-2", "contact_external_id": "P-9"},
            {**TASK, "external_id": "T-3", "company_external_id": "C-9"},
            {**TASK, "external_id": "T-4", "responsible_email": "nobody@contoso.example"},
            {**TASK, "external_id": "T-5", "priority": "urgent"},
            {**TASK, "external_id": "T-6", "status": "done"},
        ],
    )
    assert [set(r["errors"]) for r in results] == [
        {"contact_external_id"},
        {"company_external_id"},
        {"responsible_email"},
        {"priority"},
        {"status"},
    ]


def test_the_list_filters_by_activity_type(admin_api, env, linked):
    call = {
        "external_id": "A-1",
        "type": "call",
        "subject": "Ring Ann",
        "start": "2027-03-01T09:00:00+01:00",
        "end": "2027-03-01T09:15:00+01:00",
    }
    upsert(admin_api, env, [TASK, call])
    tasks = admin_api.get(url(env), {"type": "task"}).json()["results"]
    assert [r["external_id"] for r in tasks] == ["T-1"]
    calls = admin_api.get(url(env), {"type": "call"}).json()["results"]
    assert [r["external_id"] for r in calls] == ["A-1"]
    assert admin_api.get(url(env), {"type": "appointment"}).json()["results"] == []
    refused = admin_api.get(url(env), {"type": "meeting"})
    assert refused.status_code == 400, refused.content
    assert refused.json() == {"type": ["Not an activity type; one of: call, appointment, task, email."]}
