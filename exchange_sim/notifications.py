"""Subscriptions fed from the store's change journal (protocol-neutral; EWS pull and streaming use them).

An event is Created / Modified / Deleted / Moved / NewMail for an item or a folder, with a watermark
(the journal sequence number) so a pull client can resume where it left off.

Like Exchange, a subscription belongs to the account that created it (a service account that
impersonates many mailboxes owns all their subscriptions, so it may read them together on one
streaming connection), and it lives on one Mailbox server. With ``mailbox_servers`` > 1 the
mailboxes are spread over several servers and a client must keep affinity (X-AnchorMailbox,
X-PreferServerAffinity, the X-BackEndOverrideCookie) for a group's subscriptions to meet on one.
"""

from __future__ import annotations

import base64
import threading
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from exchange_sim.store import Change, Store, StoreError

EVENT_TYPES = ("CopiedEvent", "CreatedEvent", "DeletedEvent", "ModifiedEvent", "MovedEvent", "NewMailEvent", "FreeBusyChangedEvent")


def encode_watermark(seq: int) -> str:
    return base64.b64encode(f"WM:{seq}".encode()).decode()


def decode_watermark(watermark: str | None) -> int | None:
    if not watermark:
        return None
    try:
        text = base64.b64decode(watermark, validate=True).decode()
        if text.startswith("WM:"):
            return int(text[3:])
    except ValueError:
        pass
    raise StoreError("ErrorInvalidWatermark", "The watermark is invalid.")


@dataclass
class Event:
    kind: str  # CreatedEvent, ModifiedEvent, DeletedEvent, MovedEvent, NewMailEvent
    seq: int
    when: datetime
    is_folder: bool
    id: str
    changekey: str | None
    parent_folder_id: str | None
    old_id: str | None = None
    old_parent_folder_id: str | None = None

    @property
    def watermark(self) -> str:
        return encode_watermark(self.seq)


@dataclass
class Subscription:
    id: str
    mailbox: str
    kind: str  # pull | streaming
    folder_ids: set[str] | None  # None: all folders
    event_types: set[str]
    events: list[Event] = field(default_factory=list)
    last_seq: int = 0
    timeout_minutes: int | None = None  # pull: expires when not polled for this long (simulated clock)
    last_poll: datetime | None = None
    owner: str = ""  # the authenticated account that created it ("" without auth), lower case
    server: str = "MBX1"  # the Mailbox server it lives on
    cond: threading.Condition = field(default_factory=threading.Condition)
    waiters: set[threading.Event] = field(default_factory=set)  # open streams reading it

    def wants(self, event: Event) -> bool:
        if event.kind not in self.event_types:
            return False
        if self.folder_ids is None:
            return True
        return event.parent_folder_id in self.folder_ids or event.old_parent_folder_id in self.folder_ids


