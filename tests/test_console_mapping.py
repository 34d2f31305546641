"""Console and API: the field-mapping editor refuses what cannot work with a message, never a 500
(issue 14, findings 4 and 6)."""

from __future__ import annotations

import pytest

from synccore.models import FieldMapping
from tests.fixtures.api import *  # noqa: F403  (fixtures)
from tests.fixtures.api import user_with_role

pytestmark = pytest.mark.django_db

ONE_WAY = "Contacts and companies are synchronized one way"


@pytest.fixture
def admin_client(client):
    client.force_login(user_with_role("administrator"))
    return client


def row_data(prefix: str, **values) -> dict:
    data = {f"{prefix}-{name}": value for name, value in values.items()}
    data.setdefault(f"{prefix}-enabled", "on")
    return data


def test_adding_a_row_to_an_exchange_field_already_mapped_is_a_form_error_not_a_500(admin_client, env):
    response = admin_client.post(
        f"/environments/{env.pk}/mappings/add/",
        row_data(
            "new",
            entity="contact",
            crm_field="department",
            exchange_field="notes",
            direction="crm_to_exchange",
        ),
    )
    assert response.status_code == 200
    assert "This Exchange field is already mapped for this entity." in response.content.decode()
    assert not FieldMapping.objects.filter(environment=env, crm_field="department").exists()


def test_moving_a_row_onto_an_exchange_field_already_mapped_is_a_form_error_not_a_500(admin_client, env):
    row = FieldMapping.objects.get(environment=env, entity="contact", crm_field="job_title")
    response = admin_client.post(
        f"/environments/{env.pk}/mappings/{row.pk}/",
        row_data(
            f"m{row.pk}",
            entity="contact",
            crm_field="job_title",
            exchange_field="notes",
            direction="crm_to_exchange",
        ),
    )
    assert response.status_code == 200
    assert "This Exchange field is already mapped for this entity." in response.content.decode()
    row.refresh_from_db()
    assert row.exchange_field == "job_title"


def test_contact_and_company_rows_offer_only_crm_to_exchange(admin_client, env):
    page = admin_client.get(f"/environments/{env.pk}/").content.decode()
    contact_row = page.split('data-mapping="contact:job_title"', 1)[1].split("</tr>", 1)[0]
    assert "crm_to_exchange" in contact_row and 'value="both"' not in contact_row
    activity_row = page.split('data-mapping="activity:location"', 1)[1].split("</tr>", 1)[0]
    assert 'value="both"' in activity_row


@pytest.mark.parametrize("entity, crm_field", [("contact", "department"), ("company", "website")])
def test_the_console_refuses_both_ways_for_contacts_and_companies(admin_client, env, entity, crm_field):
    exchange_field = "department" if entity == "contact" else "business_homepage"
    response = admin_client.post(
        f"/environments/{env.pk}/mappings/add/",
        row_data("new", entity=entity, crm_field=crm_field, exchange_field=exchange_field, direction="both"),
    )
    assert response.status_code == 200
    assert not FieldMapping.objects.filter(environment=env, entity=entity, crm_field=crm_field).exists()


def test_the_api_refuses_both_ways_for_contacts_with_a_clear_error(admin_api, env):
    response = admin_api.post(
        f"/api/v1/environments/{env.pk}/field-mappings/",
        {"entity": "contact", "crm_field": "department", "exchange_field": "department", "direction": "both"},
        format="json",
    )
    assert response.status_code == 400
    assert ONE_WAY in response.json()["direction"][0]
    row = FieldMapping.objects.get(environment=env, entity="contact", crm_field="job_title")
    response = admin_api.patch(
        f"/api/v1/environments/{env.pk}/field-mappings/{row.pk}/", {"direction": "both"}, format="json"
    )
    assert response.status_code == 400 and ONE_WAY in response.json()["direction"][0]


def test_activity_rows_still_go_both_ways(admin_api, env):
    row = FieldMapping.objects.get(environment=env, entity="activity", crm_field="reminder_minutes")
    response = admin_api.patch(
        f"/api/v1/environments/{env.pk}/field-mappings/{row.pk}/", {"direction": "both"}, format="json"
    )
    assert response.status_code == 200, response.json()


@pytest.mark.parametrize("direction", ["both", "exchange_to_crm"])
@pytest.mark.parametrize(
    "entity, crm_field, exchange_field", [("contact", "department", "department"), ("company", "website", "business_homepage")]
)
def test_finding2_contacts_and_companies_refuse_every_direction_but_crm_to_exchange(
    admin_client, admin_api, env, entity, crm_field, exchange_field, direction
):
    api = f"/api/v1/environments/{env.pk}/field-mappings/"
    response = admin_api.post(
        api, {"entity": entity, "crm_field": crm_field, "exchange_field": exchange_field, "direction": direction}, format="json"
    )
    assert response.status_code == 400 and ONE_WAY in response.json()["direction"][0]
    row = FieldMapping.objects.filter(environment=env, entity=entity, enabled=True, fixed=False).first()
    response = admin_api.patch(f"{api}{row.pk}/", {"direction": direction}, format="json")
    assert response.status_code == 400 and "direction" in response.json()
    response = admin_client.post(
        f"/environments/{env.pk}/mappings/add/",
        row_data("new", entity=entity, crm_field=crm_field, exchange_field=exchange_field, direction=direction),
    )
    assert response.status_code == 200
    assert not FieldMapping.objects.filter(environment=env, entity=entity, crm_field=crm_field).exists()
    row.refresh_from_db()
    assert row.direction == "crm_to_exchange"


def test_finding2_activity_rows_take_all_three_directions(admin_api, env):
    row = FieldMapping.objects.get(environment=env, entity="activity", crm_field="location")
    for direction in ("crm_to_exchange", "exchange_to_crm", "both"):
        response = admin_api.patch(
            f"/api/v1/environments/{env.pk}/field-mappings/{row.pk}/", {"direction": direction}, format="json"
        )
        assert response.status_code == 200, response.json()
        row.refresh_from_db()
        assert row.direction == direction
