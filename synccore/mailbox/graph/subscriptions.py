"""Change-notification subscriptions of the Graph backend (push over Graph, K14; the runtime's
webhook side keeps the rows, creates, renews and removes them).

A subscription belongs to the application, not to a mailbox; its requests are still throttled
as the mailbox it watches. Creating one makes Graph call the notification URL (the validation
handshake) before it answers, so it may take up to ten seconds more.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from synccore.mailbox import base
from synccore.mailbox.base import Subscription
from synccore.mailbox.graph.client import GraphClient, segment, user_path
from synccore.mailbox.graph.translation import iso_z, parse_iso


class SubscriptionOperations:
    """Webhook push over Graph: the subscription operations of ``MailboxBackend`` (mixed into
    ``GraphBackend``)."""

    client: GraphClient

    @classmethod
    def events_resource(cls, mailbox: str) -> str:
        """The subscription resource for a mailbox's calendar events (every calendar of it)."""
        return user_path(mailbox).lstrip("/") + "/events"

    @classmethod
    def messages_resource(cls, mailbox: str) -> str:
        """The subscription resource for a mailbox's messages, every folder (e-mail filing)."""
        return user_path(mailbox).lstrip("/") + "/messages"

    @classmethod
    def tasks_resource(cls, mailbox: str, list_id: str) -> str:
        """The subscription resource for the tasks of one Microsoft To Do list (T1, K14)."""
        return user_path(mailbox).lstrip("/") + f"/todo/lists/{segment(list_id)}/tasks"

    def create_subscription(
        self,
        mailbox: str,
        resource: str,
        *,
        notification_url: str,
        lifecycle_url: str,
        client_state: str,
        expires_at: datetime,
    ) -> Subscription:
        """Subscribe to created / updated / deleted items of a resource; raises MailboxError
        (an unreachable notification URL is an InvalidItem with Graph's ValidationError)."""
        body = {
            "changeType": "created,updated,deleted",
            "notificationUrl": notification_url,
            "lifecycleNotificationUrl": lifecycle_url,
            "resource": resource,
            "expirationDateTime": iso_z(expires_at),
            "clientState": client_state,
            "latestSupportedTlsVersion": "v1_2",
        }
        answer = self.client.send(mailbox, "POST", "/subscriptions", body=body, idempotent=False)
        if not answer.ok:
            raise answer.error()
        return _subscription(answer.body, expires_at)

    def renew_subscription(self, mailbox: str, subscription_id: str, expires_at: datetime) -> Subscription:
        """Move a subscription's expiry (PATCH); ItemNotFound when Graph no longer has it."""
        answer = self.client.send(
            mailbox,
            "PATCH",
            f"/subscriptions/{segment(subscription_id)}",
            body={"expirationDateTime": iso_z(expires_at)},
        )
        if not answer.ok:
            raise answer.error()
        return _subscription(answer.body, expires_at)

    def reauthorize_subscription(self, mailbox: str, subscription_id: str) -> None:
        """Answer a reauthorizationRequired lifecycle notification."""
        answer = self.client.send(mailbox, "POST", f"/subscriptions/{segment(subscription_id)}/reauthorize")
        if not answer.ok:
            raise answer.error()

    def delete_subscription(self, mailbox: str, subscription_id: str) -> None:
        """Remove a subscription; one Graph no longer has is removed already."""
        answer = self.client.send(mailbox, "DELETE", f"/subscriptions/{segment(subscription_id)}")
        if not answer.ok and answer.status != 404:
            raise answer.error()


def _subscription(body: Any, asked: datetime) -> Subscription:
    body = body if isinstance(body, dict) else {}
    if not body.get("id"):
        raise base.TransientMailboxError("Microsoft Graph answered a subscription request without its id.")
    # Graph may shorten the expiry it was asked for; what it answers is what counts.
    return Subscription(str(body["id"]), parse_iso(body.get("expirationDateTime")) or asked)
