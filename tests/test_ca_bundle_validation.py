"""A CA bundle is checked when the settings are saved (issue 16, finding 6): a path that is not a
PEM file of certificates is refused with a 400 naming `ca_bundle` (the console's form the same),
so it never reaches test-connection or start as a 500. A bundle that goes bad after it was saved,
and any other error while starting, fails the start with a 422 and the environment "failed"."""

from __future__ import annotations

from dataclasses import replace

import pytest
import trustme
from django_q.models import Schedule

from syncadmin.models import AuditAction, AuditEntry
from synccore.mailbox.base import PermanentMailboxError
from synccore.models import Environment, SynchronizerState, SyncSettings
from synccore.runtime import service as runtime
from synccore.sync.connection import backend_for, connection_config
from tests.fixtures.api import *  # noqa: F403  (fixtures)
from tests.fixtures.api import client_for, console_settings_data, user_with_role

pytestmark = pytest.mark.django_db


def url(env):
    return f"/api/v1/environments/{env.pk}/settings/"


@pytest.fixture
def bundles(tmp_path):
    good = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(good))
    (tmp_path / "garbage.pem").write_bytes(b"not a certificate\n")
    (tmp_path / "key-only.pem").write_bytes(trustme.CA().private_key_pem.bytes())
    (tmp_path / "der.cer").write_bytes(b"\x30\x82\x01\x0a" + bytes(100))
    return tmp_path


@pytest.mark.parametrize("name", ["garbage.pem", "key-only.pem", "der.cer", "missing.pem", "."])
def test_a_non_pem_ca_bundle_is_refused_when_the_settings_are_saved(admin_api, env, bundles, name):
    response = admin_api.patch(url(env), {"ca_bundle": str(bundles / name)}, format="json")
    assert response.status_code == 400, response.content
    assert set(response.json()) == {"ca_bundle"}
    env.settings.refresh_from_db()
    assert env.settings.ca_bundle == ""


def test_a_pem_ca_bundle_is_accepted(admin_api, env, bundles):
    response = admin_api.patch(url(env), {"ca_bundle": str(bundles / "ca.pem"), "oauth_client_secret": "x"}, format="json")
    assert response.status_code == 200, response.content


def test_the_console_refuses_a_non_pem_ca_bundle_with_the_field_named(client, env, bundles):
    client.force_login(user_with_role("administrator"))
    data = console_settings_data(env, ca_bundle=str(bundles / "garbage.pem"))
    response = client.post(f"/environments/{env.pk}/settings/", data)
    assert response.status_code == 200
    assert "not a PEM file of certificates" in response.content.decode()


# --- the start path: a bundle that went bad after it was saved, any error while starting --------


def _start_api(crm):
    api = client_for(user_with_role("administrator"))
    api.raise_request_exception = False
    return api


@pytest.mark.backends("graph")
@pytest.mark.parametrize("name", ["garbage.pem", "missing.pem"])
def test_finding_6_a_bundle_gone_bad_since_saved_fails_the_start_with_422_and_failed(crm, bundles, name):
    path = str(bundles / name)
    SyncSettings.objects.filter(pk=crm.env.settings.pk).update(ca_bundle=path)  # replaced on disk
    api = _start_api(crm)
    tested = api.post(f"/api/v1/environments/{crm.env.pk}/test-connection/")
    assert tested.status_code == 200 and tested.json()["ok"] is False
    assert path in tested.json()["error"]

    response = api.post(f"/api/v1/environments/{crm.env.pk}/start/")
    assert response.status_code == 422, response.content[:300]
    assert path in response.json()["detail"]
    env = Environment.objects.get(pk=crm.env.pk)
    assert env.state == SynchronizerState.FAILED and path in env.state_reason
    entry = AuditEntry.objects.filter(action=AuditAction.START).latest("pk")
    assert path in entry.outcome  # the start is recorded as failed


@pytest.mark.backends("graph")
def test_finding_6_the_graph_backend_refuses_an_unreadable_bundle_as_a_permanent_error(crm, bundles):
    config = connection_config(crm.env.settings)
    config = replace(config, ca_bundle=str(bundles / "garbage.pem"))
    with pytest.raises(PermanentMailboxError, match="not a PEM file"):
        backend_for(config)


def test_finding_6_any_unexpected_error_while_starting_is_a_422_and_failed(env, monkeypatch):
    def broken(environment):
        raise RuntimeError("unexpected: the TLS library said no")

    monkeypatch.setattr(runtime, "check_connection", broken)
    api = client_for(user_with_role("operator"))
    api.raise_request_exception = False
    tested = api.post(f"/api/v1/environments/{env.pk}/test-connection/")
    assert tested.status_code == 200 and tested.json()["code"] == "internal"
    response = api.post(f"/api/v1/environments/{env.pk}/start/")
    assert response.status_code == 422, response.content[:300]
    env.refresh_from_db()
    assert env.state == SynchronizerState.FAILED and env.state_reason
    assert not Schedule.objects.exists()  # nothing ticks for an environment that failed to start
    entry = AuditEntry.objects.filter(action=AuditAction.START).latest("pk")
    assert entry.outcome == env.state_reason


def test_finding_6_the_console_start_with_an_unexpected_error_says_why_and_is_failed(client, env, monkeypatch):
    def broken(environment):
        raise RuntimeError("unexpected")

    monkeypatch.setattr(runtime, "check_connection", broken)
    client.force_login(user_with_role("operator"))
    response = client.post(f"/environments/{env.pk}/start/", follow=True)
    assert response.status_code == 200
    env.refresh_from_db()
    assert env.state == SynchronizerState.FAILED
    assert env.state_reason in response.content.decode()


def test_finding_6_an_error_after_the_connection_test_still_fails_the_start(env, connection_ok, monkeypatch):
    def broken(environment):
        raise RuntimeError("the schedule could not be written")

    monkeypatch.setattr(runtime.scheduling, "schedule_environment", broken)
    api = client_for(user_with_role("operator"))
    api.raise_request_exception = False
    response = api.post(f"/api/v1/environments/{env.pk}/start/")
    assert response.status_code == 422, response.content[:300]
    env.refresh_from_db()
    assert env.state == SynchronizerState.FAILED
    assert "unexpected error" in env.state_reason
