"""Test & enable (O5): a mailbox is tested on a worker when it is added or re-addressed, on demand
for all mailboxes, and after the connection settings change; the result is the users' state."""

from __future__ import annotations

import pytest
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from synccore.models import SyncUser
from synccore.runtime import service
from tests.fixtures import factories as f
from tests.fixtures.api import *  # noqa: F403  (fixtures)
from tests.fixtures.api import client_for, console_settings_data, user_with_role

pytestmark = pytest.mark.django_db

TEST_MAILBOX = "synccore.tasks.test_mailbox"


def queued_tests() -> list[int]:
    tasks = [SignedPackage.loads(row.payload) for row in OrmQ.objects.order_by("id")]
    return [task["args"][0] for task in tasks if task["func"] == TEST_MAILBOX]


def state_of(env, email: str) -> dict:
    return next(u for u in service.status(env.pk)["users"] if u["email"] == email)


def test_a_missing_mailbox_tested_fails_with_a_readable_reason(crm):
    aaron = f.sync_user(crm.env, "aaron@contoso.example")
    assert state_of(crm.env, "aaron@contoso.example")["state"] == "never_tested"
    report = service.test_mailbox(aaron.pk)
    assert not report.ok and report.code == "mailbox_not_found"
    state = state_of(crm.env, "aaron@contoso.example")
    assert (
        state["state"] == "failing" and state["contacts"]["state"] == state["calendar"]["state"] == "failing"
    )
    assert "has no mailbox aaron@contoso.example" in state["reason"]
    assert "ErrorNonExistentMailbox" in state["contacts"]["detail"]
    aaron.refresh_from_db()
    assert aaron.health == "unhealthy" and "has no mailbox" in aaron.last_error


def test_a_mailbox_that_opens_is_healthy_after_its_test(crm):
    assert service.test_mailbox(crm.alice.pk).ok
    assert state_of(crm.env, crm.alice.mailbox_email)["state"] == "healthy"


def test_adding_a_user_in_the_console_tests_its_mailbox_on_a_worker(client, env):
    client.force_login(user_with_role("administrator"))
    employee = f.employee(env, "carol@contoso.example")
    response = client.post(
        f"/environments/{env.pk}/users/add/",
        {
            "employee": employee.pk,
            "mailbox_email": "carol@contoso.example",
            "contacts_enabled": "on",
            "active": "on",
        },
        follow=True,
    )
    carol = SyncUser.objects.get(environment=env, mailbox_email="carol@contoso.example")
    assert queued_tests() == [carol.pk]
    assert "Its mailbox is being tested" in response.content.decode()


def test_adding_and_re_addressing_a_user_through_the_api_tests_its_mailbox(admin_api, env):
    f.employee(env, "carol@contoso.example")
    response = admin_api.post(
        f"/api/v1/environments/{env.pk}/users/", {"mailbox_email": "carol@contoso.example"}, format="json"
    )
    carol = response.json()["id"]
    assert queued_tests() == [carol]
    admin_api.patch(
        f"/api/v1/environments/{env.pk}/users/{carol}/", {"contact_folder_override": "CRM"}, format="json"
    )
    assert queued_tests() == [carol]  # nothing about its mailbox changed
    admin_api.patch(f"/api/v1/environments/{env.pk}/users/{carol}/", {"active": False}, format="json")
    admin_api.patch(f"/api/v1/environments/{env.pk}/users/{carol}/", {"active": True}, format="json")
    assert queued_tests() == [carol, carol]


def test_a_changed_connection_re_tests_every_mailbox_and_a_changed_interval_does_not(client, env):
    client.force_login(user_with_role("administrator"))
    client.post(f"/environments/{env.pk}/settings/", console_settings_data(env, pull_interval="7"))
    assert queued_tests() == []
    client.post(f"/environments/{env.pk}/settings/", console_settings_data(env, service_password="new-one"))
    assert sorted(queued_tests()) == sorted(
        SyncUser.objects.filter(environment=env).values_list("pk", flat=True)
    )


def test_test_all_mailboxes_from_the_console_and_the_api(client, operator_api, env):
    response = operator_api.post(f"/api/v1/environments/{env.pk}/test-mailboxes/")
    assert response.status_code == 202 and response.json() == {"queued": 2}
    client.force_login(user_with_role("operator"))
    page = client.post(f"/environments/{env.pk}/test-mailboxes/", follow=True).content.decode()
    assert "is being tested" in page
    assert len(queued_tests()) == 4
    client_for(user_with_role("viewer"))  # viewers may not: see test_permissions
