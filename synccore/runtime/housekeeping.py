"""Housekeeping on the workers: rows past their retention go (a daily django-q2 schedule)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.apps import apps
from django.utils import timezone

from synccore.models import Decision, SyncRun
from synccore.models.crm import purge_tombstones_older_than
from synccore.runtime import alerts, config, queue


def prune(now: datetime | None = None) -> dict[str, int]:
    """Delete decisions, run rows, task results, audit entries and unlinked tombstones older than
    SYNC_RETENTION_DAYS."""
    cutoff = (now or timezone.now()) - timedelta(days=config.retention_days())
    removed = {
        # What passes decided (P2) goes with their runs, at the same age.
        "decisions": Decision.objects.filter(at__lt=cutoff).delete()[0],
        "runs": SyncRun.objects.filter(finished_at__lt=cutoff).delete()[0],
        "tasks": queue.delete_task_results(cutoff),
        "tombstones": purge_tombstones_older_than(cutoff),
    }
    # The audit log belongs to the console; prune it without importing the console.
    if apps.is_installed("syncadmin"):
        try:
            audit = apps.get_model("syncadmin", "AuditEntry")
        except LookupError:
            audit = None
        if audit is not None:
            removed["audit"] = audit.objects.filter(at__lt=cutoff).delete()[0]
    # Once a day for every environment, running or not: a client secret about to expire (O6).
    removed["alerts"] = alerts.observe_all()
    return removed
