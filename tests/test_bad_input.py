"""Bad input at the edges (issue 16, findings 3 and 4): the CRM API and Graph's webhooks answer
malformed text, deep nesting and over-size bodies with a 400, never a 500, write nothing, and a
webhook request logs at most one line."""

from __future__ import annotations

import json
import logging

import pytest
from django.test import Client

from synccore.models import Company
from tests.fixtures.api import *  # noqa: F403  (fixtures)
from tests.fixtures.api import user_with_role

pytestmark = pytest.mark.django_db

DEEP = "[" * 100_000 + "]" * 100_000


def crm_url(env, entity, tail=""):
    return f"/api/v1/environments/{env.pk}/crm/{entity}/{tail}"


def post_raw(client, path, body: str | bytes, method="post"):
    return getattr(client, method)(path, body, content_type="application/json")


def assert_json_400(response):
    assert response.status_code == 400, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    assert response.json()


# --- finding 4: the CRM API ----------------------------------------------------------------------


def test_bulk_upsert_with_a_lone_surrogate_answers_400_and_writes_nothing(admin_api, env):
    body = '[{"external_id": "C-1", "name": "Fine"}, {"external_id": "\\ud800", "name": "Bad"}]'
    response = post_raw(admin_api, crm_url(env, "companies", "bulk-upsert/"), body)
    assert_json_400(response)
    assert "surrogate" in response.json()["detail"]
    assert not Company.all_objects.exists()


@pytest.mark.parametrize("text", ["\\u0000", "a\\u0000b"])
def test_bulk_upsert_with_a_nul_character_answers_400_and_writes_nothing(admin_api, env, text):
    body = f'[{{"external_id": "C-1", "name": "Fine"}}, {{"external_id": "C-2", "comment": "{text}"}}]'
    response = post_raw(admin_api, crm_url(env, "companies", "bulk-upsert/"), body)
    assert_json_400(response)
    assert "[1].comment" in response.json()["detail"]
    assert not Company.all_objects.exists()


def test_a_100000_level_nested_body_answers_400_to_bulk_upsert_and_put(admin_api, env):
    assert_json_400(post_raw(admin_api, crm_url(env, "companies", "bulk-upsert/"), DEEP))
    assert_json_400(post_raw(admin_api, crm_url(env, "companies", "C-1/"), DEEP, method="put"))
    nested = '{"external_id": "C-1", "name": ' + "[" * 30 + '"x"' + "]" * 30 + "}"
    assert_json_400(post_raw(admin_api, crm_url(env, "companies", "C-1/"), nested, method="put"))
    assert not Company.all_objects.exists()


def test_numbers_that_are_not_finite_answer_400(admin_api, env):
    for body in ('[{"external_id": "A", "reminder_minutes": 1e999}]', '[{"external_id": "A", "x": NaN}]'):
        assert_json_400(post_raw(admin_api, crm_url(env, "activities", "bulk-upsert/"), body))
    huge = '[{"external_id": "A", "reminder_minutes": ' + "9" * 5000 + "}]"
    assert_json_400(post_raw(admin_api, crm_url(env, "activities", "bulk-upsert/"), huge))


def test_a_body_over_the_size_limit_answers_400_with_json(admin_api, env, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    body = json.dumps([{"external_id": f"C-{i}", "name": "x" * 100} for i in range(200)])
    response = post_raw(admin_api, crm_url(env, "companies", "bulk-upsert/"), body)
    assert_json_400(response)
    assert "fewer items" in response.json()["detail"]
    assert not Company.all_objects.exists()


def test_nul_characters_in_query_strings_and_paths_answer_400_with_json(viewer_api, env):
    for path in (
        crm_url(env, "contacts", "?external_id=%00"),
        "/api/v1/audit/?username=%00",
        "/api/v1/audit/?action=%00",
        crm_url(env, "contacts", "a%00b/"),
    ):
        assert_json_400(viewer_api.get(path))


def test_the_console_audit_search_with_a_nul_character_answers_400(client):
    client.force_login(user_with_role("viewer"))
    assert client.get("/audit/?q=%00").status_code == 400
    assert client.get("/audit/?q=ok").status_code == 200


# --- finding 3: the webhooks -------------------------------------------------------------------

HOOKS = ["/hooks/graph/", "/hooks/graph/lifecycle/"]


def graph_post(path, body: str | bytes):
    return Client(enforce_csrf_checks=True).post(path, body, content_type="application/json")


@pytest.mark.parametrize("path", HOOKS)
def test_graph_hooks_answer_a_100000_level_nested_body_with_400(path):
    assert graph_post(path, DEEP).status_code == 400
    assert graph_post(path, '{"value": ' + DEEP + "}").status_code == 400


@pytest.mark.parametrize("path", HOOKS)
@pytest.mark.parametrize("sub_id", ["\\u0000", "a\\u0000b", "\\udc00", "x" * 500, "'; drop", 7])
def test_graph_hooks_with_a_malformed_subscription_id_answer_without_a_server_error(path, sub_id):
    value = json.dumps(sub_id) if not isinstance(sub_id, str) else f'"{sub_id}"'
    body = '{"value": [{"subscriptionId": ' + value + ', "clientState": "x"}]}'
    assert graph_post(path, body).status_code in (202, 400)


@pytest.mark.parametrize("path", HOOKS)
def test_graph_hooks_refuse_an_over_size_body_or_too_many_entries(path):
    from syncadmin import hooks

    many = {"value": [{"subscriptionId": f"{i:08d}", "clientState": "x"} for i in range(hooks.MAX_ENTRIES + 1)]}
    assert graph_post(path, json.dumps(many)).status_code == 400
    big = {"value": [{"subscriptionId": "a", "clientState": "x" * (hooks.MAX_BODY + 1)}]}
    assert graph_post(path, json.dumps(big)).status_code == 400


@pytest.mark.parametrize("path", HOOKS)
def test_graph_hooks_log_once_per_request_however_many_entries_are_ignored(path, caplog):
    from syncadmin import hooks

    entries = [{"subscriptionId": f"{i:08d}-0000", "clientState": "guess"} for i in range(hooks.MAX_ENTRIES)]
    entries += [{"subscriptionId": "\u2603"}, "not an object"]
    with caplog.at_level(logging.INFO):
        assert graph_post(path, json.dumps({"value": entries[: hooks.MAX_ENTRIES]})).status_code == 202
        assert graph_post(path, json.dumps({"value": entries[-2:]})).status_code == 202
    lines = [r for r in caplog.records if r.name.startswith(("synccore", "syncadmin"))]
    assert len(lines) == 2, [r.getMessage() for r in lines]
    assert f"{hooks.MAX_ENTRIES} of {hooks.MAX_ENTRIES} entries ignored" in lines[0].getMessage()
    assert "2 of 2 entries ignored (2 malformed)" in lines[1].getMessage()
