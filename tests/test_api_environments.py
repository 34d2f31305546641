"""API: environments, their status, and start / stop / sync-now / test-connection."""

from __future__ import annotations

import pytest

from syncadmin.models import AuditEntry
from synccore.models import SynchronizerState
from tests.fixtures.api import *  # noqa: F403  (fixtures)
from tests.fixtures.api import client_for, user_with_role

pytestmark = pytest.mark.django_db


def url(env, tail=""):
    return f"/api/v1/environments/{env.pk}/{tail}"


def test_lists_environments_with_their_state(viewer_api, env):
    response = viewer_api.get("/api/v1/environments/")
    assert response.status_code == 200
    assert response.json() == [
        {
            "id": env.pk,
            "name": "Production",
            "description": "",
            "state": "stopped",
            "since": response.json()[0]["since"],
            "reason": "",
            "created_at": response.json()[0]["created_at"],
            "updated_at": response.json()[0]["updated_at"],
        }
    ]


def test_unknown_environment_is_404(viewer_api, db):
    assert viewer_api.get("/api/v1/environments/9999/").status_code == 404
    assert viewer_api.get("/api/v1/environments/9999/status/").status_code == 404
    assert viewer_api.get("/api/v1/environments/9999/users/").status_code == 404


def test_status_has_the_pinned_shape(viewer_api, env):
    body = viewer_api.get(url(env, "status/")).json()
    assert body["state"] == "stopped"
    assert {"environment", "state", "since", "queue_depth", "workers", "users"} <= body.keys()
    alice = body["users"][0]
    assert alice["email"] == "alice@contoso.example"
    assert {"health", "last_error", "contacts", "calendar"} <= alice.keys()
    assert {"last_pass", "next_due"} <= alice["contacts"].keys()


def test_start_answers_202_with_the_status_and_is_audited(operator_api, env, connection_ok):
    response = operator_api.post(url(env, "start/"))
    assert response.status_code == 202
    assert response.json()["state"] == "running"
    env.refresh_from_db()
    assert env.state == SynchronizerState.RUNNING
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.via, entry.environment) == ("start", "api", env)


def test_starting_a_running_environment_is_409(operator_api, env, connection_ok):
    operator_api.post(url(env, "start/"))
    response = operator_api.post(url(env, "start/"))
    assert response.status_code == 409
    assert "already running" in response.json()["detail"]


def test_stopping_a_stopped_environment_is_409(operator_api, env):
    response = operator_api.post(url(env, "stop/"))
    assert response.status_code == 409
    assert response.json()["detail"]


def test_stop_answers_202_and_the_environment_is_stopped(operator_api, env, connection_ok):
    operator_api.post(url(env, "start/"))
    response = operator_api.post(url(env, "stop/"))
    assert response.status_code == 202
    assert response.json()["state"] == "stopped"


def test_a_failed_start_answers_422_with_the_reason_and_leaves_it_failed(
    operator_api, env, connection_refused
):
    response = operator_api.post(url(env, "start/"))
    assert response.status_code == 422
    assert response.json()["detail"] == "Connection refused"
    env.refresh_from_db()
    assert (env.state, env.state_reason) == ("failed", "Connection refused")
    assert AuditEntry.objects.get().outcome == "Connection refused"


def test_start_with_incomplete_settings_names_what_is_missing(operator_api, env):
    env.settings.service_password = ""
    env.settings.save()
    response = operator_api.post(url(env, "start/"))
    assert response.status_code == 422
    assert "password" in response.json()["detail"]


def test_sync_now_answers_202_for_all_or_one_user(operator_api, env):
    env.set_state("running")
    assert operator_api.post(url(env, "sync-now/"), {}, format="json").status_code == 202
    response = operator_api.post(
        url(env, "sync-now/"),
        {"user": "ALICE@contoso.example", "kind": "calendar", "full": True},
        format="json",
    )
    assert response.status_code == 202
    assert response.json()["id"] == env.pk


def test_sync_now_on_a_stopped_synchronizer_is_refused_with_409(operator_api, env):
    response = operator_api.post(url(env, "sync-now/"), {}, format="json")
    assert response.status_code == 409
    assert "start the synchronizer first" in response.json()["detail"]


def test_sync_now_rejects_an_unknown_user_and_kind_field_by_field(operator_api, env):
    env.set_state("running")
    response = operator_api.post(url(env, "sync-now/"), {"user": "nobody@contoso.example"}, format="json")
    assert response.status_code == 400
    assert "user" in response.json()
    response = operator_api.post(url(env, "sync-now/"), {"kind": "mail", "full": "maybe"}, format="json")
    assert response.status_code == 400
    assert set(response.json()) == {"kind", "full"}


def test_test_connection_says_what_it_tried_and_why_it_failed(operator_api, env, connection_refused):
    response = operator_api.post(url(env, "test-connection/"))
    assert response.status_code == 200
    assert response.json() == {
        "ok": False,
        "tried": ["POST http://127.0.0.1:9/EWS/Exchange.asmx"],
        "error": "Connection refused",
        "code": "",
        "detail": "",
    }


def test_a_viewer_cannot_start(viewer_api, env):
    assert viewer_api.post(url(env, "start/")).status_code == 403
    env.refresh_from_db()
    assert env.state == "stopped"


def test_anonymous_requests_are_refused(env):
    response = client_for(None).get("/api/v1/environments/")
    assert response.status_code == 401


def test_a_knox_token_authenticates(env):
    from knox.models import AuthToken

    user = user_with_role("viewer")
    _, token = AuthToken.objects.create(user=user)
    client = client_for(None)
    response = client.get("/api/v1/environments/", HTTP_AUTHORIZATION=f"Token {token}")
    assert response.status_code == 200
    assert client.get("/api/v1/environments/", HTTP_AUTHORIZATION="Token nonsense").status_code == 401


def test_unknown_api_paths_answer_json_404(viewer_api, db):
    response = viewer_api.get("/api/v1/nothing-here/")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}
