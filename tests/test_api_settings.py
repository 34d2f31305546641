"""API: an environment's settings, with write-only secrets."""

from __future__ import annotations

import pytest

from syncadmin.models import AuditEntry
from tests.fixtures import factories
from tests.fixtures.api import *  # noqa: F403  (fixtures)

pytestmark = pytest.mark.django_db


def url(env):
    return f"/api/v1/environments/{env.pk}/settings/"


def test_secrets_are_never_read_back_only_whether_they_are_set(viewer_api, env):
    body = viewer_api.get(url(env)).json()
    assert "service_password" not in body and "oauth_client_secret" not in body
    assert body["service_password_set"] is True
    assert body["oauth_client_secret_set"] is False
    assert body["pull_interval"] == 15


def test_an_omitted_secret_is_kept_and_null_clears_it(admin_api, env):
    assert admin_api.patch(url(env), {"pull_interval": 5}, format="json").status_code == 200
    env.settings.refresh_from_db()
    assert (env.settings.pull_interval, env.settings.service_password) == (5, "s3cret")
    body = admin_api.patch(url(env), {"service_password": None}, format="json").json()
    assert body["service_password_set"] is False
    env.settings.refresh_from_db()
    assert env.settings.service_password == ""


def test_a_new_secret_replaces_the_old_and_the_audit_masks_it(admin_api, env):
    admin_api.patch(url(env), {"oauth_client_secret": "new-secret"}, format="json")
    env.settings.refresh_from_db()
    assert env.settings.oauth_client_secret == "new-secret"
    entry = AuditEntry.objects.get(action="settings_changed")
    assert entry.changes == {"oauth_client_secret": ["", "••••••"]}
    assert "new-secret" not in str(entry.changes)


def test_bad_values_answer_400_field_by_field(admin_api, env):
    response = admin_api.patch(
        url(env), {"pull_interval": 0, "backend": "smtp", "safety_limit_percent": 500}, format="json"
    )
    assert response.status_code == 400
    assert set(response.json()) == {"pull_interval", "backend", "safety_limit_percent"}


def test_contact_sync_needs_iso_codes_on_the_countries_in_use(admin_api, env):
    country = factories.country(env, iso_code="", name="Atlantis")
    factories.contact(env, country=country)
    response = admin_api.patch(url(env), {"synchronize_contacts": True}, format="json")
    assert response.status_code == 400
    assert "Atlantis" in response.json()["synchronize_contacts"][0]


def test_viewers_and_operators_cannot_change_settings(viewer_api, operator_api, env):
    assert viewer_api.patch(url(env), {"pull_interval": 5}, format="json").status_code == 403
    assert operator_api.patch(url(env), {"pull_interval": 5}, format="json").status_code == 403
