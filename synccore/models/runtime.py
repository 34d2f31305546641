"""The runtime's per-mailbox bookkeeping: the lease and the pass queue marks (issue 7)."""

from __future__ import annotations

from django.db import models


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
    # When the last pass of each kind was enqueued: the next is due one pull interval later.
    contacts_enqueued_at = models.DateTimeField(null=True, blank=True)
    calendar_enqueued_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"lease of {self.sync_user_id}: {self.holder or 'free'}"
