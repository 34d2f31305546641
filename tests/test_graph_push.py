"""Push over Microsoft Graph (K14): change-notification subscriptions, the webhook at
/hooks/graph/, renewal, lifecycle notifications."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from synccore.mailbox import base
from synccore.sync.connection import open_backend

pytestmark = [pytest.mark.django_db(transaction=True)]


def test_the_graph_backend_creates_renews_and_deletes_a_subscription(crm_graph, webhook_receiver):
    sim = crm_graph.sim
    backend = open_backend(crm_graph.settings)
    expiry = sim.clock.now() + timedelta(days=2)
    made = backend.create_subscription(
        "alice@contoso.example",
        backend.events_resource("alice@contoso.example"),
        notification_url=webhook_receiver.url,
        lifecycle_url=webhook_receiver.lifecycle_url,
        client_state="secret-state",
        expires_at=expiry,
    )
    assert len(webhook_receiver.validations) == 2  # the notification and the lifecycle URL
    (held,) = sim.graph.subscriptions.all()
    assert (held.id, held.client_state, held.mailbox) == (made.id, "secret-state", "alice@contoso.example")
    assert abs(made.expires_at - expiry) < timedelta(seconds=1)

    renewed = backend.renew_subscription("alice@contoso.example", made.id, expiry + timedelta(days=1))
    assert renewed.expires_at > made.expires_at
    backend.reauthorize_subscription("alice@contoso.example", made.id)
    backend.delete_subscription("alice@contoso.example", made.id)
    assert sim.graph.subscriptions.all() == []
    backend.delete_subscription("alice@contoso.example", made.id)  # gone already: fine
    with pytest.raises(base.ItemNotFound):
        backend.renew_subscription("alice@contoso.example", made.id, expiry)


def test_a_subscription_whose_webhook_fails_the_handshake_is_refused(crm_graph, webhook_receiver):
    webhook_receiver.validation = "wrong"
    backend = open_backend(crm_graph.settings)
    with pytest.raises(base.MailboxError, match="validation"):
        backend.create_subscription(
            "alice@contoso.example",
            backend.events_resource("alice@contoso.example"),
            notification_url=webhook_receiver.url,
            lifecycle_url=webhook_receiver.lifecycle_url,
            client_state="s",
            expires_at=timezone.now() + timedelta(days=1),
        )
