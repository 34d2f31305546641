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


def test_a_session_ends_after_the_idle_timeout_and_status_refreshes_do_not_extend_it(client, monkeypatch):
    import syncadmin.middleware as middleware

    user = user_with_role("viewer")
    client.post("/login/", {"username": user.username, "password": "pw-Secret-123"})
    clock = [1_000_000.0]
    monkeypatch.setattr(middleware.time, "time", lambda: clock[0])
    assert client.get("/").status_code == 200  # activity: the idle clock starts now
    clock[0] += settings.SESSION_IDLE_SECONDS - 5
    assert client.get("/api/v1/environments/", HTTP_X_CONSOLE_POLL="1").status_code == 200
    clock[0] += 10  # idle for longer than the timeout, the poll notwithstanding
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_activity_keeps_the_session(client, monkeypatch):
    import syncadmin.middleware as middleware

    user = user_with_role("viewer")
    client.post("/login/", {"username": user.username, "password": "pw-Secret-123"})
    clock = [1_000_000.0]
    monkeypatch.setattr(middleware.time, "time", lambda: clock[0])
    for _ in range(3):
        assert client.get("/").status_code == 200
        clock[0] += settings.SESSION_IDLE_SECONDS - 5


def test_the_absolute_session_lifetime_counts_from_the_login_not_from_the_last_save(client, monkeypatch):
    import time

    import syncadmin.middleware as middleware

    user = user_with_role("viewer")
    client.post("/login/", {"username": user.username, "password": "pw-Secret-123"})
    expiry = client.session.get_expiry_date()
    logged_in = time.time()
    clock = [logged_in]
    monkeypatch.setattr(middleware.time, "time", lambda: clock[0])
    while clock[0] - logged_in < settings.SESSION_COOKIE_AGE - settings.SESSION_IDLE_SECONDS:
        assert client.get("/").status_code == 200  # active all along
        clock[0] += settings.SESSION_IDLE_SECONDS - 5
    assert abs((client.session.get_expiry_date() - expiry).total_seconds()) < 1  # saves keep it
    clock[0] = logged_in + settings.SESSION_COOKIE_AGE + 1
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")
