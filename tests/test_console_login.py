"""Console login: log in, log out, lockout after repeated failures, idle session timeout."""

from __future__ import annotations

import pytest
from django.conf import settings

from tests.fixtures.api import user_with_role

pytestmark = pytest.mark.django_db


def test_logs_in_and_out(client):
    user = user_with_role("viewer")
    response = client.post("/login/", {"username": user.username, "password": "pw-Secret-123"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200
    client.post("/logout/")
    assert client.get("/").status_code == 302


def test_a_wrong_password_shows_a_message(client):
    user = user_with_role("viewer")
    response = client.post("/login/", {"username": user.username, "password": "wrong"})
    assert response.status_code == 200
    assert b"didn&#x27;t match" in response.content or b"didn't match" in response.content


def test_repeated_failures_lock_the_login_even_for_the_right_password(client):
    user = user_with_role("viewer")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post("/login/", {"username": user.username, "password": "wrong"})
    response = client.post("/login/", {"username": user.username, "password": "pw-Secret-123"})
    assert response.status_code == 429
    assert b"Login locked" in response.content
    assert client.get("/").status_code == 302


def test_the_session_is_an_idle_timeout():
    assert settings.SESSION_SAVE_EVERY_REQUEST is True
    assert settings.SESSION_COOKIE_AGE > 0
