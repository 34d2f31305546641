"""Push (K14) behind the mailbox interface: each backend names the one push style it offers, the
other style's operations refuse in the MailboxError family, and an EWS stream is read through
the backend's own operation, on connections of the stream's own."""

from __future__ import annotations

import re
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from synccore.mailbox.base import ConnectionConfig, MailboxBackend, MailboxError, PushNotSupported
from synccore.mailbox.ews import EwsBackend
from synccore.mailbox.graph import GraphBackend
from synccore.sync.connection import open_backend

EXPIRY = datetime(2030, 1, 1, tzinfo=UTC)
# A backend that offers no push: every operation of the interface but push, doing nothing.
NoPush = type(
    "NoPush", (MailboxBackend,), dict.fromkeys(MailboxBackend.__abstractmethods__, lambda self, *a, **k: None)
)


def push_operations(backend: MailboxBackend) -> dict[str, object]:
    """Each push operation of the interface, called once."""
    return {
        "stream": lambda: backend.stream_calendar_changes(["alice@contoso.example"]),
        "resource": lambda: backend.events_resource("alice@contoso.example"),
        "create": lambda: backend.create_subscription(
            "alice@contoso.example",
            "users/alice@contoso.example/events",
            notification_url="https://sync.example/hooks/graph/",
            lifecycle_url="https://sync.example/hooks/graph/lifecycle/",
            client_state="secret",
            expires_at=EXPIRY,
        ),
        "renew": lambda: backend.renew_subscription("alice@contoso.example", "sub-1", EXPIRY),
        "reauthorize": lambda: backend.reauthorize_subscription("alice@contoso.example", "sub-1"),
        "delete": lambda: backend.delete_subscription("alice@contoso.example", "sub-1"),
    }


def test_each_backend_names_the_push_it_offers():
    assert (EwsBackend.push_style, GraphBackend.push_style, NoPush.push_style) == ("stream", "webhook", "")


def test_a_backend_without_push_refuses_every_push_operation_as_a_permanent_mailbox_error():
    for name, call in push_operations(NoPush()).items():
        with pytest.raises(PushNotSupported) as refused:
            call()
        assert isinstance(refused.value, MailboxError) and refused.value.permanent, name
        assert "NoPush has no" in str(refused.value) and "it offers no push" in str(refused.value)


def test_ews_refuses_webhooks_and_graph_refuses_streams_before_any_request():
    ews = EwsBackend(
        ConnectionConfig(backend="ews", ews_url="https://mail.contoso.example/EWS/Exchange.asmx")
    )
    graph = GraphBackend(ConnectionConfig(backend="graph"))
    try:
        ews_operations, graph_operations = push_operations(ews), push_operations(graph)
        for name in ("resource", "create", "renew", "reauthorize", "delete"):
            with pytest.raises(
                PushNotSupported, match=re.escape("EwsBackend has no webhook push (it offers stream push).")
            ):
                ews_operations[name]()
        with pytest.raises(
            PushNotSupported, match=re.escape("GraphBackend has no stream push (it offers webhook push).")
        ):
            graph_operations["stream"]()
        assert graph.requests == 0
    finally:
        ews.close()
        graph.close()


@pytest.mark.django_db
def test_k14_an_ews_stream_read_through_the_interface_names_the_mailbox_that_changed(crm):
    crm.sim.streaming.seconds_per_minute = 2  # a stream notices a stop within 2 s
    backend = open_backend(crm.settings)
    subscribed, stop = threading.Event(), threading.Event()
    changed: list[str] = []

    def read() -> None:
        mailboxes = [crm.bob.mailbox_email, crm.alice.mailbox_email]
        for mailbox in backend.stream_calendar_changes(
            mailboxes, on_subscribed=subscribed.set, should_stop=stop.is_set
        ):
            changed.append(mailbox)
            stop.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert subscribed.wait(60)
        assert len(crm.sim.subscriptions.all()) == 2  # one per mailbox, over one stream
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
        crm.mailbox().create_event("Lunch", start, start + timedelta(hours=1))
        reader.join(timeout=60)
        assert changed == [crm.alice.mailbox_email]
    finally:
        stop.set()
        reader.join(timeout=30)
        backend.close()
    deadline = time.monotonic() + 30
    while crm.sim.streaming.open_streams and time.monotonic() < deadline:
        time.sleep(0.1)
    # The stream hung up and unsubscribed when it ended.
    assert crm.sim.streaming.open_streams == 0
    assert crm.sim.subscriptions.all() == []
