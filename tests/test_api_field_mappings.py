"""API: field mappings (default rows, fixed rows locked)."""

from __future__ import annotations

import pytest

from synccore.models import FieldMapping
from tests.fixtures.api import *  # noqa: F403  (fixtures)

pytestmark = pytest.mark.django_db


def url(env, tail=""):
    return f"/api/v1/environments/{env.pk}/field-mappings/{tail}"


def test_lists_the_default_rows(viewer_api, env):
    body = viewer_api.get(url(env)).json()
    assert len(body) == FieldMapping.objects.filter(environment=env).count() > 10
    assert {"entity", "crm_field", "exchange_field", "direction", "enabled", "fixed"} <= body[0].keys()


def test_edits_an_editable_row(admin_api, env):
    row = FieldMapping.objects.get(environment=env, entity="contact", crm_field="job_title")
    response = admin_api.patch(url(env, f"{row.pk}/"), {"exchange_field": "office_location"}, format="json")
    assert response.status_code == 200, response.json()
    row.refresh_from_db()
    assert row.exchange_field == "office_location"


def test_fixed_rows_are_locked(admin_api, env):
    row = FieldMapping.objects.get(environment=env, entity="contact", crm_field="first_name")
    response = admin_api.patch(url(env, f"{row.pk}/"), {"exchange_field": "surname"}, format="json")
    assert response.status_code == 400
    assert admin_api.delete(url(env, f"{row.pk}/")).status_code == 409


def test_unknown_fields_and_double_mappings_are_refused(admin_api, env):
    response = admin_api.post(
        url(env), {"entity": "contact", "crm_field": "shoe_size", "exchange_field": "notes"}, format="json"
    )
    assert response.status_code == 400
    assert "crm_field" in response.json()
    response = admin_api.post(
        url(env), {"entity": "contact", "crm_field": "department", "exchange_field": "notes"}, format="json"
    )
    assert response.status_code == 400  # notes is already mapped from the comment


def test_adds_and_removes_a_row(admin_api, env):
    response = admin_api.post(
        url(env),
        {"entity": "contact", "crm_field": "department", "exchange_field": "department"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert admin_api.delete(url(env, f"{response.json()['id']}/")).status_code == 204
