"""Pull and streaming subscriptions reporting created / modified / deleted events."""

from __future__ import annotations

import base64
import datetime as dt
import socket
import threading
import time

import pytest
from exchangelib.errors import ErrorSubscriptionNotFound
from exchangelib.properties import CreatedEvent, DeletedEvent, ModifiedEvent, MovedEvent, StatusEvent
from lxml import etree

from exchange_sim import Simulator

from .conftest import connect


def pull(folder, subscription_id, watermark):
    notifications = list(folder.get_events(subscription_id, watermark))
    events = [e for n in notifications for e in n.events]
    return events, (events[-1].watermark if events else watermark)


def test_a_pull_subscription_reports_created_modified_and_deleted(account, exchange_sim: Simulator):
    alice = exchange_sim.user("alice@contoso.example")
    subscription_id, watermark = account.contacts.subscribe_to_pull()
    made = alice.create_contact(GivenName="Pat")
    alice.edit(made, Surname="Doe")
    events, watermark = pull(account.contacts, subscription_id, watermark)
    assert [(type(e), e.item_id.id) for e in events] == [(CreatedEvent, made.id), (ModifiedEvent, made.id)]
    alice.delete(made, hard=True)
    events, watermark = pull(account.contacts, subscription_id, watermark)
    assert [(type(e), e.item_id.id) for e in events] == [(DeletedEvent, made.id)]
    events, _ = pull(account.contacts, subscription_id, watermark)
    assert events == [] or all(isinstance(e, StatusEvent) for e in events)


def test_a_move_is_one_moved_event_with_old_and_new_ids(account, exchange_sim: Simulator):
    alice = exchange_sim.user("alice@contoso.example")
    made = alice.create_contact(GivenName="Pat")
    subscription_id, watermark = account.contacts.subscribe_to_pull()
    moved = alice.move(made, "deleteditems")
    events, _ = pull(account.contacts, subscription_id, watermark)
    assert [(type(e), e.old_item_id.id, e.item_id.id) for e in events] == [(MovedEvent, made.id, moved.id)]


def test_a_subscription_sees_only_its_folders(account, exchange_sim: Simulator):
    subscription_id, watermark = account.calendar.subscribe_to_pull()
    exchange_sim.user("alice@contoso.example").create_contact(GivenName="Elsewhere")
    exchange_sim.user("bob@contoso.example").create_event("Not mine", *_hour())
    assert [e for e in pull(account.calendar, subscription_id, watermark)[0] if not isinstance(e, StatusEvent)] == []


def test_after_unsubscribe_the_subscription_is_gone(account):
    subscription_id, watermark = account.contacts.subscribe_to_pull()
    account.contacts.unsubscribe(subscription_id)
    with pytest.raises(ErrorSubscriptionNotFound):
        pull(account.contacts, subscription_id, watermark)


def test_a_streaming_subscription_reports_changes_until_the_connection_closes(exchange_sim: Simulator):
    exchange_sim.streaming.seconds_per_minute = 1.5  # ConnectionTimeout=1 lasts 1.5 s here
    alice = exchange_sim.user("alice@contoso.example")
    made = alice.create_contact(GivenName="Pat")
    subscriber = connect(exchange_sim)
    subscription_id = subscriber.contacts.subscribe_to_streaming()
    # the listener gets its own connection pool: a blocking stream would stall max_connections=1
    listener = connect(exchange_sim, max_connections=1)

    def edit_later() -> None:
        time.sleep(0.3)
        alice.edit(made, Surname="Doe")
        alice.create_contact(GivenName="New")
        alice.delete(made, hard=True)

    threading.Thread(target=edit_later).start()
    seen = []
    for notification in listener.contacts.get_streaming_events(subscription_id, connection_timeout=1):
        seen.extend(type(e).__name__ for e in notification.events)
    assert seen == ["ModifiedEvent", "CreatedEvent", "DeletedEvent"]


