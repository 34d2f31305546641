"""Custom CRM fields (issue 15): records carry ``custom_fields`` through the CRM API, the mapping
offers ``custom:<key>``, and the contact engine writes them to a standard Exchange field or to a
named extended property of the product's property set, over EWS and Graph."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from django.utils import timezone

from exchange_sim.store import ExtendedKey
from syncadmin.console.forms import FieldMappingForm, mapping_vocabulary
from synccore import crmio
from synccore.mailbox.base import PROPERTY_SET_ID
from synccore.models import Activity, Contact, CustomField, FieldMapping
from synccore.sync.calendar import run_calendar_pass
from synccore.sync.tasks import run_task_pass
from tests.fixtures import factories as f
from tests.fixtures.api import *  # noqa: F403  (fixtures)

pytestmark = pytest.mark.django_db


def crm_url(env, entity, tail=""):
    return f"/api/v1/environments/{env.pk}/crm/{entity}/{tail}"


def upsert(client, env, entity, items):
    response = client.post(crm_url(env, entity, "bulk-upsert/"), items, format="json")
    assert response.status_code == 200, response.content
    return response.json()["results"]


def read(client, env, entity, external_id):
    response = client.get(crm_url(env, entity, f"{external_id}/"))
    assert response.status_code == 200, response.content
    return response.json()


# --- The CRM API --------------------------------------------------------------------------------


def test_custom_fields_round_trip_and_merge_key_by_key_with_null_removing_a_key(admin_api, env):
    first = {"region": "EMEA", "seats": 12, "renewal": "2027-03-01"}
    assert upsert(admin_api, env, "contacts", [{"external_id": "P-1", "last_name": "Lee", "custom_fields": first}])[0][
        "status"
    ] == "created"
    assert read(admin_api, env, "contacts", "P-1")["custom_fields"] == first
    upsert(admin_api, env, "contacts", [{"external_id": "P-1", "custom_fields": {"seats": 15.5, "region": None}}])
    assert read(admin_api, env, "contacts", "P-1")["custom_fields"] == {"seats": 15.5, "renewal": "2027-03-01"}
    # An upsert without custom_fields leaves them as they are.
    upsert(admin_api, env, "contacts", [{"external_id": "P-1", "job_title": "CFO"}])
    assert read(admin_api, env, "contacts", "P-1")["custom_fields"] == {"seats": 15.5, "renewal": "2027-03-01"}


def test_companies_and_activities_carry_custom_fields_too(admin_api, env):
    upsert(admin_api, env, "companies", [{"external_id": "C-1", "name": "Fabrikam", "custom_fields": {"tier": "A"}}])
    assert read(admin_api, env, "companies", "C-1")["custom_fields"] == {"tier": "A"}
    upsert(
        admin_api,
        env,
        "activities",
        [
            {
                "external_id": "A-1",
                "type": "call",
                "subject": "Call",
                "start": "2026-12-01T09:00:00+00:00",
                "end": "2026-12-01T09:30:00+00:00",
                "custom_fields": {"outcome": "won", "due": "2026-12-24"},
            }
        ],
    )
    assert read(admin_api, env, "activities", "A-1")["custom_fields"] == {"outcome": "won", "due": "2026-12-24"}


def test_types_are_checked_and_a_date_stays_a_date(admin_api, env):
    upsert(
        admin_api,
        env,
        "contacts",
        [{"external_id": "P-1", "last_name": "Lee", "custom_fields": {"renewal": "2027-03-01", "seats": 3}}],
    )
    assert CustomField.types(env.pk, "contact") == {"renewal": "date", "seats": "number"}
    results = upsert(
        admin_api,
        env,
        "contacts",
        [
            {"external_id": "P-2", "last_name": "Ng", "custom_fields": {"renewal": "next spring"}},
            {"external_id": "P-3", "last_name": "Ng", "custom_fields": {"seats": "many"}},
            {"external_id": "P-4", "last_name": "Ng", "custom_fields": {"notes": {"nested": 1}}},
            {"external_id": "P-5", "last_name": "Ng", "custom_fields": {"1bad key": "x"}},
            {"external_id": "P-6", "last_name": "Ng", "custom_fields": ["not", "an", "object"]},
            {"external_id": "P-7", "last_name": "Ng", "custom_fields": {"flag": True}},
        ],
    )
    assert [r["status"] for r in results] == ["error"] * 6
    assert all("custom_fields" in r["errors"] for r in results)
    assert "a date (YYYY-MM-DD)" in results[0]["errors"]["custom_fields"][0]
    assert "a number" in results[1]["errors"]["custom_fields"][0]
    assert not Contact.objects.filter(external_id__in=["P-2", "P-3", "P-4", "P-5", "P-6", "P-7"]).exists()
    # The stored date reads back as the same date, not a date-time.
    assert read(admin_api, env, "contacts", "P-1")["custom_fields"]["renewal"] == "2027-03-01"


# --- The mapping vocabulary ---------------------------------------------------------------------


def test_the_mapping_offers_custom_keys_in_use_and_refuses_unknown_ones(admin_api, env):
    url = f"/api/v1/environments/{env.pk}/field-mappings/"
    refused = admin_api.post(
        url, {"entity": "contact", "crm_field": "custom:region", "exchange_field": "department"}, format="json"
    )
    assert refused.status_code == 400 and "crm_field" in refused.json()
    upsert(admin_api, env, "contacts", [{"external_id": "P-1", "last_name": "Lee", "custom_fields": {"region": "EMEA"}}])
    vocabulary = mapping_vocabulary(env.pk)
    assert ("custom:region", "Custom: region") in vocabulary["contact"]["crm"]
    assert "property:region" in dict(vocabulary["contact"]["exchange"])
    form = FieldMappingForm(environment=env, prefix="new")
    assert "custom:region" in dict(form.fields["crm_field"].choices)
    accepted = admin_api.post(
        url, {"entity": "contact", "crm_field": "custom:region", "exchange_field": "property:SalesRegion"}, format="json"
    )
    assert accepted.status_code == 201, accepted.json()
    address = admin_api.post(
        url, {"entity": "contact", "crm_field": "custom:region", "exchange_field": "business_address"}, format="json"
    )
    assert address.status_code == 400 and "exchange_field" in address.json()
    bad_name = admin_api.post(
        url, {"entity": "contact", "crm_field": "custom:region", "exchange_field": "property:no spaces"}, format="json"
    )
    assert bad_name.status_code == 400 and "exchange_field" in bad_name.json()


# --- The contact engine, over both backends -----------------------------------------------------


def _contact(crm, **custom):
    result = crmio.upsert(
        crm.env, "contacts", {"external_id": "P-1", "first_name": "Ann", "last_name": "Lee", "custom_fields": custom}
    )
    assert result.status != "error", result.errors


def _property(item, name):
    return item.extended_value(name, property_set_id=PROPERTY_SET_ID)


@pytest.mark.backends("ews", "graph")
def test_a_custom_field_mapped_to_an_extended_property_round_trips(crm):
    _contact(crm, renewal="2027-03-01", seats=12)
    FieldMapping.objects.create(
        environment=crm.env, entity="contact", crm_field="custom:renewal", exchange_field="property:Renewal"
    )
    FieldMapping.objects.create(
        environment=crm.env, entity="contact", crm_field="custom:seats", exchange_field="property:Seats"
    )
    assert crm.contacts_pass().created == 1
    (item,) = crm.mailbox().contacts()
    assert (_property(item, "Renewal"), _property(item, "Seats")) == ("2027-03-01", "12")

    crmio.upsert(crm.env, "contacts", {"external_id": "P-1", "custom_fields": {"seats": 14, "renewal": None}})
    run = crm.contacts_pass()
    assert run.updated == 1
    (item,) = crm.mailbox().contacts()
    assert _property(item, "Seats") == "14"
    assert _property(item, "Renewal") in (None, "")  # removed (EWS) or emptied (Graph cannot remove)
    assert crm.contacts_pass().updated == 0  # agreed: nothing left to write


@pytest.mark.backends("ews", "graph")
def test_a_custom_field_mapped_to_a_standard_exchange_field(crm):
    _contact(crm, region="EMEA")
    FieldMapping.objects.create(
        environment=crm.env, entity="contact", crm_field="custom:region", exchange_field="department"
    )
    crm.contacts_pass()
    (item,) = crm.mailbox().contacts()
    assert item.props["Department"] == "EMEA"
    crmio.upsert(crm.env, "contacts", {"external_id": "P-1", "custom_fields": {"region": "APAC"}})
    assert crm.contacts_pass().updated == 1
    (item,) = crm.mailbox().contacts()
    assert item.props["Department"] == "APAC"


@pytest.mark.backends("ews", "graph")
def test_a_custom_property_survives_an_outlook_edit_overwrite_and_a_move(crm):
    _contact(crm, region="EMEA")
    FieldMapping.objects.create(
        environment=crm.env, entity="contact", crm_field="custom:region", exchange_field="property:Region"
    )
    crm.contacts_pass()
    (item,) = crm.mailbox().contacts()
    crm.mailbox().edit(item, JobTitle="Edited in Outlook")
    crm.contacts_pass()  # C6: the CRM's values again, the property among them
    crm.configure(categorize_contacts=True, contact_folder_name="CRM")
    crm.contacts_pass()
    (moved,) = crm.mailbox().contacts("contacts/CRM")
    assert _property(moved, "Region") == "EMEA"


def test_a_back_office_edit_is_type_checked_and_records_new_keys(admin_client, admin_api, env):
    from tests.fixtures.admin_forms import change_form_data

    upsert(admin_api, env, "contacts", [{"external_id": "P-1", "last_name": "Lee", "custom_fields": {"seats": 3}}])
    contact = Contact.objects.get(external_id="P-1")
    page = f"/admin/synccore/contact/{contact.pk}/change/"
    refused = admin_client.post(
        page, change_form_data(admin_client.get(page).content.decode(), custom_fields='{"seats": "many"}')
    )
    assert refused.status_code == 200 and "must be a number" in refused.content.decode()
    saved = admin_client.post(
        page,
        change_form_data(admin_client.get(page).content.decode(), custom_fields='{"seats": 4, "tier": "A"}'),
    )
    assert saved.status_code == 302
    contact.refresh_from_db()
    assert contact.custom_fields == {"seats": 4, "tier": "A"}
    assert CustomField.types(env.pk, "contact") == {"seats": "number", "tier": "text"}


def test_a_long_custom_text_fits_an_extended_property_but_not_a_255_character_field(crm):
    _contact(crm, history="x" * 1000)
    FieldMapping.objects.create(
        environment=crm.env, entity="contact", crm_field="custom:history", exchange_field="property:History"
    )
    assert crm.contacts_pass().created == 1
    (item,) = crm.mailbox().contacts()
    assert _property(item, "History") == "x" * 1000
    FieldMapping.objects.create(
        environment=crm.env, entity="contact", crm_field="custom:history", exchange_field="office_location"
    )
    run = crm.contacts_pass()
    assert run.skipped == 1 and "Office" in Contact.objects.get().links.get().last_error


@pytest.mark.backends("ews", "graph")
def test_a_company_custom_field_reaches_its_contact_card(crm):
    crm.configure(synchronize_companies=True)
    result = crmio.upsert(crm.env, "companies", {"external_id": "C-1", "name": "Fabrikam", "custom_fields": {"tier": "A"}})
    assert result.status == "created", result.errors
    FieldMapping.objects.create(
        environment=crm.env, entity="company", crm_field="custom:tier", exchange_field="property:Tier"
    )
    crm.contacts_pass()
    (card,) = crm.mailbox().contacts()
    assert _property(card, "Tier") == "A"


def test_the_console_mapping_tab_offers_the_custom_keys(admin_client, admin_api, env):
    upsert(admin_api, env, "contacts", [{"external_id": "P-1", "last_name": "Lee", "custom_fields": {"region": "EMEA"}}])
    page = admin_client.get(f"/environments/{env.pk}/?tab=mapping").content.decode()
    assert "custom:region" in page and "property:region" in page


# --- The calendar engine (activities), over both backends ---------------------------------------


def _custom_row(crm, entity, key, exchange_field, value_type="text", **fields):
    CustomField.register(crm.env.pk, "activity", {key: value_type})  # tasks are activities: one registry
    return FieldMapping.objects.create(
        environment=crm.env,
        entity=entity,
        crm_field=f"custom:{key}",
        exchange_field=exchange_field,
        direction=fields.pop("direction", "both"),
        **fields,
    )


def _visit(crm, **custom):
    start = timezone.now().replace(second=0, microsecond=0) + timedelta(days=2)
    return f.activity(
        crm.env, subject="Visit", start=start, organizer=crm.alice.employee, location="Room 1", custom_fields=custom
    )


def _calendar_pass(crm):
    return run_calendar_pass(crm.alice.pk)


def _the_event(crm):
    (event,) = crm.mailbox().events()
    return event


def _outlook_sets(crm, item, name, value):
    key = ExtendedKey.create("String", property_set_id=PROPERTY_SET_ID, name=name)
    crm.mailbox().set_extended(item, key, value)


@pytest.mark.backends("ews", "graph")
def test_a_custom_activity_field_mapped_to_an_extended_property_round_trips(crm):
    _custom_row(crm, "activity", "region", "property:Region")
    activity = _visit(crm, region="EMEA")
    assert _calendar_pass(crm).created == 1
    assert _property(_the_event(crm), "Region") == "EMEA"

    activity.custom_fields = {"region": "APAC"}
    activity.save()
    assert _calendar_pass(crm).updated == 1
    assert _property(_the_event(crm), "Region") == "APAC"

    _outlook_sets(crm, _the_event(crm), "Region", "LATAM")  # an Outlook edit of the custom field
    _calendar_pass(crm)
    activity.refresh_from_db()
    assert activity.custom_fields == {"region": "LATAM"}
    assert activity.location == "Room 1"
    run = _calendar_pass(crm)
    assert (run.updated, run.conflicts) == (0, 0)  # agreed: no ping-pong


@pytest.mark.backends("ews", "graph")
def test_a_custom_activity_field_mapped_to_the_location_while_its_own_row_is_off(crm):
    FieldMapping.objects.filter(environment=crm.env, entity="activity", crm_field="location").update(enabled=False)
    _custom_row(crm, "activity", "room", "location")
    activity = _visit(crm, room="Board room")
    _calendar_pass(crm)
    assert _the_event(crm).props["Location"] == "Board room"
    crm.mailbox().edit(_the_event(crm), Location="Annex")
    _calendar_pass(crm)
    activity.refresh_from_db()
    assert activity.custom_fields == {"room": "Annex"} and activity.location == "Room 1"
    assert _calendar_pass(crm).updated == 0


@pytest.mark.backends("ews", "graph")
def test_a_disabled_custom_activity_row_is_neither_written_nor_compared(crm):
    row = _custom_row(crm, "activity", "region", "property:Region", enabled=False)
    activity = _visit(crm, region="EMEA")
    _calendar_pass(crm)
    assert _property(_the_event(crm), "Region") in (None, "")
    _outlook_sets(crm, _the_event(crm), "Region", "LATAM")
    activity.custom_fields = {"region": "APAC"}
    activity.save()
    run = _calendar_pass(crm)
    assert (run.updated, run.conflicts) == (0, 0)
    activity.refresh_from_db()
    assert activity.custom_fields == {"region": "APAC"}  # the Outlook edit is not pulled
    assert _property(_the_event(crm), "Region") == "LATAM"  # nor the CRM's value written
    row.enabled = True
    row.save()
    _calendar_pass(crm)  # C8: the row is compared again; both sides agree once more
    activity.refresh_from_db()
    assert _property(_the_event(crm), "Region") == activity.custom_fields["region"]
    assert _calendar_pass(crm).updated == 0


@pytest.mark.backends("ews", "graph")
def test_a_custom_row_crm_to_exchange_writes_over_an_outlook_edit(crm):
    _custom_row(crm, "activity", "region", "property:Region", direction="crm_to_exchange")
    activity = _visit(crm, region="EMEA")
    _calendar_pass(crm)
    _outlook_sets(crm, _the_event(crm), "Region", "LATAM")
    _calendar_pass(crm)
    activity.refresh_from_db()
    assert activity.custom_fields == {"region": "EMEA"}
    assert _property(_the_event(crm), "Region") == "EMEA"


@pytest.mark.backends("ews", "graph")
def test_an_outlook_event_imports_with_its_custom_field(crm):
    _custom_row(crm, "activity", "seats", "property:Seats", value_type="number")
    start = timezone.now().replace(second=0, microsecond=0) + timedelta(days=3)
    key = ExtendedKey.create("String", property_set_id=PROPERTY_SET_ID, name="Seats")
    crm.mailbox().create_item("CalendarItem", "calendar", extended={key: "12"}, Subject="Lunch",
                              Start=start, End=start + timedelta(hours=1))  # fmt: skip
    _calendar_pass(crm)
    assert Activity.objects.get(subject="Lunch").custom_fields == {"seats": 12}
    assert _calendar_pass(crm).updated == 0


# --- The task engine ----------------------------------------------------------------------------

DUE = date(2027, 3, 10)


def _task(crm, **custom):
    midnight = datetime(DUE.year, DUE.month, DUE.day, tzinfo=UTC)
    return f.activity(
        crm.env, type="task", subject="Call Ann", due=DUE, start=midnight, responsible=crm.alice.employee,
        custom_fields=custom,
    )  # fmt: skip


def _task_pass(crm):
    return run_task_pass(crm.alice.pk)


@pytest.mark.backends("ews", "graph")
def test_a_custom_task_date_mapped_to_the_start_day_round_trips(crm):
    crm.configure(synchronize_tasks=True)
    FieldMapping.objects.filter(environment=crm.env, entity="task", crm_field="start").update(enabled=False)
    _custom_row(crm, "task", "kickoff", "start", value_type="date")
    activity = _task(crm, kickoff="2027-03-01")
    assert _task_pass(crm).created == 1
    (item,) = crm.mailbox().tasks()
    assert str(item.props["StartDate"])[:10] == "2027-03-01"

    crm.mailbox().edit(item, StartDate=datetime(2027, 3, 4, tzinfo=UTC))  # an Outlook edit comes back
    _task_pass(crm)
    activity.refresh_from_db()
    assert activity.custom_fields == {"kickoff": "2027-03-04"}
    assert activity.due == DUE
    assert _task_pass(crm).updated == 0


def test_a_custom_task_field_mapped_to_an_extended_property_round_trips_over_ews(crm_ews):
    crm = crm_ews
    crm.configure(synchronize_tasks=True)
    row = _custom_row(crm, "task", "region", "property:Region", enabled=False)
    activity = _task(crm, region="EMEA")
    _task_pass(crm)
    (item,) = crm.mailbox().tasks()
    assert _property(item, "Region") is None  # a disabled row is not written
    row.enabled = True
    row.save()
    assert _task_pass(crm).updated == 1  # C8: enabled, it is written on the next pass
    (item,) = crm.mailbox().tasks()
    assert _property(item, "Region") == "EMEA"
    _outlook_sets(crm, item, "Region", "LATAM")
    _task_pass(crm)
    activity.refresh_from_db()
    assert activity.custom_fields == {"region": "LATAM"}
    assert _task_pass(crm).updated == 0


def test_to_do_and_domino_cannot_carry_custom_properties_and_the_settings_check_says_so(crm_graph):
    crm = crm_graph
    crm.configure(synchronize_tasks=True)
    _custom_row(crm, "task", "region", "property:Region")
    _custom_row(crm, "activity", "region", "property:Region")
    problems = " ".join(crm.settings.connection_problems())
    assert "Tasks: Microsoft To Do" in problems and "custom:region" in problems
    assert "HCL Domino" not in problems
    _task(crm, region="EMEA")
    run = _task_pass(crm)  # left out, not failed
    assert (run.created, run.failed) == (1, 0)
    crm.configure(backend="domino", synchronize_tasks=False)
    problems = " ".join(crm.settings.connection_problems())
    assert "Activities: HCL Domino mail files cannot carry Outlook custom fields" in problems


def test_the_mapping_offers_custom_activity_and_task_fields_and_checks_their_targets(admin_api, env):
    url = f"/api/v1/environments/{env.pk}/field-mappings/"
    upsert(
        admin_api,
        env,
        "activities",
        [
            {
                "external_id": "A-1", "type": "task", "subject": "Call", "start": "2026-12-01T09:00:00+00:00",
                "end": "2026-12-01T09:00:00+00:00", "custom_fields": {"room": "B1", "kickoff": "2026-11-30", "region": "EMEA"},
            }
        ],
    )  # fmt: skip
    vocabulary = mapping_vocabulary(env.pk)
    assert ("custom:room", "Custom: room") in vocabulary["activity"]["crm"]
    assert ("custom:kickoff", "Custom: kickoff") in vocabulary["task"]["crm"]

    def post(entity, crm_field, exchange_field):
        return admin_api.post(
            url, {"entity": entity, "crm_field": crm_field, "exchange_field": exchange_field, "direction": "both"},
            format="json",
        )  # fmt: skip

    assert post("activity", "custom:room", "property:Room").status_code == 201
    assert post("activity", "custom:room", "subject").status_code == 400  # not a free field
    assert post("activity", "location", "property:Room").status_code == 400  # custom fields only
    assert post("task", "custom:region", "start").status_code == 400  # a day takes a date only
    FieldMapping.objects.filter(environment=env, entity="task", crm_field="start").update(enabled=False)
    assert post("task", "custom:kickoff", "start").status_code == 201
