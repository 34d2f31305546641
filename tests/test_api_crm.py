"""API: the CRM integration endpoints (bulk upsert, read back with cursors, delete)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from synccore.models import Activity, Attendee, Contact, Employee, ItemLink, SyncUser
from synccore.runtime import service as runtime
from tests.fixtures import factories
from tests.fixtures.api import *  # noqa: F403  (fixtures)

pytestmark = pytest.mark.django_db


def url(env, entity, tail=""):
    return f"/api/v1/environments/{env.pk}/crm/{entity}/{tail}"


def upsert(client, env, entity, items):
    response = client.post(url(env, entity, "bulk-upsert/"), items, format="json")
    assert response.status_code == 200, response.content
    return response.json()["results"]


MEETING = {
    "external_id": "A-1",
    "type": "appointment",
    "subject": "Quarterly review",
    "start": "2026-12-01T09:00:00+01:00",
    "end": "2026-12-01T10:00:00+01:00",
    "time_zone": "Europe/Amsterdam",
    "organizer_email": "alice@contoso.example",
    "recurrence": "FREQ=WEEKLY;COUNT=5",
    "exdates": ["2026-12-08T09:00:00+01:00"],
    "attendees": [
        {"email": "BOB@contoso.example", "name": "Bob", "invite": True},
        {"email": "guest@fabrikam.example", "name": "Guest"},
    ],
}


def test_bulk_upsert_answers_per_item_created_updated_and_error(admin_api, env):
    results = upsert(
        admin_api, env, "companies", [{"external_id": "C-1", "name": "Fabrikam", "country": "NL"}]
    )
    assert results == [{"external_id": "C-1", "status": "created", "errors": {}}]
    results = upsert(
        admin_api,
        env,
        "companies",
        [
            {"external_id": "C-1", "division": "Sales"},
            {"external_id": "C-2", "name": "Bad", "country": "XX"},
            {"external_id": "C-3"},
            {"name": "no id"},
        ],
    )
    assert [r["status"] for r in results] == ["updated", "error", "error", "error"]
    assert "country" in results[1]["errors"]
    assert "name" in results[2]["errors"]
    assert "external_id" in results[3]["errors"]
    company = admin_api.get(url(env, "companies", "C-1/")).json()
    assert (company["name"], company["division"], company["country"]) == ("Fabrikam", "Sales", "NL")


def test_contacts_carry_emails_codes_rep_groups_and_favorites(admin_api, env):
    upsert(admin_api, env, "companies", [{"external_id": "C-1", "name": "Fabrikam"}])
    contact = {
        "external_id": "P-1",
        "first_name": "Anna",
        "last_name": "Jansen",
        "company_external_id": "C-1",
        "emails": ["anna@fabrikam.example", "a.jansen@fabrikam.example"],
        "country": "nl",
        "language": "NL",
        "rep_email": "ALICE@contoso.example",
        "sales_groups": ["North"],
        "favorite_of": ["bob@contoso.example"],
    }
    assert upsert(admin_api, env, "contacts", [contact])[0]["status"] == "created"
    body = admin_api.get(url(env, "contacts", "P-1/")).json()
    assert body["emails"] == ["anna@fabrikam.example", "a.jansen@fabrikam.example"]
    assert (body["country"], body["language"], body["rep_email"]) == ("NL", "nl", "alice@contoso.example")
    assert (body["sales_groups"], body["favorite_of"]) == (["North"], ["bob@contoso.example"])
    assert body["company_external_id"] == "C-1"


def test_contact_errors_name_the_api_fields(admin_api, env):
    results = upsert(
        admin_api,
        env,
        "contacts",
        [
            {"external_id": "P-2", "rep_email": "ghost@contoso.example"},
            {"external_id": "P-3", "emails": ["not-an-address"]},
            {"external_id": "P-4", "first_name": "x" * 300},
        ],
    )
    assert [r["status"] for r in results] == ["error"] * 3
    assert [set(r["errors"]) for r in results] == [{"rep_email"}, {"emails"}, {"first_name"}]
    assert not Contact.all_objects.filter(external_id__in=["P-2", "P-3", "P-4"]).exists()


def test_activities_round_trip_with_recurrence_and_attendees(
    admin_api, env, monkeypatch, django_capture_on_commit_callbacks
):
    notified = []
    monkeypatch.setattr(runtime, "notify_crm_change", lambda env_id, ids: notified.append((env_id, ids)))
    with django_capture_on_commit_callbacks(execute=True):
        assert upsert(admin_api, env, "activities", [MEETING])[0]["status"] == "created"
    activity = Activity.objects.get(external_id="A-1")
    assert notified == [(env.pk, [activity.pk])]
    assert activity.organizer.email == "alice@contoso.example"
    body = admin_api.get(url(env, "activities", "A-1/")).json()
    assert body["start"] == "2026-12-01T09:00:00+01:00"
    assert body["recurrence"] == "FREQ=WEEKLY;COUNT=5"
    assert body["exdates"] == ["2026-12-08T08:00:00+00:00"]  # kept as instants, in UTC
    assert [(a["email"], a["type"]) for a in body["attendees"]] == [
        ("BOB@contoso.example", "employee"),
        ("guest@fabrikam.example", "other"),
    ]
    # Attendees are replaced as a set.
    upsert(
        admin_api,
        env,
        "activities",
        [{"external_id": "A-1", "attendees": [{"email": "guest@fabrikam.example"}]}],
    )
    assert [a["email"] for a in admin_api.get(url(env, "activities", "A-1/")).json()["attendees"]] == [
        "guest@fabrikam.example"
    ]


def test_all_day_activities_carry_dates_with_an_exclusive_end(admin_api, env):
    item = {
        "external_id": "A-2",
        "subject": "Trade fair",
        "all_day": True,
        "start": "2026-12-01",
        "end": "2026-12-03",
        "time_zone": "Europe/Amsterdam",
    }
    assert upsert(admin_api, env, "activities", [item])[0]["status"] == "created"
    body = admin_api.get(url(env, "activities", "A-2/")).json()
    assert (body["start"], body["end"], body["all_day"]) == ("2026-12-01", "2026-12-03", True)
    wrong = {**item, "external_id": "A-3", "start": "2026-12-01T00:00:00+01:00"}
    assert "start" in upsert(admin_api, env, "activities", [wrong])[0]["errors"]


@pytest.mark.parametrize(
    "rule",
    ["FREQ=HOURLY;COUNT=3", "FREQ=MONTHLY;BYDAY=1MO,3WE", "FREQ=WEEKLY;BYDAY=2TU", "FREQ=DAILY;BYHOUR=9"],
)
def test_a_recurrence_exchange_cannot_represent_answers_400(admin_api, env, rule):
    response = admin_api.put(url(env, "activities", "A-9/"), {**MEETING, "recurrence": rule}, format="json")
    assert response.status_code == 400
    assert "recurrence" in response.json()
    assert not Activity.all_objects.filter(external_id="A-9").exists()


@pytest.mark.parametrize(
    "rule",
    ["FREQ=MONTHLY;BYDAY=-1FR", "FREQ=MONTHLY;BYMONTHDAY=15", "FREQ=YEARLY;BYMONTH=3;BYMONTHDAY=1", None],
)
def test_recurrences_exchange_knows_are_accepted(admin_api, env, rule):
    response = admin_api.put(url(env, "activities", "A-9/"), {**MEETING, "recurrence": rule}, format="json")
    assert response.status_code == 201, response.json()


def test_naive_times_and_unknown_time_zones_are_refused(admin_api, env):
    item = {**MEETING, "start": "2026-12-01T09:00:00", "time_zone": "Mars/Olympus"}
    errors = upsert(admin_api, env, "activities", [item])[0]["errors"]
    assert "time_zone" in errors


def test_get_filters_by_updated_since_inclusively_and_pages_by_cursor(admin_api, env):
    upsert(admin_api, env, "employees", [{"external_id": f"E-{i}", "name": f"E {i}"} for i in range(5)])
    everyone = admin_api.get(url(env, "employees"), {"page_size": 2}).json()
    seen = [e["external_id"] for e in everyone["results"]]
    next_url = everyone["next"]
    while next_url:
        page = admin_api.get(next_url).json()
        seen += [e["external_id"] for e in page["results"]]
        next_url = page["next"]
    # The fixture's two employees and the five upserted, each once.
    assert len(seen) == len(set(seen)) == 7
    third = admin_api.get(url(env, "employees", "E-2/")).json()
    since = admin_api.get(url(env, "employees"), {"updated_since": third["updated_at"]}).json()["results"]
    assert since[0]["external_id"] == "E-2"
    assert admin_api.get(url(env, "employees"), {"external_id": "E-4"}).json()["results"][0]["name"] == "E 4"


def test_bad_filters_and_cursors_answer_400(admin_api, env):
    assert admin_api.get(url(env, "contacts"), {"updated_since": "last week"}).status_code == 400
    assert admin_api.get(url(env, "contacts"), {"cursor": "garbage!"}).status_code == 400
    assert admin_api.get(url(env, "contacts"), {"page_size": "0"}).status_code == 400


def test_delete_goes_through_the_model_so_linked_records_become_tombstones(admin_api, env):
    linked = factories.contact(env, external_id="P-LINKED")
    factories.contact(env, external_id="P-PLAIN")
    ItemLink.objects.create(
        environment=env, sync_user=SyncUser.objects.first(), kind="contact", contact=linked
    )
    assert admin_api.delete(url(env, "contacts", "P-LINKED/")).status_code == 204
    assert admin_api.delete(url(env, "contacts", "P-PLAIN/")).status_code == 204
    assert Contact.all_objects.get(external_id="P-LINKED").is_tombstone
    assert not Contact.all_objects.filter(external_id="P-PLAIN").exists()
    assert admin_api.delete(url(env, "contacts", "P-PLAIN/")).status_code == 404
    listed = admin_api.get(url(env, "contacts"), {"include_deleted": "true"}).json()["results"]
    assert [c["deleted"] for c in listed if c["external_id"] == "P-LINKED"] == [True]


def test_deleting_an_employee_who_is_a_sync_user_answers_409(admin_api, env):
    alice = SyncUser.objects.get(mailbox_email="alice@contoso.example").employee
    assert admin_api.delete(url(env, "employees", f"{alice.external_id}/")).status_code == 409


def test_a_body_that_is_not_a_list_answers_400(admin_api, env):
    response = admin_api.post(url(env, "companies", "bulk-upsert/"), {"external_id": "x"}, format="json")
    assert response.status_code == 400


def test_an_operator_cannot_write_crm_data(operator_api, env):
    response = operator_api.post(url(env, "companies", "bulk-upsert/"), [], format="json")
    assert response.status_code == 403


def test_any_iso_offset_is_accepted_and_stored_in_utc(admin_api, env):
    # PostgreSQL refuses offsets beyond ±15:59, which ISO 8601 allows; times are kept in UTC.
    response = admin_api.get(url(env, "employees"), {"updated_since": "2026-05-24T09:53:20-16:08"})
    assert response.status_code == 200
    item = {
        **MEETING,
        "external_id": "A-TZ",
        "start": "2026-12-01T09:00:00-16:30",
        "end": "2026-12-01T10:00:00-16:30",
    }
    item.pop("recurrence")
    assert upsert(admin_api, env, "activities", [item])[0]["status"] == "created"
    assert Activity.objects.get(external_id="A-TZ").start.isoformat() == "2026-12-02T01:30:00+00:00"
    assert (
        admin_api.get(url(env, "employees"), {"updated_since": "0001-01-01T00:00:00+05:00"}).status_code
        == 400
    )


def test_a_bulk_of_more_than_a_thousand_answers_400(admin_api, env):
    items = [{"external_id": f"E-{i}", "name": "x"} for i in range(1001)]
    response = admin_api.post(url(env, "employees", "bulk-upsert/"), items, format="json")
    assert response.status_code == 400


def test_an_attendee_change_made_by_the_synchronizer_shows_as_a_change_of_the_activity(admin_api, env):
    from datetime import timedelta

    from django.utils import timezone

    from synccore.models import Attendee

    upsert(admin_api, env, "activities", [{**MEETING, "external_id": "A-ATT"}])
    before = admin_api.get(url(env, "activities", "A-ATT/")).json()["updated_at"]
    later = timezone.now() + timedelta(seconds=5)
    # The calendar pass marks an attendee synchronized (K4), touching only the attendee row.
    Attendee.objects.filter(activity__external_id="A-ATT", email__iexact="bob@contoso.example").update(
        synchronized=True, updated_at=later
    )
    since = admin_api.get(url(env, "activities"), {"updated_since": later.isoformat()}).json()["results"]
    assert [a["external_id"] for a in since] == ["A-ATT"]
    assert since[0]["updated_at"] > before
    assert [a["synchronized"] for a in since[0]["attendees"] if a["email"] == "BOB@contoso.example"] == [True]


START = datetime(2026, 12, 1, 9, tzinfo=UTC)


def test_finding7_an_employee_attendee_without_an_address_is_a_visible_warning(admin_api, env, admin_client):
    nameless = Employee.objects.create(environment=env, name="Nora Noaddress", external_id="E-NORA")
    activity = Activity.objects.create(
        environment=env, external_id="A-W", subject="Visit", start=START, end=START + timedelta(hours=1)
    )
    Attendee.objects.create(activity=activity, type="employee", employee=nameless)
    Attendee.objects.create(activity=activity, type="employee", email="bob@contoso.example")
    body = admin_api.get(url(env, "activities", "A-W/")).json()
    (warning,) = body["warnings"]
    assert "Nora Noaddress" in warning and "no e-mail address" in warning
    page = admin_client.get(reverse("admin:synccore_activity_change", args=[activity.pk])).content.decode()
    assert "Nora Noaddress has no e-mail address" in page


def test_finding7_an_activity_whose_employees_all_have_addresses_has_no_warnings(admin_api, env):
    assert upsert(admin_api, env, "activities", [MEETING])[0]["status"] == "created"
    assert admin_api.get(url(env, "activities", "A-1/")).json()["warnings"] == []
