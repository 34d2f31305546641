"""Secrets stay where they were meant to go (issue 16, finding 8): changing where a stored secret
is sent (EWS URL, Graph endpoint, token authority, CA bundle) needs the secret entered again, in
the API and in the console; plain http to another machine is refused unless allowed per
environment, and then the console warns."""

from __future__ import annotations

import pytest

from tests.fixtures.api import *  # noqa: F403  (fixtures)
from tests.fixtures.api import console_settings_data, user_with_role

pytestmark = pytest.mark.django_db


def url(env):
    return f"/api/v1/environments/{env.pk}/settings/"


@pytest.mark.parametrize(
    ("changes", "secret"),
    [
        ({"ews_url": "https://attacker.example/EWS/Exchange.asmx"}, "service_password"),
        ({"autodiscover_email": "x@attacker.example", "ews_url": ""}, "service_password"),
        ({"graph_endpoint": "https://attacker.example/v1.0"}, "oauth_client_secret"),
        ({"authority_url": "https://attacker.example/tenant"}, "oauth_client_secret"),
        ({"ca_bundle": "A PEM FILE"}, "oauth_client_secret"),
    ],
)
def test_changing_where_a_secret_is_sent_requires_entering_it_again_in_the_api(
    admin_api, env, changes, secret, tmp_path
):
    if changes.get("ca_bundle"):
        import trustme

        trustme.CA().cert_pem.write_to_path(str(tmp_path / "attacker-ca.pem"))
        changes = {"ca_bundle": str(tmp_path / "attacker-ca.pem")}
    env.settings.oauth_client_secret = "client-secret"
    env.settings.save()
    response = admin_api.patch(url(env), changes, format="json")
    assert response.status_code == 400, response.content
    assert set(response.json()) == {secret}
    assert "again" in response.json()[secret][0]
    env.settings.refresh_from_db()
    assert all(getattr(env.settings, name) != value for name, value in changes.items() if value)
    # With the secret given anew (the same one, or another), the change is saved.
    value = "s3cret" if secret == "service_password" else "client-secret"
    assert admin_api.patch(url(env), {**changes, secret: value}, format="json").status_code == 200


def test_a_destination_may_change_freely_when_no_secret_is_stored(admin_api, env):
    admin_api.patch(url(env), {"service_password": None}, format="json")
    response = admin_api.patch(url(env), {"ews_url": "https://mail.contoso.example/EWS/Exchange.asmx"}, format="json")
    assert response.status_code == 200, response.content


def test_changing_where_a_secret_is_sent_requires_entering_it_again_in_the_console(client, env):
    client.force_login(user_with_role("administrator"))
    data = console_settings_data(env, ews_url="https://attacker.example/EWS/Exchange.asmx")
    response = client.post(f"/environments/{env.pk}/settings/", data)
    assert response.status_code == 200
    assert "Enter the service password again" in response.content.decode()
    env.settings.refresh_from_db()
    assert env.settings.ews_url.startswith("http://127.0.0.1")
    response = client.post(f"/environments/{env.pk}/settings/", {**data, "service_password": "s3cret"})
    assert response.status_code == 302
    env.settings.refresh_from_db()
    assert env.settings.ews_url == "https://attacker.example/EWS/Exchange.asmx"


@pytest.mark.parametrize("field", ["ews_url", "graph_endpoint", "authority_url"])
def test_plain_http_to_another_host_is_refused_unless_allowed_per_environment(admin_api, env, field):
    plain = "http://mail.contoso.example/EWS/Exchange.asmx"
    response = admin_api.patch(url(env), {field: plain, "service_password": "s3cret"}, format="json")
    assert response.status_code == 400 and set(response.json()) == {field}
    assert "https" in response.json()[field][0]
    for loopback in ("http://127.0.0.1:8765/x", "http://localhost:8765/x", "http://[::1]:8765/x"):
        response = admin_api.patch(url(env), {field: loopback, "service_password": "s3cret"}, format="json")
        assert response.status_code == 200, response.content
    allowed = {field: plain, "allow_plain_http": True, "service_password": "s3cret"}
    assert admin_api.patch(url(env), allowed, format="json").status_code == 200


def test_the_console_warns_when_plain_http_is_allowed(client, env):
    client.force_login(user_with_role("administrator"))
    data = console_settings_data(
        env, ews_url="http://mail.contoso.example/EWS/Exchange.asmx", service_password="s3cret"
    )
    response = client.post(f"/environments/{env.pk}/settings/", data)
    assert response.status_code == 200 and "use https" in response.content.decode()
    response = client.post(f"/environments/{env.pk}/settings/", {**data, "allow_plain_http": "on"}, follow=True)
    assert "credentials cross the network unencrypted" in response.content.decode()
