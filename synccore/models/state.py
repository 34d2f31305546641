"""The synchronizer's memory: item links, folder sync tokens, runs and conflicts."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone

from synccore import mapping


class LinkState(models.TextChoices):
    SYNCED = "synced", "Synced"
    PENDING = "pending", "Pending"  # a remote create may have been sent; found again by its sync id
    FAILED = "failed", "Failed"  # the last write failed; retried next pass
    SKIPPED = "skipped", "Skipped (bad input)"
    HELD = "held", "Held by the safety limit"
    DELETED_REMOTE = "deleted_remote", "Deleted in Exchange"
    # After a change of backend the item was not found again (H2): left alone, never re-created
    # until an administrator asks for it (Retry).
    NOT_FOUND = "not_found", "Not found after a change of backend"
    # A task made in Outlook whose text names several CRM contacts or companies: imported without
    # a link to any of them, and listed for an administrator (T4). Otherwise it syncs as SYNCED.
    AMBIGUOUS = "ambiguous", "Imported without a link: several CRM records match"


class ItemLink(models.Model):
    """One CRM record ⇄ one item in one sync user's mailbox."""

    environment = models.ForeignKey("synccore.Environment", on_delete=models.CASCADE, related_name="+")
    sync_user = models.ForeignKey("synccore.SyncUser", on_delete=models.CASCADE, related_name="links")
    kind = models.CharField(max_length=20, choices=mapping.ENTITY_CHOICES)
    # Exactly one of these is set (by kind). PROTECT: CRM records become tombstones instead of
    # being deleted while linked, so these never cascade away.
    contact = models.ForeignKey(
        "synccore.Contact", null=True, blank=True, on_delete=models.PROTECT, related_name="links"
    )
    company = models.ForeignKey(
        "synccore.Company", null=True, blank=True, on_delete=models.PROTECT, related_name="links"
    )
    activity = models.ForeignKey(
        "synccore.Activity", null=True, blank=True, on_delete=models.PROTECT, related_name="links"
    )

    sync_id = models.UUIDField(
        default=uuid.uuid4,
        unique=True,
        help_text="Also written into the Exchange item as an extended property.",
    )
    remote_id = models.TextField(blank=True)
    remote_change_key = models.TextField(blank=True)
    remote_folder_id = models.TextField(blank=True)
    crm_hash = models.CharField(
        max_length=64, blank=True, help_text="Hash of the mapped CRM fields last written."
    )
    remote_hash = models.CharField(
        max_length=64, blank=True, help_text="Hash of the mapped Exchange fields last seen."
    )
    snapshot = models.JSONField(default=dict, blank=True, help_text="The mapped field values last agreed on.")
    series_from = models.DateTimeField(
        null=True,
        blank=True,
        help_text="A CRM series that began in the past and was changed since: the linked Exchange "
        "series holds its occurrences from this original start on (K15).",
    )
    retired_remote_id = models.TextField(
        blank=True,
        help_text="The Exchange series this link left behind when the CRM changed a series that began "
        "in the past, while ending it there is still to be done (K15).",
    )
    state = models.CharField(max_length=20, choices=LinkState.choices, default=LinkState.PENDING)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    synced_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["sync_user", "contact"],
                condition=Q(contact__isnull=False),
                name="itemlink_one_per_contact",
            ),
            models.UniqueConstraint(
                fields=["sync_user", "company"],
                condition=Q(company__isnull=False),
                name="itemlink_one_per_company",
            ),
            models.UniqueConstraint(
                fields=["sync_user", "activity"],
                condition=Q(activity__isnull=False),
                name="itemlink_one_per_activity",
            ),
            models.CheckConstraint(
                condition=(
                    Q(
                        kind=mapping.CONTACT,
                        contact__isnull=False,
                        company__isnull=True,
                        activity__isnull=True,
                    )
                    | Q(
                        kind=mapping.COMPANY,
                        contact__isnull=True,
                        company__isnull=False,
                        activity__isnull=True,
                    )
                    | Q(
                        kind__in=[mapping.ACTIVITY, mapping.TASK],
                        contact__isnull=True,
                        company__isnull=True,
                        activity__isnull=False,
                    )
                ),
                name="itemlink_one_crm_record_of_its_kind",
            ),
        ]
        indexes = [models.Index(fields=["sync_user", "kind", "state"], name="itemlink_user_kind_state")]

    def __str__(self) -> str:
        return f"{self.kind} {self.crm_record} ⇄ {self.sync_user}"

    @property
    def crm_record(self):
        return self.contact or self.company or self.activity

    def mark_failed(self, message: str) -> None:
        self.state = LinkState.FAILED
        self.last_error = message
        self.last_error_at = timezone.now()


class SyncKind(models.TextChoices):
    CONTACTS = "contacts", "Contacts"
    CALENDAR = "calendar", "Calendar"
    EMAIL = "email", "E-mail"
    TASKS = "tasks", "Tasks"