def test_a_client_hanging_up_mid_stream_does_not_hurt_the_server(exchange_sim: Simulator, account):
    exchange_sim.streaming.seconds_per_minute = 30
    subscription_id = account.contacts.subscribe_to_streaming()
    body = (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" '
        'xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">'
        '<s:Header><t:RequestServerVersion Version="Exchange2016"/>'
        "<t:ExchangeImpersonation><t:ConnectingSID><t:PrimarySmtpAddress>alice@contoso.example</t:PrimarySmtpAddress>"
        "</t:ConnectingSID></t:ExchangeImpersonation></s:Header>"
        f"<s:Body><m:GetStreamingEvents><m:SubscriptionIds><t:SubscriptionId>{subscription_id}</t:SubscriptionId>"
        "</m:SubscriptionIds><m:ConnectionTimeout>1</m:ConnectionTimeout></m:GetStreamingEvents></s:Body></s:Envelope>"
    )
    auth = base64.b64encode(b"svc@contoso.example:demo-password").decode()
    payload = body.encode()
    request = (
        f"POST /EWS/Exchange.asmx HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {auth}\r\n"
        f"Content-Type: text/xml\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload
    with socket.create_connection(("127.0.0.1", exchange_sim.port), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while b"ConnectionStatus" not in received:
            received += sock.recv(65536)
        assert received.startswith(b"HTTP/1.1 200")
    # the socket is closed here: the client hung up mid-stream
    exchange_sim.user("alice@contoso.example").create_contact(GivenName="After")
    deadline = time.monotonic() + 5
    while exchange_sim.streaming.open_streams and time.monotonic() < deadline:
        exchange_sim.user("alice@contoso.example").create_contact(GivenName="Poke")
        time.sleep(0.1)
    assert exchange_sim.streaming.open_streams == 0
    assert account.contacts.all().count() >= 2


def _hour():
    import datetime as dt

    start = dt.datetime(2027, 1, 4, 9, tzinfo=dt.UTC)
    return start, start + dt.timedelta(hours=1)


def test_a_pull_subscription_expires_when_not_polled_within_its_timeout(account, exchange_sim: Simulator):
    from exchangelib.errors import ErrorExpiredSubscription

    subscription_id, watermark = account.contacts.subscribe_to_pull(timeout=5)
    exchange_sim.clock.advance(dt.timedelta(minutes=4))
    pull(account.contacts, subscription_id, watermark)
    exchange_sim.clock.advance(dt.timedelta(minutes=6))
    with pytest.raises(ErrorExpiredSubscription):
        pull(account.contacts, subscription_id, watermark)


# --- Several mailboxes on one streaming connection (the push listener's groups) ----------------


def _stream_ids(account, subscription_ids, *, until: int) -> list[str]:
    """Mailbox-changing notifications on one connection, by subscription id, until `until` arrived."""
    seen = []
    for notification in account.calendar.get_streaming_events(subscription_ids, connection_timeout=1):
        if any(not isinstance(e, StatusEvent) for e in notification.events):
            seen.append(notification.subscription_id)
        if len(seen) >= until:
            break
    return seen


def test_one_stream_carries_the_subscriptions_of_several_mailboxes_created_by_the_same_account(
    exchange_sim: Simulator,
):
    exchange_sim.streaming.seconds_per_minute = 5
    mailboxes = ["alice@contoso.example", "bob@contoso.example", "carol@contoso.example"]
    accounts = [connect(exchange_sim, mailbox) for mailbox in mailboxes]
    ids = {account.calendar.subscribe_to_streaming(): account.primary_smtp_address for account in accounts}
    reader = connect(exchange_sim, mailboxes[0], max_connections=1)  # impersonating the group's anchor

    def change_later() -> None:
        time.sleep(0.3)
        exchange_sim.user("bob@contoso.example").create_event("Bob's", *_hour())
        exchange_sim.user("carol@contoso.example").create_event("Carol's", *_hour())

    threading.Thread(target=change_later).start()
    seen = _stream_ids(reader, list(ids), until=2)
    assert sorted(ids[i] for i in seen) == ["bob@contoso.example", "carol@contoso.example"]


def test_a_stream_refuses_another_accounts_subscription_with_access_denied(exchange_sim: Simulator):
    from exchangelib.errors import ErrorSubscriptionAccessDenied

    exchange_sim.add_user("svc2@contoso.example", "other-password", service_account=True)
    mine = connect(exchange_sim).calendar.subscribe_to_streaming()
    theirs = (
        connect(exchange_sim, "bob@contoso.example", credentials=("svc2@contoso.example", "other-password"))
        .calendar.subscribe_to_streaming()
    )
    with pytest.raises(ErrorSubscriptionAccessDenied):
        list(connect(exchange_sim).calendar.get_streaming_events([mine, theirs], connection_timeout=1))
    # The answer names the subscriptions that failed, and only those.
    answer = etree.fromstring(_raw_streaming_answer(exchange_sim, [mine, theirs]).split(b"\r\n")[1])
    named = [e.text for e in answer.findall(".//{*}ErrorSubscriptionIds/{*}SubscriptionId")]
    assert named == [theirs]


def _raw_streaming_answer(sim: Simulator, subscription_ids: list[str]) -> bytes:
    """The first chunk of a GetStreamingEvents answer, read off the socket (status line, headers, chunk)."""
    ids = "".join(f"<t:SubscriptionId>{i}</t:SubscriptionId>" for i in subscription_ids)
    body = (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" '
        'xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">'
        '<s:Header><t:RequestServerVersion Version="Exchange2016"/></s:Header>'
        f"<s:Body><m:GetStreamingEvents><m:SubscriptionIds>{ids}</m:SubscriptionIds>"
        "<m:ConnectionTimeout>1</m:ConnectionTimeout></m:GetStreamingEvents></s:Body></s:Envelope>"
    ).encode()
    auth = base64.b64encode(":".join(sim.credentials).encode()).decode()
    request = (
        f"POST /EWS/Exchange.asmx HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {auth}\r\n"
        f"X-AnchorMailbox: alice@contoso.example\r\nContent-Type: text/xml\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection(("127.0.0.1", sim.port), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while b"</s:Envelope>" not in received:
            received += sock.recv(65536)
    return received.split(b"\r\n\r\n", 1)[1]


def test_a_stream_refuses_more_than_200_subscriptions(exchange_sim: Simulator, account):
    from exchangelib.errors import ErrorInvalidArgument

    ids = [account.calendar.subscribe_to_streaming()] * 201
    with pytest.raises(ErrorInvalidArgument, match="at most 200"):
        list(account.calendar.get_streaming_events(ids, connection_timeout=1))
    assert exchange_sim.streaming.open_streams == 0


def test_with_several_mailbox_servers_a_group_keeps_affinity_through_the_anchors_cookie(exchange_sim: Simulator):
    subs = exchange_sim.subscriptions
    subs.mailbox_servers = 4
    names = ["alice", "bob", "carol", "dave", "erin"]
    anchor, other = next(
        (f"{a}@contoso.example", f"{b}@contoso.example")
        for a in names
        for b in names
        if subs.server_of(f"{a}@contoso.example") != subs.server_of(f"{b}@contoso.example")
    )
    # Without affinity each subscription lives on its own mailbox's server: one stream cannot read both.
    lone = connect(exchange_sim, other)
    stray = lone.calendar.subscribe_to_streaming()
    lone.protocol.close()  # fresh sessions: no cookie carried over from that answer
    reader = connect(exchange_sim, anchor)
    reader.affinity_cookie = None
    anchored = reader.calendar.subscribe_to_streaming()
    with pytest.raises(ErrorSubscriptionNotFound):
        list(reader.calendar.get_streaming_events([anchored, stray], connection_timeout=1))
    assert subs.get(anchored).server != subs.get(stray).server

    # The documented way: the anchor subscribes first; its cookie routes the others to its server.
    exchange_sim.streaming.seconds_per_minute = 5
    reader.protocol.close()
    reader.affinity_cookie = None
    first = reader.calendar.subscribe_to_streaming()
    assert reader.affinity_cookie, "the subscription answer carries X-BackEndOverrideCookie"
    member = connect(exchange_sim, other)
    member.affinity_cookie = reader.affinity_cookie
    second = member.calendar.subscribe_to_streaming()
    assert subs.get(first).server == subs.get(second).server == subs.server_of(anchor)
    threading.Timer(0.3, lambda: exchange_sim.user(other).create_event("Routed", *_hour())).start()
    assert _stream_ids(reader, [first, second], until=1) == [second]


# --- Tasks and mail folders (the push listener's tasks and e-mail filing) -------------------------


def _stream_events(reader, subscription_id, *, until: int) -> list:
    """The events (no status) of one subscription on a stream, until `until` arrived."""
    seen = []
    for notification in reader.inbox.get_streaming_events(subscription_id, connection_timeout=1):
        seen.extend(e for e in notification.events if not isinstance(e, StatusEvent))
        if len(seen) >= until:
            break
    return seen


def test_a_stream_on_the_tasks_inbox_and_sent_items_names_each_events_parent_folder(exchange_sim: Simulator):
    from exchangelib.folders import FolderCollection
    from exchangelib.properties import NewMailEvent

    exchange_sim.streaming.seconds_per_minute = 5
    account = connect(exchange_sim)
    folders = [account.tasks, account.inbox, account.sent]
    subscription_id = FolderCollection(account=account, folders=folders).subscribe_to_streaming()
    reader = connect(exchange_sim, max_connections=1)
    alice = exchange_sim.user("alice@contoso.example")

    def change_later() -> None:
        time.sleep(0.3)
        exchange_sim.user("bob@contoso.example").create_task("Not Alice's")
        alice.create_event("Not watched", *_hour())
        alice.create_task("Call Ann")
        alice.receive_message("Offer", "ann@fabrikam.example", categories=["CRM"])
        alice.send_message("Reply", ["ann@fabrikam.example"])

    threading.Thread(target=change_later).start()
    seen = _stream_events(reader, subscription_id, until=4)
    assert [(type(e).__name__, e.parent_folder_id.id) for e in seen] == [
        ("CreatedEvent", account.tasks.id),
        ("CreatedEvent", account.inbox.id),
        ("NewMailEvent", account.inbox.id),  # as Exchange: a new message in the Inbox is new mail too
        ("MovedEvent", account.sent.id),  # sent from a draft: it moves from Drafts into Sent Items
    ]
    assert seen[3].old_parent_folder_id.id == account.drafts.id
    assert isinstance(seen[2], NewMailEvent) and seen[1].item_id.id == seen[2].item_id.id
    assert exchange_sim.schema_violations == []


def test_a_stream_on_all_folders_names_a_sub_folder_and_a_folder_created_in_the_inbox(exchange_sim: Simulator):
    from exchangelib.services import SubscribeToStreaming

    exchange_sim.streaming.seconds_per_minute = 5
    account = connect(exchange_sim)
    alice = exchange_sim.user("alice@contoso.example")
    customers = alice.create_folder("Customers", "inbox", "IPF.Note")
    subscription_id = SubscribeToStreaming(account=account).get(
        folders=None, event_types=SubscribeToStreaming.EVENT_TYPES
    )
    reader = connect(exchange_sim, max_connections=1)

    def change_later() -> None:
        time.sleep(0.3)
        alice.receive_message("Filed by a rule", "ann@fabrikam.example", folder="inbox/Customers")
        alice.create_folder("Later", "inbox", "IPF.Note")

    threading.Thread(target=change_later).start()
    seen = _stream_events(reader, subscription_id, until=2)
    assert [(type(e).__name__, e.parent_folder_id.id) for e in seen[:2]] == [
        ("CreatedEvent", customers.id),  # no NewMailEvent: it is not in the Inbox itself
        ("CreatedEvent", account.inbox.id),
    ]
    assert seen[0].item_id is not None and seen[1].folder_id is not None  # a message, then a folder
    assert exchange_sim.schema_violations == []
