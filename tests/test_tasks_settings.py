"""Settings for tasks (issue 18, T1/T5/K13): synchronize_tasks, a direction for calendar and for
tasks, the default task reminder, and a per-user tasks switch — in the API, the console's settings
form and the users' form."""

from __future__ import annotations

import pytest

from synccore.models import SyncDirection, SyncUser
from tests.fixtures.api import *  # noqa: F403  (fixtures)
from tests.fixtures.api import console_settings_data, user_with_role

pytestmark = pytest.mark.django_db

DIRECTIONS = ["both", "crm_to_mailbox", "mailbox_to_crm", "off"]


def settings_url(env):
    return f"/api/v1/environments/{env.pk}/settings/"


def users_url(env, tail=""):
    return f"/api/v1/environments/{env.pk}/users/{tail}"


def test_t5_the_directions_have_the_pinned_values():
    assert SyncDirection.values == DIRECTIONS


def test_t1_tasks_are_off_and_both_directions_are_both_ways_by_default(viewer_api, env):
    body = viewer_api.get(settings_url(env)).json()
    assert (body["synchronize_tasks"], body["calendar_direction"], body["tasks_direction"]) == (
        False,
        "both",
        "both",
    )
    assert "reminder_task_minutes" in body


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_t5_each_direction_is_taken_for_tasks_and_calendar(admin_api, env, direction):
    answer = admin_api.patch(
        settings_url(env),
        {"synchronize_tasks": True, "tasks_direction": direction, "calendar_direction": direction},
        format="json",
    )
    assert answer.status_code == 200, answer.content
    env.settings.refresh_from_db()
    assert (env.settings.synchronize_tasks, env.settings.tasks_direction, env.settings.calendar_direction) == (
        True,
        direction,
        direction,
    )


def test_t5_an_unknown_direction_is_refused(admin_api, env):
    answer = admin_api.patch(settings_url(env), {"tasks_direction": "sideways"}, format="json")
    assert answer.status_code == 400
    assert "tasks_direction" in str(answer.json())


def test_k13_the_default_task_reminder_is_set_and_cleared(admin_api, env):
    admin_api.patch(settings_url(env), {"reminder_task_minutes": 60}, format="json")
    env.settings.refresh_from_db()
    assert env.settings.reminder_task_minutes == 60
    admin_api.patch(settings_url(env), {"reminder_task_minutes": None}, format="json")
    env.settings.refresh_from_db()
    assert env.settings.reminder_task_minutes is None


def test_t1_a_sync_user_has_tasks_on_by_default_and_it_can_be_turned_off(admin_api, env):
    user = SyncUser.objects.filter(environment=env).first()
    body = admin_api.get(users_url(env, f"{user.pk}/")).json()
    assert body["tasks_enabled"] is True
    answer = admin_api.patch(users_url(env, f"{user.pk}/"), {"tasks_enabled": False}, format="json")
    assert answer.status_code == 200, answer.content
    user.refresh_from_db()
    assert user.tasks_enabled is False


def test_the_console_settings_form_shows_and_saves_the_task_settings(client, env):
    client.force_login(user_with_role("administrator"))
    page = client.get(f"/environments/{env.pk}/").content.decode()
    for name in ("synchronize_tasks", "calendar_direction", "tasks_direction", "reminder_task_minutes"):
        assert f'name="{name}"' in page
    data = console_settings_data(
        env,
        synchronize_tasks="on",
        tasks_direction="crm_to_mailbox",
        calendar_direction="mailbox_to_crm",
        reminder_task_minutes="30",
    )
    response = client.post(f"/environments/{env.pk}/settings/", data)
    assert response.status_code == 302
    env.settings.refresh_from_db()
    assert (
        env.settings.synchronize_tasks,
        env.settings.tasks_direction,
        env.settings.calendar_direction,
        env.settings.reminder_task_minutes,
    ) == (True, "crm_to_mailbox", "mailbox_to_crm", 30)
