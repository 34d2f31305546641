"""Console: the settings form shows the chosen backend's fields, in plain words, with hints that
agree with the rules; badges use one vocabulary for rendering and refreshing (issue 14, findings
7 and 10)."""

from __future__ import annotations

import json
import re

import pytest

from synccore.models import SyncUser
from tests.fixtures.api import *  # noqa: F403  (fixtures)
from tests.fixtures.api import console_settings_data, user_with_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    client.force_login(user_with_role("administrator"))
    return client


def shown_fields(page: str) -> dict[str, bool]:
    """Each settings field's name → whether it is shown."""
    return {
        name: "hidden" not in attrs
        for attrs, name in re.findall(r'<div class="shown-when"([^>]*data-name="([^"]+)"[^>]*)>', page)
    }


def test_an_ews_environment_shows_no_graph_fields(admin_client, env):
    shown = shown_fields(admin_client.get(f"/environments/{env.pk}/").content.decode())
    assert shown["ews_url"] and shown["service_account"] and shown["service_password"]
    assert not shown["graph_endpoint"] and not shown["ca_bundle"] and not shown["oauth_client_id"]
    assert shown["pull_interval"]


def test_a_graph_environment_shows_no_ews_fields(admin_client, env):
    env.settings.backend = "graph"
    env.settings.save()
    shown = shown_fields(admin_client.get(f"/environments/{env.pk}/").content.decode())
    assert shown["graph_endpoint"] and shown["oauth_tenant_id"] and shown["oauth_client_secret"]
    assert not shown["ews_url"] and not shown["service_account"] and not shown["auth_type"]


def test_ews_with_oauth_shows_the_app_fields_and_not_the_password(admin_client, env):
    env.settings.auth_type = "oauth2"
    env.settings.save()
    shown = shown_fields(admin_client.get(f"/environments/{env.pk}/").content.decode())
    assert shown["ews_url"] and shown["oauth_client_id"]
    assert not shown["service_password"] and not shown["graph_endpoint"]


def test_h1_a_hybrid_environment_shows_both_connections(admin_client, env):
    # Bob's mailbox is in Exchange Online (Graph) while the environment's backend is EWS: the
    # settings hold both connections, so both are shown (and the page tells the script so).
    SyncUser.objects.filter(mailbox_email="bob@contoso.example").update(backend="graph")
    page = admin_client.get(f"/environments/{env.pk}/").content.decode()
    shown = shown_fields(page)
    assert shown["ews_url"] and shown["service_password"]
    assert shown["graph_endpoint"] and shown["oauth_tenant_id"] and shown["oauth_client_secret"]
    assert 'data-users-backends="graph"' in page


def test_h1_a_graph_environment_with_an_ews_mailbox_shows_the_ews_connection(admin_client, env):
    env.settings.backend = "graph"
    env.settings.save()
    SyncUser.objects.filter(mailbox_email="alice@contoso.example").update(backend="ews")
    shown = shown_fields(admin_client.get(f"/environments/{env.pk}/").content.decode())
    assert shown["graph_endpoint"] and shown["ews_url"] and shown["auth_type"]


def test_fields_of_the_other_backend_are_kept_when_saving(admin_client, env):
    env.settings.graph_endpoint = "https://graph.example/v1.0"
    env.settings.save()
    response = admin_client.post(
        f"/environments/{env.pk}/settings/", console_settings_data(env, pull_interval="5")
    )
    assert response.status_code == 302
    env.settings.refresh_from_db()
    assert (env.settings.pull_interval, env.settings.graph_endpoint) == (5, "https://graph.example/v1.0")


def test_settings_speak_plain_words_not_com_parameters(admin_client, env):
    page = admin_client.get(f"/environments/{env.pk}/").content.decode()
    assert "COM parameters" not in page
    assert "<legend>What to synchronize</legend>" in page


def test_the_pull_interval_hint_agrees_with_validation(admin_client, env):
    page = admin_client.get(f"/environments/{env.pk}/").content.decode()
    interval = re.search(r'<input[^>]*name="pull_interval"[^>]*>', page).group(0)
    assert 'min="1"' in interval and 'min="0"' not in interval
    assert "1 or more" in page
    response = admin_client.post(
        f"/environments/{env.pk}/settings/", console_settings_data(env, pull_interval="0")
    )
    assert "The pull interval must be greater than zero." in response.content.decode()
    schema = admin_client.get("/api/schema/?format=json").json()
    assert schema["components"]["schemas"]["SyncSettings"]["properties"]["pull_interval"]["minimum"] == 1


def test_a_badge_is_rendered_in_the_words_the_refresh_writes(admin_client, env):
    SyncUser.objects.filter(environment=env, mailbox_email="alice@contoso.example").update(health="held")
    page = admin_client.get(f"/environments/{env.pk}/").content.decode()
    table = json.loads(
        re.search(r'<script id="console-labels" type="application/json">(.*?)</script>', page).group(1)
    )
    badge = re.search(
        r'<tr data-user="alice@contoso.example">.*?data-field="health">([^<]*)<', page, re.S
    ).group(1)
    assert badge == table["health"]["held"] == "Held by the safety limit"
    state = re.search(r'<h1>.*?data-field="state">([^<]*)<', page, re.S).group(1)
    assert state == table["state"]["stopped"] == "Stopped"
