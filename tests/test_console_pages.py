"""Console: every page renders for every role; actions are enforced by role, not only hidden."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import call_command

from syncadmin.models import AuditEntry
from synccore.models import Conflict, Environment, FieldMapping, ItemLink, SyncRun, SyncUser
from tests.fixtures.api import *  # noqa: F403  (fixtures)
from tests.fixtures.api import console_settings_data, user_with_role

EXTERNAL_ASSET = re.compile(rb"""<(?:script|link|img)\b[^>]*\b(?:src|href)=["']?(?:https?:)?//""", re.IGNORECASE)

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo():
    call_command("seed_demo", "--users", "3", "--contacts", "6", "--activities", "4", stdout=StringIO())
    env = Environment.objects.get(name="Demo")
    alice = SyncUser.objects.get(environment=env, mailbox_email="alice@contoso.example")
    for n in range(3):
        SyncRun.objects.create(
            environment=env, sync_user=alice, kind="contacts", outcome="success", created=n, requests=2
        )
    from synccore.models import Activity

    link = ItemLink.objects.create(
        environment=env,
        sync_user=alice,
        kind="activity",
        activity=Activity.objects.filter(environment=env).first(),
        state="failed",
        last_error="ErrorInvalidRecipients",
    )
    Conflict.objects.create(
        link=link, field="location", crm_value="Room 1", exchange_value="Room 2", choice="exchange"
    )
    return env


def login(client, role):
    user = user_with_role(role)
    client.force_login(user)
    return user


@pytest.mark.parametrize("role", ["viewer", "operator", "administrator"])
def test_every_page_renders_for_every_role(client, demo, role):
    login(client, role)
    for url in ["/", f"/environments/{demo.pk}/", "/audit/"]:
        response = client.get(url)
        assert response.status_code == 200, url
        # Nothing loaded from elsewhere (a CDN): every script, style and image is the console's
        # own. Not a search for "cdn" in the text: random ids in the audit log may hold it.
        assert not EXTERNAL_ASSET.search(response.content), url
    page = client.get(f"/environments/{demo.pk}/").content.decode()
    assert "<svg" in page and "ErrorInvalidRecipients" in page and "Room 2" in page
    assert ('data-action="start"' in page) == (role != "viewer")
    assert ('data-action="save-settings"' in page) == (role == "administrator")


def test_anonymous_visitors_are_sent_to_the_login_page(client, demo):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_a_viewer_gets_403_posting_start_directly(client, demo):
    login(client, "viewer")
    assert client.post(f"/environments/{demo.pk}/start/").status_code == 403
    demo.refresh_from_db()
    assert demo.state == "stopped"


def test_an_operator_starts_and_stops_and_it_is_audited(client, demo, connection_ok):
    user = login(client, "operator")
    client.post(f"/environments/{demo.pk}/start/")
    demo.refresh_from_db()
    assert demo.state == "running"
    client.post(f"/environments/{demo.pk}/stop/")
    demo.refresh_from_db()
    assert demo.state == "stopped"
    assert list(AuditEntry.objects.order_by("at").values_list("action", "username")) == [
        ("start", user.username),
        ("stop", user.username),
    ]


def test_an_operator_cannot_change_settings(client, demo):
    login(client, "operator")
    response = client.post(f"/environments/{demo.pk}/settings/", {"pull_interval": 5})
    assert response.status_code == 403


def test_an_invalid_pull_interval_shows_the_message(client, demo):
    login(client, "administrator")
    data = console_settings_data(demo, pull_interval="0")
    response = client.post(f"/environments/{demo.pk}/settings/", data)
    assert response.status_code == 200
    assert "The pull interval must be greater than zero." in response.content.decode()


def test_saving_settings_keeps_the_secret_and_audits_masked(client, demo):
    login(client, "administrator")
    response = client.post(f"/environments/{demo.pk}/settings/", console_settings_data(demo, pull_interval="30"))
    assert response.status_code == 302
    demo.settings.refresh_from_db()
    assert demo.settings.pull_interval == 30
    assert demo.settings.service_password == "demo-password"
    client.post(f"/environments/{demo.pk}/settings/", console_settings_data(demo, service_password="new-one"))
    changes = AuditEntry.objects.filter(action="settings_changed").first().changes
    assert changes["service_password"] == ["••••••", "••••••"]


def test_edits_a_field_mapping_and_fixed_rows_cannot_be_removed(client, demo):
    login(client, "administrator")
    row = FieldMapping.objects.get(environment=demo, entity="contact", crm_field="job_title")
    response = client.post(
        f"/environments/{demo.pk}/mappings/{row.pk}/",
        {
            f"m{row.pk}-entity": "contact",
            f"m{row.pk}-crm_field": "job_title",
            f"m{row.pk}-exchange_field": "office_location",
            f"m{row.pk}-direction": "crm_to_exchange",
            f"m{row.pk}-enabled": "on",
        },
    )
    assert response.status_code == 302
    row.refresh_from_db()
    assert row.exchange_field == "office_location"
    fixed = FieldMapping.objects.filter(environment=demo, fixed=True).first()
    client.post(f"/environments/{demo.pk}/mappings/{fixed.pk}/delete/")
    assert FieldMapping.objects.filter(pk=fixed.pk).exists()


