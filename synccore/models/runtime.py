"""The runtime's per-mailbox bookkeeping: the lease and the pass queue marks (issue 7)."""

from __future__ import annotations

from django.db import models

from synccore.models.state import SyncKind


class UserLease(models.Model):
    """One row per sync user: who may sync this mailbox now, and what is queued for it.

    The lease is taken and renewed by conditional UPDATEs (never read-then-write), so two worker
    processes on two machines can never both hold it; an expired lease is free for anyone, which is
    how the lease of a killed worker is taken over.
    """

    sync_user = models.OneToOneField(
        "synccore.SyncUser", on_delete=models.CASCADE, primary_key=True, related_name="lease"
    )
    holder = models.CharField(max_length=200, blank=True, help_text="host:pid:token of the pass holding it.")
    expires_at = models.DateTimeField(null=True, blank=True)
    # A pass that found the lease taken asks for a re-run here (the trigger it carried, or "").
    rerun_contacts = models.CharField(max_length=20, blank=True)
    rerun_calendar = models.CharField(max_length=20, blank=True)
    rerun_tasks = models.CharField(max_length=20, blank=True)
    rerun_email = models.CharField(max_length=20, blank=True)
    # When the last pass of each kind was enqueued: the next is due one pull interval later.
    contacts_enqueued_at = models.DateTimeField(null=True, blank=True)
    calendar_enqueued_at = models.DateTimeField(null=True, blank=True)
    tasks_enqueued_at = models.DateTimeField(null=True, blank=True)
    email_enqueued_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"lease of {self.sync_user_id}: {self.holder or 'free'}"


class ConnectionSlot(models.Model):
    """One of the N connections an Exchange service account may have open at once (EWS: 27 by
    default). A pass holds one slot while it runs; slots are taken, renewed and released by
    conditional UPDATEs like the lease, so the cap holds across worker processes and machines,
    and the slot of a worker that died expires."""

    account = models.CharField(max_length=300, help_text="backend, service account and server.")
    index = models.PositiveSmallIntegerField()
    holder = models.CharField(max_length=200, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "index"], name="unique_connection_slot")]

    def __str__(self) -> str:
        return f"{self.account} slot {self.index}: {self.holder or 'free'}"


class PushSubscriptionState(models.TextChoices):
    CREATING = "creating", "Being created"
    ACTIVE = "active", "Active"
    FAILED = "failed", "Failed (pull only)"


class GraphSubscription(models.Model):
    """A Microsoft Graph change-notification subscription held for one sync user and kind (K14).

    One row per (sync user, kind), inserted before the subscription is asked for, so two workers
    never subscribe the same mailbox twice. The clientState Graph echoes with every notification is
    random per subscription and kept only as a SHA-256 hash: enough to check a notification, of no
    use to anyone reading the database. A row in state "failed" leaves its user on pull only and
    says why; the next maintenance run tries again.
    """

    environment = models.ForeignKey(
        "synccore.Environment", on_delete=models.CASCADE, related_name="graph_subscriptions"
    )
    sync_user = models.ForeignKey(
        "synccore.SyncUser", on_delete=models.CASCADE, related_name="graph_subscriptions"
    )
    kind = models.CharField(max_length=10, choices=SyncKind.choices)
    subscription_id = models.CharField(
        max_length=200, blank=True, help_text="Graph's id of the subscription (empty until created)."
    )
    resource = models.CharField(max_length=400)
    notification_url = models.CharField(
        max_length=500,
        blank=True,
        help_text="Where Graph posts this subscription's notifications (from PUBLIC_BASE_URL when it "
        "was made); empty for rows made before it was stored.",
    )
    client_state_hash = models.CharField(max_length=64, blank=True, help_text="SHA-256 of the clientState.")
    state = models.CharField(
        max_length=10, choices=PushSubscriptionState.choices, default=PushSubscriptionState.CREATING
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["sync_user", "kind"], name="one_graph_subscription_per_user_kind"
            ),
            models.UniqueConstraint(
                fields=["subscription_id"],
                condition=~models.Q(subscription_id=""),
                name="graph_subscription_id_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} subscription of {self.sync_user_id}: {self.state}"


class AlertState(models.Model):
    """The state an alert was last decided on, per environment and subject (O6): a message goes
    out when a subject's state changes, never again while it lasts.

    Subjects: ``environment``, ``user:<id>:<kind>``, ``push:<id>:<kind>``, ``secret``, ``items``.
    ``alerted`` says whether the last message about it was bad news, so recovery is told only
    after a problem was."""

    environment = models.ForeignKey(
        "synccore.Environment", on_delete=models.CASCADE, related_name="alert_states"
    )
    subject = models.CharField(max_length=100)
    state = models.CharField(max_length=30)
    alerted = models.BooleanField(default=False)
    changed_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["environment", "subject"], name="one_alert_state_per_subject")
        ]

    def __str__(self) -> str:
        return f"{self.subject}: {self.state}"
