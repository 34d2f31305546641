"""Console: run history filtered per user and kind, its charts following the choice and showing
failed passes (issue 14, console layout)."""

from __future__ import annotations

import pytest

from synccore.models import SyncRun, SyncUser
from tests.fixtures.api import *  # noqa: F403  (fixtures)
from tests.fixtures.api import user_with_role

pytestmark = pytest.mark.django_db


def test_run_history_filters_per_user_and_kind(client, env):
    alice = SyncUser.objects.get(environment=env, mailbox_email="alice@contoso.example")
    bob = SyncUser.objects.get(environment=env, mailbox_email="bob@contoso.example")
    SyncRun.objects.create(environment=env, sync_user=alice, kind="contacts", outcome="success", error="")
    SyncRun.objects.create(
        environment=env, sync_user=alice, kind="calendar", outcome="failed", error="alice-calendar"
    )
    SyncRun.objects.create(
        environment=env, sync_user=bob, kind="calendar", outcome="failed", error="bob-calendar"
    )
    client.force_login(user_with_role("viewer"))
    page = client.get(
        f"/environments/{env.pk}/",
        {"tab": "history", "run_user": "alice@contoso.example", "run_kind": "calendar"},
    ).content.decode()
    history = page.split('<section id="history"', 1)[1].split("</section>", 1)[0]
    assert "alice-calendar" in history and "bob-calendar" not in history
    assert '<option value="calendar" selected>' in history
    assert "failed pass" in history  # the chart's series of passes that failed as a whole
    everything = client.get(f"/environments/{env.pk}/", {"tab": "history"}).content.decode()
    assert "alice-calendar" in everything and "bob-calendar" in everything