class FolderState(models.Model):
    """Where a user's synced items live in the mailbox, and the folder's sync token."""

    sync_user = models.ForeignKey("synccore.SyncUser", on_delete=models.CASCADE, related_name="folder_states")
    kind = models.CharField(max_length=20, choices=SyncKind.choices)
    folder_name = models.CharField(max_length=255, blank=True, help_text="Empty: the distinguished folder.")
    remote_folder_id = models.TextField(blank=True)
    sync_token = models.TextField(blank=True, help_text="EWS SyncState or Graph deltaLink.")
    # Others' changes a pass saw while reading back its own writes (another pass's invitation
    # landing meanwhile): the token moves past them, and the next pass reads them from here
    # instead of paging through this pass's writes again. [[item id, change key], ...]
    pending_changes = models.JSONField(default=list, blank=True)
    window_start = models.DateTimeField(null=True, blank=True)
    window_end = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["sync_user", "kind", "folder_name"], name="folderstate_one_per_user_kind_folder"
            )
        ]

    def __str__(self) -> str:
        return f"{self.sync_user} {self.kind} {self.folder_name or '(default)'}"


class Trigger(models.TextChoices):
    SCHEDULE = "schedule", "Schedule"
    START = "start", "Start"
    PUSH = "push", "Push notification"
    MANUAL = "manual", "Sync now"
    FULL = "full", "Sync all"
    COMMAND = "command", "Command line"


class Outcome(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCESS = "success", "Completed"
    PARTIAL = "partial", "Completed with item errors"
    HELD = "held", "Held by the safety limit"
    FAILED = "failed", "Failed"
    ABORTED = "aborted", "Stopped"


class SyncRun(models.Model):
    environment = models.ForeignKey("synccore.Environment", on_delete=models.CASCADE, related_name="runs")
    sync_user = models.ForeignKey(
        "synccore.SyncUser", null=True, blank=True, on_delete=models.CASCADE, related_name="runs"
    )
    kind = models.CharField(max_length=20, choices=SyncKind.choices)
    trigger = models.CharField(max_length=20, choices=Trigger.choices, default=Trigger.SCHEDULE)
    full = models.BooleanField(default=False)
    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=20, choices=Outcome.choices, default=Outcome.RUNNING)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    deleted = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    conflicts = models.PositiveIntegerField(default=0)
    requests = models.PositiveIntegerField(default=0, help_text="Remote requests made by the pass.")
    progress_total = models.PositiveIntegerField(default=0)
    progress_done = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    worker = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["sync_user", "kind", "-started_at"], name="syncrun_user_kind_started")
        ]

    def __str__(self) -> str:
        return (
            f"{self.kind} pass for {self.sync_user or self.environment} at {self.started_at:%Y-%m-%d %H:%M}"
        )

    @property
    def duration_s(self) -> float | None:
        if not self.finished_at:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    def counts(self) -> dict[str, int]:
        return {
            name: getattr(self, name)
            for name in ("created", "updated", "deleted", "skipped", "failed", "conflicts", "requests")
        }


class ConflictChoice(models.TextChoices):
    CRM = "crm", "CRM value kept"
    EXCHANGE = "exchange", "Exchange value kept"


class Conflict(models.Model):
    """A field changed on both sides since the last agreement (K8)."""

    link = models.ForeignKey(ItemLink, on_delete=models.CASCADE, related_name="conflicts")
    run = models.ForeignKey(SyncRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    field = models.CharField(max_length=50)
    crm_value = models.JSONField(null=True, blank=True)
    exchange_value = models.JSONField(null=True, blank=True)
    choice = models.CharField(max_length=20, choices=ConflictChoice.choices)
    detected_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-detected_at"]

    def __str__(self) -> str:
        return f"{self.field} on {self.link}"


class UnfiledMessage(models.Model):
    """A message a pass meant to file (marked, or chosen by track all) but could not (issue 19): an
    item error a person can act on — the mailbox would not give the message (too large, damaged),
    the CRM refused the activity, or it has no Internet message id. Listed in "Needs attention"
    until a later pass files it, the message is deleted, or an administrator dismisses it. Messages
    that are simply not filed (no category, a draft, before the start day) are never listed."""

    environment = models.ForeignKey("synccore.Environment", on_delete=models.CASCADE, related_name="+")
    sync_user = models.ForeignKey("synccore.SyncUser", on_delete=models.CASCADE, related_name="unfiled_messages")
    remote_id = models.TextField(help_text="The message's item id in the mailbox.")
    message_id = models.TextField(blank=True, help_text="The Internet message id, when it has one.")
    folder = models.CharField(max_length=20, blank=True)
    subject = models.CharField(max_length=255, blank=True)
    sender = models.CharField(max_length=320, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(help_text="Why it could not be filed, and what to do.")
    web_link = models.TextField(blank=True, help_text="The message in Outlook on the web, when the backend tells.")
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    dismissed_at = models.DateTimeField(null=True, blank=True)
    dismissed_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-last_seen_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["sync_user", "remote_id"], name="unfiledmessage_one_per_item"),
        ]

    def __str__(self) -> str:
        return f"e-mail “{self.subject}” of {self.sync_user} not filed"
