"""The console's own data: the audit log."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class AuditAction(models.TextChoices):
    SETTINGS_CHANGED = "settings_changed", "Settings changed"
    USER_ADDED = "user_added", "Sync user added"
    USER_CHANGED = "user_changed", "Sync user changed"
    USER_DELETED = "user_deleted", "Sync user deleted"
    USER_RE_ENABLED = "user_re_enabled", "Sync user re-enabled"
    DELETIONS_CONFIRMED = "deletions_confirmed", "Deletions confirmed"
    MAPPING_CHANGED = "mapping_changed", "Field mapping changed"
    START = "start", "Start"
    STOP = "stop", "Stop"
    SYNC_NOW = "sync_now", "Sync now"
    CONFLICT_RESOLVED = "conflict_resolved", "Conflict resolved"
    ITEMS_RETRIED = "items_retried", "Items retried"
    ITEM_DISMISSED = "item_dismissed", "Attention item dismissed"
    ITEMS_REMOVED = "items_removed", "Synchronized items removed from a mailbox"
    CRM_WRITE = "crm_write", "CRM data written through the API"
    TEST_MAILBOXES = "test_mailboxes", "Mailboxes tested"
    ALERT_SENT = "alert_sent", "Alert sent"


class AuditEntry(models.Model):
    """Who did what, when; ``changes`` maps a field to [before, after] with secrets masked."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    username = models.CharField(max_length=150, help_text="Kept when the user is deleted.")
    environment = models.ForeignKey(
        "synccore.Environment", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=30, choices=AuditAction.choices)
    target = models.CharField(max_length=255, blank=True, help_text="What was acted on.")
    changes = models.JSONField(default=dict, blank=True)
    via = models.CharField(max_length=10, default="console", help_text="console or api")
    outcome = models.CharField(max_length=255, blank=True, help_text="An error, when the action failed.")

    class Meta:
        ordering = ["-at", "-pk"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.username} {self.get_action_display()} {self.target}"
