"""A CRM record with linked Exchange items becomes a tombstone instead of disappearing."""

from __future__ import annotations

import pytest
from django.urls import reverse

from synccore.models import Activity, Company, Contact, ItemLink
from tests.fixtures import factories as f

pytestmark = [pytest.mark.django_db, pytest.mark.dbbehaviour]


def linked_contact():
    env = f.environment()
    user = f.sync_user(env, "alice@contoso.example")
    contact = f.contact(env)
    link = ItemLink.objects.create(
        environment=env, sync_user=user, kind="contact", contact=contact, remote_id="AAMk1"
    )
    return contact, link


def test_deleting_a_linked_contact_keeps_a_tombstone_and_the_link():
    contact, link = linked_contact()
    contact.delete()
    assert not Contact.objects.filter(pk=contact.pk).exists()
    tombstone = Contact.all_objects.get(pk=contact.pk)
    assert tombstone.is_tombstone
    assert ItemLink.objects.filter(pk=link.pk, contact=tombstone).exists()


def test_deleting_an_unlinked_contact_deletes_it():
    contact = f.contact(f.environment())
    contact.delete()
    assert not Contact.all_objects.filter(pk=contact.pk).exists()


def test_a_queryset_delete_makes_tombstones_of_the_linked_rows_only():
    contact, _ = linked_contact()
    plain = f.contact(contact.environment)
    Contact.objects.filter(pk__in=[contact.pk, plain.pk]).delete()
    assert Contact.all_objects.get(pk=contact.pk).is_tombstone
    assert not Contact.all_objects.filter(pk=plain.pk).exists()


def test_a_tombstone_is_purged_once_its_links_are_gone():
    contact, link = linked_contact()
    contact.delete()
    link.delete()
    Contact.all_objects.get(pk=contact.pk).purge()
    assert not Contact.all_objects.filter(pk=contact.pk).exists()


def test_tombstones_survive_a_delete_through_the_admin(admin_client):
    contact, link = linked_contact()
    url = reverse("admin:synccore_contact_delete", args=[contact.pk])
    page = admin_client.get(url)
    assert page.status_code == 200
    assert b"tombstone" in page.content
    response = admin_client.post(url, {"post": "yes"})
    assert response.status_code == 302
    assert Contact.all_objects.get(pk=contact.pk).is_tombstone
    assert ItemLink.objects.filter(pk=link.pk).exists()


def test_tombstones_survive_the_admins_bulk_delete_action(admin_client):
    contact, link = linked_contact()
    response = admin_client.post(
        reverse("admin:synccore_contact_changelist"),
        {"action": "delete_selected", "_selected_action": [contact.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert Contact.all_objects.get(pk=contact.pk).is_tombstone
    assert ItemLink.objects.filter(pk=link.pk).exists()


def test_linked_companies_and_activities_become_tombstones_too():
    env = f.environment()
    user = f.sync_user(env)
    company, activity = f.company(env), f.activity(env)
    ItemLink.objects.create(environment=env, sync_user=user, kind="company", company=company)
    ItemLink.objects.create(environment=env, sync_user=user, kind="activity", activity=activity)
    company.delete()
    activity.delete()
    assert Company.all_objects.get(pk=company.pk).is_tombstone
    assert Activity.all_objects.get(pk=activity.pk).is_tombstone
