"""API tokens: create_api_token prints a working, expiring, revocable token as its last line."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from knox.models import AuthToken

from tests.fixtures.api import client_for, user_with_role

pytestmark = pytest.mark.django_db


def create_token(username: str) -> str:
    out = StringIO()
    call_command("create_api_token", username, stdout=out)
    return out.getvalue().strip().splitlines()[-1]


def test_the_printed_token_authenticates_as_that_user():
    user = user_with_role("viewer")
    token = create_token(user.username)
    response = client_for(None).get("/api/v1/environments/", HTTP_AUTHORIZATION=f"Token {token}")
    assert response.status_code == 200
    assert AuthToken.objects.get(user=user).expiry is not None


def test_a_revoked_token_no_longer_works():
    user = user_with_role("viewer")
    token = create_token(user.username)
    call_command("revoke_api_tokens", user.username, stdout=StringIO())
    response = client_for(None).get("/api/v1/environments/", HTTP_AUTHORIZATION=f"Token {token}")
    assert response.status_code == 401


def test_an_unknown_user_is_an_error():
    with pytest.raises(CommandError, match="No user"):
        create_token("ghost")


def test_the_schema_and_docs_pages_are_served_without_a_cdn(client):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/v1/environments/{id}/start/" in schema.content
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"cdn" not in docs.content.lower() and b"https://" not in docs.content
