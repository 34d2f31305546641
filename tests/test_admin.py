"""The Django admin is usable for real data: every page renders, secrets are write-only."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse

from synccore.models import Conflict, FolderState, ItemLink, SyncRun, SyncSettings

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo(django_db_setup):
    call_command("seed_demo", "--users", "2", "--contacts", "12", "--activities", "6", stdout=StringIO())
    from synccore.models import Contact, CustomField, Environment, SyncUser

    env = Environment.objects.get(name="Demo")
    user = SyncUser.objects.filter(environment=env).first()
    link = ItemLink.objects.create(
        environment=env, sync_user=user, kind="contact", contact=Contact.objects.first()
    )
    run = SyncRun.objects.create(environment=env, sync_user=user, kind="contacts")
    FolderState.objects.create(sync_user=user, kind="contacts", folder_name="CRM Contacts", sync_token="abc")
    Conflict.objects.create(
        link=link, run=run, field="subject", crm_value="a", exchange_value="b", choice="crm"
    )
    CustomField.register(env.pk, "contact", {"region": "text"})
    return env


def synccore_models():
    return [m for m in admin.site._registry if m._meta.app_label == "synccore"]


def test_every_changelist_and_change_page_renders(demo, admin_client):
    for model in synccore_models():
        opts = model._meta
        changelist = admin_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
        assert changelist.status_code == 200, opts.label
        obj = model._default_manager.first()
        assert obj is not None, f"no demo row for {opts.label}"
        change = admin_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk]))
        assert change.status_code == 200, opts.label


def test_every_add_page_that_exists_renders(demo, admin_client):
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label != "synccore":
            continue
        url = reverse(f"admin:synccore_{model._meta.model_name}_add")
        response = admin_client.get(url)
        request = type("Request", (), {"user": get_user_model().objects.get(username="admin")})
        expected = 200 if model_admin.has_add_permission(request) else 403
        assert response.status_code == expected, model._meta.label


def test_search_and_filters_work_on_the_changelists(demo, admin_client):
    response = admin_client.get(
        reverse("admin:synccore_contact_changelist"), {"q": "Jansen", "synchronize__exact": "1"}
    )
    assert response.status_code == 200
    response = admin_client.get(
        reverse("admin:synccore_activity_changelist"), {"q": "review", "type__exact": "call"}
    )
    assert response.status_code == 200


def settings_form_data(settings: SyncSettings, **overrides) -> dict:
    data = {
        "synchronize_contacts": "on",
        "synchronize_activities": "on",
        "calendar_direction": "both",
        "tasks_direction": "both",
        "email_filing_category": "CRM",
        "email_filed_category": "Filed in CRM",
        "email_body_limit": "20000",
        "backend": settings.backend,
        "ews_url": settings.ews_url,
        "autodiscover_email": "",
        "auth_type": settings.auth_type,
        "access_type": settings.access_type,
        "service_account": settings.service_account,
        "service_password": "",
        "oauth_tenant_id": "",
        "oauth_client_id": "",
        "oauth_client_secret": "",
        "graph_endpoint": "",
        "authority_url": "",
        "pull_interval": "5",
        "pull_interval_unit": "minutes",
        "contact_folder_name": "CRM Contacts",
        "calendar_horizon_days": "90",
        "reminder_call_minutes": "15",
        "reminder_appointment_minutes": "15",
        "conflict_policy": "later_wins",
        "personal_deletion_policy": "keep",
        "internal_domains": "contoso.example",
        "safety_limit_percent": "20",
        "safety_limit_minimum": "10",
        "meeting_message_limit": "50",
        "loop_flips": "3",
        "loop_passes": "10",
        "batch_size": "100",
    }
    return data | overrides


def test_secrets_are_write_only_in_the_settings_form(demo, admin_client):
    settings = demo.settings
    url = reverse("admin:synccore_syncsettings_change", args=[settings.pk])
    page = admin_client.get(url).content.decode()
    assert "demo-password" not in page
    assert "Set. Leave empty to keep it" in page

    assert admin_client.post(url, settings_form_data(settings)).status_code == 302
    assert SyncSettings.objects.get(pk=settings.pk).service_password == "demo-password"

    admin_client.post(url, settings_form_data(settings, service_password="n3w-secret"))
    assert SyncSettings.objects.get(pk=settings.pk).service_password == "n3w-secret"

    admin_client.post(url, settings_form_data(settings, clear_service_password="on"))
    assert SyncSettings.objects.get(pk=settings.pk).service_password == ""


def test_the_settings_form_shows_the_validation_messages(demo, admin_client):
    url = reverse("admin:synccore_syncsettings_change", args=[demo.settings.pk])
    response = admin_client.post(url, settings_form_data(demo.settings, pull_interval="0"))
    assert response.status_code == 200
    assert "greater than zero" in response.content.decode()


def test_live_state_of_sync_users_is_read_only(demo, admin_client):
    user = demo.sync_users.first()
    page = admin_client.get(reverse("admin:synccore_syncuser_change", args=[user.pk])).content.decode()
    assert 'name="health"' not in page
    assert 'name="last_error"' not in page
