"""Stream push over EWS (K14): streaming notifications, read by the push listener process only."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence

from exchangelib.properties import StatusEvent
from exchangelib.services import GetStreamingEvents

from synccore.mailbox import base
from synccore.mailbox.base import ConnectionConfig, MailboxError
from synccore.mailbox.ews.client import translate

log = logging.getLogger(__name__)

MAX_SUBSCRIPTIONS_PER_CONNECTION = 200  # Exchange's limit of subscription ids per GetStreamingEvents


class StreamingOperations:
    """``MailboxBackend.stream_calendar_changes`` over EWS (mixed into ``EwsBackend``)."""

    config: ConnectionConfig

    def stream_calendar_changes(
        self,
        mailboxes: Sequence[str],
        *,
        on_subscribed: Callable[[], None] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        connection_timeout_minutes: int = 1,
        on_unreachable: Callable[[str, MailboxError], None] | None = None,
    ) -> Iterator[str]:
        """Yield the address of each mailbox whose calendar changed, for as long as the stream lives.

        One streaming subscription per mailbox, all read over one connection of its own (at most 200,
        Exchange's limit), the way Microsoft describes keeping affinity for a group of subscriptions:
        the group's anchor is its alphabetically first mailbox; the anchor subscribes first and the
        X-BackEndOverrideCookie of that answer goes with every other subscription of the group and with
        the GetStreamingEvents request, which impersonates the anchor. So the group's subscriptions
        live on one Mailbox server and one request reads them all.

        ``on_subscribed`` is called once the subscriptions exist: streaming cannot replay what happened
        before, so the caller runs its catch-up then. A mailbox whose subscription is refused for a
        reason of its own (``MailboxNotFound``, ``AccessDenied``) is told to ``on_unreachable`` and
        left out, and the group's anchor is its first mailbox that could subscribe: one missing
        mailbox never takes the others' push down (O3). Raises ``MailboxError`` when the stream
        breaks (a stream that ends without the server closing it counts as broken) or when no
        mailbox could subscribe; the caller backs off and calls again (a new gap, a new catch-up).
        """
        if len(mailboxes) > MAX_SUBSCRIPTIONS_PER_CONNECTION:
            raise ValueError(f"at most {MAX_SUBSCRIPTIONS_PER_CONNECTION} subscriptions per connection")
        if not mailboxes:
            return
        # A backend of the stream's own, with its own pool (``own_pool``): never this backend's
        # connections (a pass's), nor another stream's; closed when the stream ends.
        backend = type(self)(self.config, own_pool=True)
        ordered = sorted(mailboxes, key=str.lower)
        anchor = None
        subscriptions: dict[str, str] = {}
        try:
            for mailbox in ordered:
                account = backend.account(mailbox)
                if anchor is not None:
                    account.affinity_cookie = anchor.affinity_cookie
                try:
                    subscriptions[backend.call(lambda a=account: a.calendar.subscribe_to_streaming())] = mailbox
                except (base.MailboxNotFound, base.AccessDenied) as exc:
                    if on_unreachable is None or len(ordered) == 1:
                        raise
                    on_unreachable(mailbox, exc)
                    continue
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
                        if any(not isinstance(event, StatusEvent) for event in notification.events):
                            mailbox = subscriptions.get(notification.subscription_id)
                            if mailbox:
                                yield mailbox
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
            for subscription_id, mailbox in subscriptions.items():
                try:
                    backend.account(mailbox).calendar.unsubscribe(subscription_id)
                except Exception:  # the server drops unread subscriptions on its own
                    log.debug("unsubscribing %s failed", mailbox, exc_info=True)
            backend.close()
