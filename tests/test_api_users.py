"""API: sync users (CRUD, re-enable, confirm deletions)."""

from __future__ import annotations

import pytest

from syncadmin.models import AuditEntry
from synccore.models import Health, SyncUser
from tests.fixtures import factories
from tests.fixtures.api import *  # noqa: F403  (fixtures)

pytestmark = pytest.mark.django_db


def url(env, tail=""):
    return f"/api/v1/environments/{env.pk}/users/{tail}"


def test_lists_users_with_health_and_last_passes(viewer_api, env):
    body = viewer_api.get(url(env)).json()
    assert [u["mailbox_email"] for u in body] == ["alice@contoso.example", "bob@contoso.example"]
    assert body[0]["health"] == "healthy"
    assert body[0]["last_contact_pass_at"] is None


def test_adds_a_user_matched_to_the_employee_by_address_in_any_case(admin_api, env):
    factories.employee(env, "Carol@Contoso.example", external_id="E-CAROL")
    response = admin_api.post(url(env), {"mailbox_email": "carol@contoso.example"}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["employee_external_id"] == "E-CAROL"
    assert "only in upper/lower case" in body["email_case_warning"]
    assert AuditEntry.objects.get().action == "user_added"


def test_a_mailbox_without_an_employee_is_refused(admin_api, env):
    response = admin_api.post(url(env), {"mailbox_email": "nobody@contoso.example"}, format="json")
    assert response.status_code == 400
    assert "mailbox_email" in response.json()


def test_a_second_user_for_the_same_mailbox_is_refused(admin_api, env):
    response = admin_api.post(url(env), {"mailbox_email": "ALICE@contoso.example"}, format="json")
    assert response.status_code == 400


def test_deactivates_and_deletes_a_user(admin_api, env):
    alice = SyncUser.objects.get(mailbox_email="alice@contoso.example")
    response = admin_api.patch(url(env, f"{alice.pk}/"), {"active": False}, format="json")
    assert response.status_code == 200 and response.json()["active"] is False
    assert admin_api.delete(url(env, f"{alice.pk}/")).status_code == 204
    assert not SyncUser.objects.filter(pk=alice.pk).exists()


def test_re_enables_an_unhealthy_user(admin_api, env):
    alice = SyncUser.objects.get(mailbox_email="alice@contoso.example")
    SyncUser.objects.filter(pk=alice.pk).update(health=Health.UNHEALTHY, last_error="Mailbox not found")
    response = admin_api.post(url(env, f"{alice.pk}/re-enable/"))
    assert response.status_code == 200
    assert response.json()["health"] == "healthy"


def test_confirming_deletions_releases_a_held_user(admin_api, env):
    alice = SyncUser.objects.get(mailbox_email="alice@contoso.example")
    SyncUser.objects.filter(pk=alice.pk).update(health=Health.HELD)
    body = admin_api.post(url(env, f"{alice.pk}/confirm-deletions/")).json()
    assert (body["health"], body["deletions_confirmed"]) == ("healthy", True)


def test_users_of_another_environment_are_404(admin_api, env):
    other = factories.environment("Other")
    stranger = factories.sync_user(other, "zed@contoso.example")
    assert admin_api.get(url(env, f"{stranger.pk}/")).status_code == 404


def test_an_operator_cannot_add_users(operator_api, env):
    assert (
        operator_api.post(url(env), {"mailbox_email": "x@contoso.example"}, format="json").status_code == 403
    )


def test_a_user_is_found_by_its_mailbox_address_as_well_as_its_id(viewer_api, admin_api, env):
    alice = SyncUser.objects.get(environment=env, mailbox_email="alice@contoso.example")
    by_id = viewer_api.get(url(env, f"{alice.pk}/")).json()
    by_address = viewer_api.get(url(env, "Alice@contoso.example/"))
    assert by_address.status_code == 200 and by_address.json() == by_id
    assert viewer_api.get(url(env, "nobody@contoso.example/")).status_code == 404
    assert viewer_api.get(url(env, "not-an-address/")).status_code == 404
    SyncUser.objects.filter(pk=alice.pk).update(health=Health.UNHEALTHY)
    response = admin_api.post(url(env, "alice@contoso.example/re-enable/"))
    assert response.status_code == 200 and response.json()["health"] == "healthy"


def test_finding6_sets_and_clears_the_per_user_categorization_switch(admin_api, env):
    alice = SyncUser.objects.get(mailbox_email="alice@contoso.example")
    assert admin_api.get(url(env, f"{alice.pk}/")).json()["categorize_override"] is None
    response = admin_api.patch(url(env, f"{alice.pk}/"), {"categorize_override": True}, format="json")
    assert response.status_code == 200 and response.json()["categorize_override"] is True
    alice.refresh_from_db()
    assert alice.categorize_contacts is True
    response = admin_api.patch(url(env, f"{alice.pk}/"), {"categorize_override": None}, format="json")
    assert response.json()["categorize_override"] is None
    alice.refresh_from_db()
    assert alice.categorize_contacts is env.settings.categorize_contacts


def test_finding6_categorization_on_for_a_user_needs_a_folder_name(admin_api, env):
    env.settings.contact_folder_name = ""
    env.settings.save()
    alice = SyncUser.objects.get(mailbox_email="alice@contoso.example")
    response = admin_api.patch(url(env, f"{alice.pk}/"), {"categorize_override": True}, format="json")
    assert response.status_code == 400
    assert "contact_folder_override" in response.json()
