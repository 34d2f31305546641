"""What real passes decided, item by item (P2): the memory behind "why does this item look like this?"."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class DecisionOutcome(models.TextChoices):
    DONE = "done", "Carried out"
    HELD = "held", "Held back"
    FAILED = "failed", "Failed"


class Decision(models.Model):
    """One decision a real pass took about one item (``sync/actions.Action``), with its reason and
    rule and the fields it changed (before → after). Kept with its run for SYNC_RETENTION_DAYS."""

    environment = models.ForeignKey("synccore.Environment", on_delete=models.CASCADE, related_name="+")
    sync_user = models.ForeignKey(
        "synccore.SyncUser", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    run = models.ForeignKey("synccore.SyncRun", on_delete=models.CASCADE, related_name="decisions")
    pass_kind = models.CharField(max_length=20)
    # The CRM record's kind (contact, company, activity) and ids; a record not made yet has none.
    entity = models.CharField(max_length=20, blank=True)
    record_id = models.BigIntegerField(null=True, blank=True)
    external_id = models.CharField(max_length=100, blank=True)
    remote_id = models.TextField(blank=True)
    subject = models.CharField(max_length=255, blank=True)
    action = models.CharField(max_length=20)
    side = models.CharField(max_length=20, blank=True)
    fields = models.JSONField(default=dict, blank=True, help_text="{field: [before, after]}")
    reason = models.TextField(blank=True)
    rule = models.CharField(max_length=200, blank=True)
    outcome = models.CharField(max_length=20, choices=DecisionOutcome.choices, default=DecisionOutcome.DONE)
    detail = models.TextField(blank=True, help_text="Why it was held back or failed.")
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["environment", "entity", "external_id"], name="decision_item"),
            models.Index(fields=["sync_user", "entity", "record_id"], name="decision_user_record"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.entity} {self.record_id or self.remote_id} ({self.rule})"


class LoopHold(models.Model):
    """An item whose fields flipped back and forth over several passes (P3): held, not written,
    until an administrator releases it (after fixing whatever writes it back)."""

    environment = models.ForeignKey("synccore.Environment", on_delete=models.CASCADE, related_name="+")
    sync_user = models.ForeignKey("synccore.SyncUser", on_delete=models.CASCADE, related_name="loop_holds")
    pass_kind = models.CharField(max_length=20)
    entity = models.CharField(max_length=20)
    record_id = models.BigIntegerField()
    external_id = models.CharField(max_length=100, blank=True)
    subject = models.CharField(max_length=255, blank=True)
    fields = models.JSONField(default=dict, blank=True, help_text="{field: [the values it flips between]}")
    history = models.JSONField(default=list, blank=True, help_text="The writes that flipped, oldest first.")
    held_at = models.DateTimeField(default=timezone.now)
    released_at = models.DateTimeField(null=True, blank=True)
    released_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-held_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["sync_user", "pass_kind", "entity", "record_id"],
                condition=models.Q(released_at__isnull=True),
                name="loophold_one_open_per_item",
            )
        ]

    def __str__(self) -> str:
        return f"{self.entity} {self.subject or self.record_id} held for {self.sync_user} ({self.pass_kind})"