class Subscriptions:
    """``sim.subscriptions``: the live subscriptions of a store."""

    SERVER_DOMAIN = "mbx.exchange-sim.example"

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._subs: dict[str, Subscription] = {}
        self.mailbox_servers = 1  # >1: mailboxes spread over that many Mailbox servers
        store.add_listener(self._on_change)

    # ---- Mailbox servers (affinity) --------------------------------------------------------------
    def server_of(self, mailbox: str) -> str:
        """The Mailbox server holding a mailbox (stable: a hash of the address)."""
        count = max(int(self.mailbox_servers), 1)
        return f"MBX{zlib.crc32(mailbox.lower().encode()) % count + 1}"

    def affinity_cookie(self, server: str) -> str:
        """The X-BackEndOverrideCookie value that routes to ``server`` (Exchange: FQDN~number)."""
        return f"{server}.{self.SERVER_DOMAIN}~{zlib.crc32(server.encode())}"

    def server_from_cookie(self, cookie: str | None) -> str | None:
        if not cookie or "~" not in cookie:
            return None
        server = cookie.split("~", 1)[0].split(".", 1)[0]
        valid = {f"MBX{n}" for n in range(1, max(int(self.mailbox_servers), 1) + 1)}
        return server if server in valid and cookie == self.affinity_cookie(server) else None

    def subscribe(
        self,
        mailbox: str,
        kind: str,
        folder_ids: set[str] | None,
        event_types: list[str],
        watermark: str | None = None,
        timeout_minutes: int | None = None,
        *,
        owner: str = "",
        server: str | None = None,
    ) -> Subscription:
        since = decode_watermark(watermark)
        sub = Subscription(
            id=base64.b64encode(b"SUB" + uuid.uuid4().bytes).decode(),
            mailbox=mailbox,
            kind=kind,
            folder_ids=folder_ids,
            event_types=set(event_types),
            last_seq=self.store.seq if since is None else since,
            timeout_minutes=timeout_minutes,
            last_poll=self.store.clock.now(),
            owner=owner.lower(),
            server=server or self.server_of(mailbox),
        )
        if since is not None:
            for change in self.store.journal(since):
                self._deliver(sub, change)
        with self._lock:
            self._subs[sub.id] = sub
        return sub

    def get(
        self,
        subscription_id: str,
        mailbox: str | None = None,
        *,
        owner: str | None = None,
        server: str | None = None,
    ) -> Subscription:
        """The subscription, as a request that reached ``server`` as ``owner`` may see it.

        Not an id at all (not base64): ErrorInvalidSubscription, as Exchange answers "AAA-".
        Unknown, or living on another Mailbox server (no affinity): ErrorSubscriptionNotFound.
        Created by another account: ErrorSubscriptionAccessDenied (only the owner may read it).
        """
        if not _well_formed_id(subscription_id):
            raise StoreError("ErrorInvalidSubscription", "Subscription is invalid.")
        with self._lock:
            sub = self._subs.get(subscription_id)
        if (
            sub is None
            or (mailbox and sub.mailbox.lower() != mailbox.lower())
            or (server is not None and sub.server != server)
        ):
            raise StoreError("ErrorSubscriptionNotFound", "The specified subscription was not found.")
        if owner is not None and sub.owner != owner.lower():
            raise StoreError(
                "ErrorSubscriptionAccessDenied", "Access is denied. Only the subscription owner may access the subscription."
            )
        return sub

    def unsubscribe(self, subscription_id: str, mailbox: str | None = None, **access: Any) -> None:
        sub = self.get(subscription_id, mailbox, **access)
        with self._lock:
            self._subs.pop(sub.id, None)
        with sub.cond:
            sub.cond.notify_all()
            for waiter in sub.waiters:
                waiter.set()

    def all(self) -> list[Subscription]:
        with self._lock:
            return list(self._subs.values())

    def pull(self, subscription_id: str, watermark: str | None, mailbox: str | None = None, limit: int = 50, **access: Any) -> tuple[list[Event], str, bool]:
        """Events after the watermark: (events, previous watermark, more events)."""
        sub = self.get(subscription_id, mailbox, **access)
        now = self.store.clock.now()
        if sub.timeout_minutes and sub.last_poll and now - sub.last_poll > timedelta(minutes=sub.timeout_minutes):
            with self._lock:
                self._subs.pop(sub.id, None)
            raise StoreError("ErrorExpiredSubscription", "The subscription has expired.")
        sub.last_poll = now
        since = decode_watermark(watermark)
        with sub.cond:
            if since is not None:
                sub.events = [e for e in sub.events if e.seq > since]
            batch, rest = sub.events[:limit], sub.events[limit:]
            sub.events = rest
            previous = watermark or encode_watermark(sub.last_seq)
            return batch, previous, bool(rest)

    def wait(self, sub: Subscription, timeout: float) -> list[Event]:
        """Block until events arrive (or timeout); hands them over and forgets them (streaming)."""
        with sub.cond:
            if not sub.events:
                sub.cond.wait(timeout)
            batch, sub.events = sub.events, []
            return batch

    def take(self, sub: Subscription) -> list[Event]:
        """The events waiting on a subscription, handed over and forgotten (streaming)."""
        with sub.cond:
            batch, sub.events = sub.events, []
            return batch

    def put_back(self, sub: Subscription, events: list[Event]) -> None:
        """Events a stream took but could not deliver go back in front of the subscription's queue."""
        with sub.cond:
            sub.events = [*events, *sub.events]

    def watch(self, subs: list[Subscription], waiter: threading.Event, on: bool = True) -> None:
        """A stream reading ``subs`` is woken through ``waiter`` when any of them gets events."""
        for sub in subs:
            with sub.cond:
                (sub.waiters.add if on else sub.waiters.discard)(waiter)

    def current_watermark(self) -> str:
        return encode_watermark(self.store.seq)

    # ---- from the journal ------------------------------------------------------------------------
    def _on_change(self, change: Change) -> None:
        for sub in self.all():
            if sub.mailbox.lower() == change.mailbox.lower():
                self._deliver(sub, change)

    def _deliver(self, sub: Subscription, change: Change) -> None:
        for event in self._events_for(change):
            if sub.wants(event):
                with sub.cond:
                    sub.events.append(event)
                    sub.last_seq = event.seq
                    sub.cond.notify_all()
                    for waiter in sub.waiters:
                        waiter.set()

    def _events_for(self, change: Change) -> list[Event]:
        if change.moved_to:
            return []  # the delete half of a move: reported as one MovedEvent with the create half
        changekey = self._changekey(change)
        base = dict(seq=change.seq, when=change.when, is_folder=change.is_folder, id=change.id, changekey=changekey, parent_folder_id=change.folder_id)
        if change.op == "created" and change.moved_from:
            return [Event("MovedEvent", old_id=change.moved_from, old_parent_folder_id=change.old_folder_id, **base)]
        kind = {"created": "CreatedEvent", "modified": "ModifiedEvent", "deleted": "DeletedEvent"}[change.op]
        events = [Event(kind, **base)]
        if kind == "CreatedEvent" and not change.is_folder and self._is_inbox(change):
            events.append(Event("NewMailEvent", **base))
        return events

    def _changekey(self, change: Change) -> str | None:
        if change.op == "deleted":
            return None
        try:
            obj: Any = self.store.folder(change.id) if change.is_folder else self.store.item(change.id)
        except StoreError:
            return None
        return obj.changekey

    def _is_inbox(self, change: Change) -> bool:
        try:
            return self.store.distinguished_folder(change.mailbox, "inbox").id == change.folder_id
        except StoreError:
            return False


def subscriptions_for(store: Store) -> Subscriptions:
    found = store.extensions.get("subscriptions")
    if found is None:
        found = Subscriptions(store)
        store.extensions["subscriptions"] = found
    return found


def install(simulator: Any) -> None:
    from exchange_sim.ews import notification_ops

    simulator.subscriptions = subscriptions_for(simulator.store)
    notification_ops.install(simulator)


def _well_formed_id(subscription_id: str) -> bool:
    try:
        return bool(base64.b64decode(subscription_id, validate=True))
    except ValueError:
        return False
