"""Administrator actions on the synchronizer's live state, shared by the console and the API.

Each takes ids and does one thing; the passes they lead to are enqueued through the runtime.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from synccore import runtime
from synccore.models import Conflict, ConflictChoice, Health, ItemLink, LinkState, SyncKind, SyncUser
from synccore.models.state import Outcome

# Link states an administrator is shown in “items needing attention”.
ATTENTION_LINK_STATES = (LinkState.FAILED, LinkState.SKIPPED, LinkState.HELD)
ATTENTION_HEALTH = (Health.UNHEALTHY, Health.HELD)
_KIND_OF_LINK = {"contact": SyncKind.CONTACTS, "company": SyncKind.CONTACTS, "activity": SyncKind.CALENDAR}


def re_enable_user(sync_user_id: int) -> SyncUser:
    """Put a user marked unhealthy (a permanent error) back into the schedule (S3)."""
    runtime.reenable(sync_user_id)
    return SyncUser.objects.get(pk=sync_user_id)


def confirm_deletions(sync_user_id: int) -> SyncUser:
    """Allow the next pass to delete beyond the safety limit, and run it (§5)."""
    runtime.confirm_deletions(sync_user_id)
    return SyncUser.objects.get(pk=sync_user_id)


def retry_item(link_id: int) -> ItemLink:
    """Retry a failed or skipped item now: a pass for its user and kind (held items: confirm)."""
    link = ItemLink.objects.select_related("sync_user").get(pk=link_id)
    if link.state == LinkState.HELD:
        confirm_deletions(link.sync_user_id)
    else:
        runtime.sync_now(
            link.environment_id, user_email=link.sync_user.mailbox_email, kind=_KIND_OF_LINK[link.kind].value
        )
    return link


def resolve_conflict(conflict_id: int, keep: str, resolved_by: str) -> Conflict:
    """Keep the CRM or the Exchange value of a conflicting field (K8).

    The kept value is written to the CRM record; the next calendar pass sees the CRM side differ
    from the last agreed snapshot and writes it to Exchange, as for any CRM edit.
    """
    keep = ConflictChoice(keep)
    with transaction.atomic():
        conflict = Conflict.objects.select_for_update().select_related("link").get(pk=conflict_id)
        record = conflict.link.crm_record
        value = conflict.crm_value if keep == ConflictChoice.CRM else conflict.exchange_value
        if record is not None and _is_plain_field(record, conflict.field):
            field = record._meta.get_field(conflict.field)
            setattr(record, field.attname, field.to_python(value))
            record.save()
        conflict.choice = keep
        conflict.resolved_at = timezone.now()
        conflict.resolved_by = resolved_by
        conflict.save(update_fields=["choice", "resolved_at", "resolved_by"])
    if conflict.link.activity_id:
        environment_id, activity_id = conflict.link.environment_id, conflict.link.activity_id
        transaction.on_commit(lambda: runtime.notify_crm_change(environment_id, [activity_id]))
    return conflict


def _is_plain_field(record, name: str) -> bool:
    try:
        field = record._meta.get_field(name)
    except Exception:  # FieldDoesNotExist: the conflict names an Exchange-only field
        return False
    return field.concrete and not field.is_relation and field.editable


def running_progress(environment_id: int) -> dict[int, tuple[int, int]]:
    """Progress (done, total) of the passes running now, per sync user id (S4)."""
    from synccore.models import SyncRun

    progress: dict[int, tuple[int, int]] = {}
    for run in SyncRun.objects.filter(environment_id=environment_id, outcome=Outcome.RUNNING):
        done, total = progress.get(run.sync_user_id, (0, 0))
        progress[run.sync_user_id] = (done + run.progress_done, total + run.progress_total)
    return progress


class UserStillActive(runtime.RuntimeServiceError):
    """Removing synchronized items from an active user's mailbox would be undone by the next pass."""


def remove_synchronized_items(sync_user_id: int) -> int:
    """C7: clean a deactivated user's mailbox of the contacts this product wrote; how many."""
    from synccore.sync.contacts import remove_synchronized_items as remove

    user = SyncUser.objects.get(pk=sync_user_id)
    if user.active:
        raise UserStillActive(f"Deactivate {user.mailbox_email} first: its next pass would write them again.")
    return remove(user.pk, confirm=True)
