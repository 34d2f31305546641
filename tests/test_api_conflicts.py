"""API: conflicts, and resolving them by keeping the CRM or the Exchange value."""

from __future__ import annotations

import pytest

from syncadmin.models import AuditEntry
from synccore.models import Conflict, ItemLink, SyncUser
from tests.fixtures import factories
from tests.fixtures.api import *  # noqa: F403  (fixtures)

pytestmark = pytest.mark.django_db


@pytest.fixture
def conflict(env):
    activity = factories.activity(env, subject="Exchange subject")
    link = ItemLink.objects.create(
        environment=env,
        sync_user=SyncUser.objects.get(mailbox_email="alice@contoso.example"),
        kind="activity",
        activity=activity,
    )
    return Conflict.objects.create(
        link=link,
        field="subject",
        crm_value="CRM subject",
        exchange_value="Exchange subject",
        choice="exchange",
    )


def url(env, tail=""):
    return f"/api/v1/environments/{env.pk}/conflicts/{tail}"


def test_lists_both_values_and_the_choice_made(viewer_api, env, conflict):
    body = viewer_api.get(url(env)).json()
    assert body["count"] == 1
    item = body["results"][0]
    assert (item["crm_value"], item["exchange_value"], item["choice"]) == (
        "CRM subject",
        "Exchange subject",
        "exchange",
    )
    assert item["user"] == "alice@contoso.example"
    assert viewer_api.get(url(env, "?resolved=true")).json()["count"] == 0


def test_keeping_the_crm_value_writes_it_back_to_the_activity(admin_api, env, conflict):
    response = admin_api.post(url(env, f"{conflict.pk}/resolve/"), {"keep": "crm"}, format="json")
    assert response.status_code == 200
    assert response.json()["choice"] == "crm" and response.json()["resolved_by"]
    conflict.link.activity.refresh_from_db()
    assert conflict.link.activity.subject == "CRM subject"
    assert AuditEntry.objects.get().action == "conflict_resolved"


def test_resolve_needs_a_valid_side(admin_api, env, conflict):
    response = admin_api.post(url(env, f"{conflict.pk}/resolve/"), {"keep": "both"}, format="json")
    assert response.status_code == 400
    assert "keep" in response.json()


def test_an_operator_cannot_resolve(operator_api, env, conflict):
    assert (
        operator_api.post(url(env, f"{conflict.pk}/resolve/"), {"keep": "crm"}, format="json").status_code
        == 403
    )
