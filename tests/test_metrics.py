"""GET /metrics: the Prometheus text format with the pinned metric names, readable with an API
token (viewer and up) or METRICS_TOKEN (issue 14, O7)."""

from __future__ import annotations

import pytest
from knox.models import AuthToken
from prometheus_client.parser import text_string_to_metric_families

from synccore.models import ItemLink, SyncRun, SyncUser
from tests.fixtures.api import *  # noqa: F403  (fixtures)
from tests.fixtures.api import user_with_role

pytestmark = pytest.mark.django_db

PINNED = {
    "crmsync_passes": "counter",
    "crmsync_requests": "counter",
    "crmsync_users": "gauge",
    "crmsync_queue_depth": "gauge",
    "crmsync_push_subscriptions": "gauge",
    "crmsync_items_needing_attention": "gauge",
}


def token_for(role: str | None) -> str:
    _, key = AuthToken.objects.create(user=user_with_role(role))
    return key


def scrape(client, authorization: str):
    response = client.get("/metrics", HTTP_AUTHORIZATION=authorization)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.content.decode())}
    return families


def samples(family, **labels) -> list[float]:
    return [s.value for s in family.samples if all(s.labels.get(k) == v for k, v in labels.items())]


def test_every_pinned_metric_is_there_and_parses(client, env):
    alice = SyncUser.objects.get(environment=env, mailbox_email="alice@contoso.example")
    SyncRun.objects.create(environment=env, sync_user=alice, kind="contacts", outcome="success", requests=4)
    SyncRun.objects.create(environment=env, sync_user=alice, kind="contacts", outcome="failed", requests=1)
    SyncRun.objects.create(environment=env, sync_user=alice, kind="calendar", outcome="held", requests=2)
    SyncUser.objects.filter(pk=alice.pk).update(health="held")
    families = scrape(client, f"Token {token_for('viewer')}")
    for name, kind in PINNED.items():
        assert name in families and families[name].type == kind, name
    passes = families["crmsync_passes"]
    assert samples(passes, environment="Production", kind="contacts", outcome="failed") == [1]
    assert samples(passes, environment="Production", kind="calendar", outcome="held") == [1]
    assert samples(families["crmsync_requests"], environment="Production", backend="ews") == [7]
    users = families["crmsync_users"]
    assert samples(users, environment="Production", kind="contacts", health="held") == [1]
    assert samples(users, environment="Production", kind="contacts", health="healthy") == [1]
    assert samples(families["crmsync_items_needing_attention"], environment="Production") == [1]


def test_items_that_failed_count_as_needing_attention(client, env):
    alice = SyncUser.objects.get(environment=env, mailbox_email="alice@contoso.example")
    from tests.fixtures import factories as f

    for n in range(2):
        ItemLink.objects.create(
            environment=env, sync_user=alice, kind="contact", contact=f.contact(env, last_name=f"C{n}"), state="failed"
        )
    families = scrape(client, f"Token {token_for('viewer')}")
    assert samples(families["crmsync_items_needing_attention"], environment="Production") == [2]


def test_the_metrics_token_reads_without_a_user(client, env, settings):
    settings.METRICS_TOKEN = "scrape-me-0123456789"
    assert "crmsync_users" in scrape(client, "Bearer scrape-me-0123456789")
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401


def test_nobody_else_reads_the_metrics(client, env, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Token {token_for(None)}").status_code == 403