def test_adds_deactivates_and_re_enables_sync_users(client, demo):
    login(client, "administrator")
    from synccore.models import Employee

    dave = Employee.objects.create(environment=demo, name="Dave D", email="Dave@contoso.example")
    response = client.post(
        f"/environments/{demo.pk}/users/add/",
        {
            "employee": dave.pk,
            "mailbox_email": "dave@contoso.example",
            "contacts_enabled": "on",
            "active": "on",
        },
    )
    assert response.status_code == 302, response.content
    user = SyncUser.objects.get(environment=demo, mailbox_email="dave@contoso.example")
    page = client.get(f"/environments/{demo.pk}/").content.decode()
    assert "only in upper/lower case" in page
    client.post(f"/environments/{demo.pk}/users/{user.pk}/deactivate/")
    user.refresh_from_db()
    assert not user.active
    client.post(f"/environments/{demo.pk}/users/{user.pk}/activate/")
    SyncUser.objects.filter(pk=user.pk).update(health="unhealthy", last_error="The mailbox does not exist.")
    page = client.get(f"/environments/{demo.pk}/").content.decode()
    assert "The mailbox does not exist." in page and "Re-enable" in page
    client.post(f"/environments/{demo.pk}/users/{user.pk}/re-enable/")
    user.refresh_from_db()
    assert (user.health, user.active) == ("healthy", True)


def test_resolves_a_conflict_and_retries_an_item(client, demo):
    login(client, "administrator")
    conflict = Conflict.objects.get()
    client.post(f"/environments/{demo.pk}/conflicts/{conflict.pk}/resolve/", {"keep": "crm"})
    conflict.refresh_from_db()
    assert conflict.choice == "crm" and conflict.resolved_at
    link = ItemLink.objects.get()
    response = client.post(f"/environments/{demo.pk}/items/{link.pk}/retry/")
    assert response.status_code == 302


def test_sync_now_is_audited(client, demo):
    login(client, "operator")
    client.post(
        f"/environments/{demo.pk}/sync-now/", {"user": "alice@contoso.example", "kind": "all", "full": "on"}
    )
    entry = AuditEntry.objects.get()
    assert entry.action == "sync_now" and entry.changes == {
        "user": "alice@contoso.example",
        "kind": "all",
        "full": True,
    }


def test_removing_synchronized_items_is_refused_while_the_user_is_active(client, demo):
    login(client, "administrator")
    alice = SyncUser.objects.get(environment=demo, mailbox_email="alice@contoso.example")
    response = client.post(
        f"/environments/{demo.pk}/users/{alice.pk}/remove-synchronized-items/", follow=True
    )
    assert "Deactivate alice@contoso.example first" in response.content.decode()
    assert AuditEntry.objects.get().outcome.startswith("Deactivate")


def test_adds_a_company_mapping_row_with_the_company_vocabulary(client, demo):
    login(client, "administrator")
    page = client.get(f"/environments/{demo.pk}/").content.decode()
    assert 'id="mapping-vocabulary"' in page
    response = client.post(
        f"/environments/{demo.pk}/mappings/add/",
        {
            "new-entity": "company",
            "new-crm_field": "website",
            "new-exchange_field": "business_homepage",
            "new-direction": "crm_to_exchange",
            "new-enabled": "on",
        },
    )
    assert response.status_code == 302
    assert FieldMapping.objects.filter(environment=demo, entity="company", crm_field="website").exists()


def test_test_connection_without_javascript_reports_what_it_tried(client, demo, connection_refused):
    login(client, "operator")
    response = client.post(f"/environments/{demo.pk}/test-connection/", follow=True)
    page = response.content.decode()
    assert "Connection failed: Connection refused" in page
    assert "POST http://127.0.0.1:9/EWS/Exchange.asmx" in page


def test_finding6_the_user_form_offers_the_per_user_categorization_switch(client, demo):
    login(client, "administrator")
    user = SyncUser.objects.filter(environment=demo).first()
    page = client.get(f"/environments/{demo.pk}/users/{user.pk}/edit/").content.decode()
    assert "As the environment" in page
    data = {
        "employee": user.employee_id,
        "mailbox_email": user.mailbox_email,
        "contacts_enabled": "on",
        "active": "on",
        "categorize_override": "false",
    }
    assert client.post(f"/environments/{demo.pk}/users/{user.pk}/edit/", data).status_code == 302
    user.refresh_from_db()
    assert user.categorize_override is False and user.categorize_contacts is False
