"""A CA bundle is checked when the settings are saved (issue 16, finding 6): a path that is not a
PEM file of certificates is refused with a 400 naming `ca_bundle` (the console's form the same),
so it never reaches test-connection or start as a 500."""

from __future__ import annotations

import pytest
import trustme

from tests.fixtures.api import *  # noqa: F403  (fixtures)
from tests.fixtures.api import console_settings_data, user_with_role

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
