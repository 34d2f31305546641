"""API: run history (read-only, filters, pagination)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from synccore.models import SyncRun, SyncUser
from tests.fixtures.api import *  # noqa: F403  (fixtures)

pytestmark = pytest.mark.django_db


@pytest.fixture
def runs(env):
    alice = SyncUser.objects.get(mailbox_email="alice@contoso.example")
    bob = SyncUser.objects.get(mailbox_email="bob@contoso.example")
    now = timezone.now()
    for hours in range(60):
        SyncRun.objects.create(
            environment=env,
            sync_user=alice if hours % 2 else bob,
            kind="contacts" if hours % 3 else "calendar",
            outcome="success" if hours % 5 else "failed",
            started_at=now - timedelta(hours=hours),
            finished_at=now - timedelta(hours=hours) + timedelta(seconds=30),
            created=hours,
        )


def url(env, query=""):
    return f"/api/v1/environments/{env.pk}/runs/{query}"


def test_pages_runs_newest_first(viewer_api, env, runs):
    body = viewer_api.get(url(env)).json()
    assert body["count"] == 60
    assert len(body["results"]) == 50 and body["next"]
    assert body["results"][0]["created"] == 0
    assert body["results"][0]["duration_s"] == 30.0
    assert len(viewer_api.get(body["next"]).json()["results"]) == 10


def test_filters_by_user_kind_outcome_and_time(viewer_api, env, runs):
    body = viewer_api.get(url(env, "?user=ALICE@contoso.example&kind=calendar&outcome=failed")).json()
    assert body["count"] > 0
    assert all(
        (r["user"], r["kind"], r["outcome"]) == ("alice@contoso.example", "calendar", "failed")
        for r in body["results"]
    )
    since = (timezone.now() - timedelta(hours=9, minutes=30)).isoformat()
    assert viewer_api.get(url(env, ""), {"started_after": since}).json()["count"] == 10


def test_bad_filters_answer_400(viewer_api, env, runs):
    response = viewer_api.get(url(env, "?kind=mail&started_after=yesterday"))
    assert response.status_code == 400
    assert set(response.json()) == {"kind", "started_after"}


def test_runs_are_read_only(admin_api, env, runs):
    run = SyncRun.objects.first()
    assert admin_api.get(url(env, f"{run.pk}/")).status_code == 200
    assert admin_api.delete(url(env, f"{run.pk}/")).status_code == 405
    assert admin_api.post(url(env), {}, format="json").status_code == 405
