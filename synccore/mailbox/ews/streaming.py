"""Stream push over EWS (K14): streaming notifications, read by the push listener process only.

One streaming subscription per mailbox watches every kind the mailbox is synchronized for, and the
kind of each event is told by its folder: its parent folder (or, for a move, the folder it left)
is the calendar, the Tasks folder, or a mail folder of e-mail filing. A mailbox that files e-mail
subscribes to all its folders (``SubscribeToAllFolders``): EWS watches each folder named in
``FolderIds`` alone, not the folders below it, and e-mail filing reads the sub-folders of the Inbox
and Sent Items too. Other mailboxes name their calendar and Tasks folder in ``FolderIds``, so the
server sends nothing else. Events of folders that are not watched are dropped here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterator, Mapping

from exchangelib import Account
from exchangelib.folders import DEEP, Calendar, Folder, FolderCollection, Inbox, SentItems, Tasks
from exchangelib.properties import DistinguishedFolderId, Mailbox, StatusEvent
from exchangelib.services import GetStreamingEvents, SubscribeToStreaming, Unsubscribe

from synccore.mailbox import base
from synccore.mailbox.base import ConnectionConfig, MailboxError, StreamKind
from synccore.mailbox.ews.client import translate

log = logging.getLogger(__name__)

MAX_SUBSCRIPTIONS_PER_CONNECTION = 200  # Exchange's limit of subscription ids per GetStreamingEvents

# The distinguished folders each kind is told by (e-mail filing: and the folders below them).
KIND_FOLDERS: dict[str, tuple[type[Folder], ...]] = {
    "calendar": (Calendar,),
    "tasks": (Tasks,),
    "email": (Inbox, SentItems),
}


def event_kinds(event: object, folders: dict[str, StreamKind]) -> set[StreamKind]:
    """The kinds one event tells of, by its parent folder and, for a move or a copy, the folder it
    left (``folders``: folder id → kind). A folder created in (or moved into) a mail folder is a
    mail folder from then on: ``folders`` learns it, so its messages are told too."""
    if isinstance(event, StatusEvent):
        return set()
    parents = [getattr(event, "parent_folder_id", None), getattr(event, "old_parent_folder_id", None)]
    kinds = {folders[p.id] for p in parents if p is not None and p.id in folders}
    folder = getattr(event, "folder_id", None)
    parent = parents[0]
    if (
        folder is not None
        and parent is not None
        and folders.get(parent.id) == "email"
        and type(event).__name__ in ("CreatedEvent", "MovedEvent", "CopiedEvent")
    ):
        folders[folder.id] = "email"
    return kinds


class StreamingOperations:
    """``MailboxBackend.stream_changes`` over EWS (mixed into ``EwsBackend``, whose ``account``,
    ``call`` and ``root`` it uses)."""

    config: ConnectionConfig

    def stream_changes(
        self,
        watches: Mapping[str, Collection[StreamKind]],
        *,
        on_subscribed: Callable[[], None] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        connection_timeout_minutes: int = 1,
        on_unreachable: Callable[[str, MailboxError], None] | None = None,
    ) -> Iterator[tuple[str, StreamKind]]:
        """Yield (mailbox, kind) for each change of a watched kind, for as long as the stream lives.

        One streaming subscription per mailbox, all read over one connection of its own (at most 200,
        Exchange's limit), the way Microsoft describes keeping affinity for a group of subscriptions:
        the group's anchor is its alphabetically first mailbox; the anchor subscribes first and the
        X-BackEndOverrideCookie of that answer goes with every other subscription of the group and with
        the GetStreamingEvents request, which impersonates the anchor. So the group's subscriptions
        live on one Mailbox server and one request reads them all. Subscribing a mailbox costs one
        GetFolder (the ids of its watched folders, which its events name), one FindFolder when it
        files e-mail (the sub-folders of the Inbox and Sent Items) and the Subscribe.

        ``on_subscribed`` is called once the subscriptions exist: streaming cannot replay what happened
        before, so the caller runs its catch-up then. A mailbox whose subscription is refused for a
        reason of its own (``MailboxNotFound``, ``AccessDenied``) is told to ``on_unreachable`` and
        left out, and the group's anchor is its first mailbox that could subscribe: one missing
        mailbox never takes the others' push down (O3). Raises ``MailboxError`` when the stream
        breaks (a stream that ends without the server closing it counts as broken) or when no
        mailbox could subscribe; the caller backs off and calls again (a new gap, a new catch-up).
        """
        if len(watches) > MAX_SUBSCRIPTIONS_PER_CONNECTION:
            raise ValueError(f"at most {MAX_SUBSCRIPTIONS_PER_CONNECTION} subscriptions per connection")
        if not watches:
            return
        # A backend of the stream's own, with its own pool (``own_pool``): never this backend's
        # connections (a pass's), nor another stream's; closed when the stream ends.
        backend = type(self)(self.config, own_pool=True)
        ordered = sorted(watches, key=str.lower)
        anchor = None
        # Subscription id → (mailbox, folder id → kind).
        subscriptions: dict[str, tuple[str, dict[str, StreamKind]]] = {}
        try:
            for mailbox in ordered:
                account = backend.account(mailbox)
                if anchor is not None:
                    account.affinity_cookie = anchor.affinity_cookie
                try:
                    subscription_id, folders = backend.call(backend._subscribe, account, watches[mailbox])
                except (base.MailboxNotFound, base.AccessDenied) as exc:
                    if on_unreachable is None or len(ordered) == 1:
                        raise
                    on_unreachable(mailbox, exc)
                    continue
                subscriptions[subscription_id] = (mailbox, folders)
                if anchor is None:
                    anchor = account
            if anchor is None:
                raise base.PermanentMailboxError("None of the stream's mailboxes could be subscribed to.")
            if on_subscribed:
                on_subscribed()
            while not should_stop():
                reader = GetStreamingEvents(account=anchor)
                try:
                    for notification in reader.call(list(subscriptions), connection_timeout_minutes):
                        watched = subscriptions.get(notification.subscription_id)
                        if watched:
                            mailbox, folders = watched
                            # A burst read at once is one pass of each kind, in the order its
                            # events came.
                            kinds: dict[StreamKind, None] = {}
                            for event in notification.events:
                                kinds.update(dict.fromkeys(sorted(event_kinds(event, folders))))
                            for kind in kinds:
                                yield mailbox, kind
                        if should_stop():
                            return
                finally:
                    # Hang up now, not when the garbage collector gets to it: the server streams on
                    # for as long as the connection is open.
                    reader.stop_streaming()
                if reader.connection_status != GetStreamingEvents.CLOSED:
                    raise base.TransientMailboxError(
                        "The streaming connection ended before the server closed it."
                    )
        except MailboxError:
            raise
        except Exception as exc:
            raise translate(exc) from exc
        finally:
            for subscription_id, (mailbox, _) in subscriptions.items():
                try:
                    Unsubscribe(account=backend.account(mailbox)).get(subscription_id=subscription_id)
                except Exception:  # the server drops unread subscriptions on its own
                    log.debug("unsubscribing %s failed", mailbox, exc_info=True)
            backend.close()

    def _subscribe(
        self, account: Account, kinds: Collection[StreamKind]
    ) -> tuple[str, dict[str, StreamKind]]:
        """Subscribe one mailbox: (subscription id, folder id → kind of the folders it tells by)."""
        wanted = [(kind, cls) for kind in KIND_FOLDERS if kind in kinds for cls in KIND_FOLDERS[kind]]
        if not wanted:
            raise ValueError(f"nothing to watch in {account.primary_smtp_address}")
        distinguished = [
            cls(
                root=self.root(account),
                _distinguished_id=DistinguishedFolderId(
                    id=cls.DISTINGUISHED_FOLDER_ID,
                    mailbox=Mailbox(email_address=account.primary_smtp_address),
                ),
            )
            for _, cls in wanted
        ]
        # One GetFolder for all of them: their ids are what the events name as parent folders.
        resolved = list(
            FolderCollection(account=account, folders=distinguished).get_folders(additional_fields=set())
        )
        for found in resolved:
            if isinstance(found, Exception):
                raise found
        folders: dict[str, StreamKind] = {
            found.id: kind for (kind, _), found in zip(wanted, resolved, strict=True)
        }
        if "email" not in kinds:
            subscription_id = FolderCollection(account=account, folders=resolved).subscribe_to_streaming()
            return subscription_id, folders
        mail = [found for (kind, _), found in zip(wanted, resolved, strict=True) if kind == "email"]
        for found in FolderCollection(account=account, folders=mail).find_folders(depth=DEEP):
            if isinstance(found, Exception):
                raise found
            folders[found.id] = "email"
        # Every folder (``folders=None``): the mail folders' sub-folders are watched too.
        subscription_id = SubscribeToStreaming(account=account).get(
            folders=None, event_types=SubscribeToStreaming.EVENT_TYPES
        )
        return subscription_id, folders
