"""The drift audit (issue 16, finding 9): items the product wrote that Exchange lost without a word.

A mailbox restored from an older backup, or reset, loses items while its change feed reports no
deletion, so incremental passes never notice. The audit compares, per kind, the ids of the items
linked as synchronized with what the mailbox holds (one cheap look per folder: the items carrying
our sync ids, or the presence of the calendar's linked items), leaves out what the change feed
reports deleted (a person's deletion, for the next pass to handle by its rules), and marks each
item that is missing anyway: its link is "failed" with the reason, so it shows in "Needs
attention", and loses its remote id, so the next pass writes it again (found by its sync id first,
never twice). Past calendar items are not written again (K2), so they are not audited.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.utils import timezone

from synccore import mapping
from synccore.mailbox.base import MailboxBackend
from synccore.models import (
    FolderState,
    ItemLink,
    LinkState,
    SyncDirection,
    SyncKind,
    SyncUser,
    TaskStatus,
)
from synccore.sync.calendar_plan import CalendarScope
from synccore.sync.connection import open_user_backend
from synccore.sync.service import kind_enabled

log = logging.getLogger(__name__)

LOST = (
    "Missing from the mailbox: the drift audit of {when:%Y-%m-%d %H:%M} UTC did not find it there, and "
    "Exchange reported no deletion (a restore or a reset?). The next pass writes it again."
)


@dataclass
class Drift:
    """One kind's audit: how many linked items were checked, and the links found missing."""

    kind: str
    checked: int = 0
    missing: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, int | str]:
        return {"kind": self.kind, "checked": self.checked, "missing": len(self.missing)}


def audit_mailbox(user: SyncUser, backend: MailboxBackend | None = None) -> list[Drift]:
    """Audit each kind the user synchronizes; marks what is missing. Raises MailboxError when
    the mailbox cannot be read (the audit is then simply tried again next time)."""
    own = backend is None
    backend = backend or open_user_backend(user)
    try:
        found = []
        if kind_enabled(user, SyncKind.CONTACTS):
            found.append(_audit_contacts(user, backend))
        if kind_enabled(user, SyncKind.CALENDAR):
            found.append(_audit_calendar(user, backend))
        if kind_enabled(user, SyncKind.TASKS):
            found.append(_audit_tasks(user, backend))
        return found
    finally:
        if own:
            backend.close()


def _synced_links(user: SyncUser, kinds: tuple[str, ...]):
    return ItemLink.objects.filter(sync_user=user, kind__in=kinds, state=LinkState.SYNCED).exclude(
        remote_id=""
    )


def _audit_contacts(user: SyncUser, backend: MailboxBackend) -> Drift:
    drift = Drift(SyncKind.CONTACTS)
    links = list(_synced_links(user, (mapping.CONTACT, mapping.COMPANY)).exclude(remote_folder_id=""))
    drift.checked = len(links)
    tokens = dict(
        FolderState.objects.filter(sync_user=user, kind=SyncKind.CONTACTS).values_list(
            "remote_folder_id", "sync_token"
        )
    )
    for folder_id in sorted({link.remote_folder_id for link in links}):
        present = backend.list_synced_items(user.mailbox_email, folder_id)
        in_folder = [link for link in links if link.remote_folder_id == folder_id]
        absent = [link for link in in_folder if str(link.sync_id) not in present]
        if absent and tokens.get(folder_id):
            deleted = set(backend.contact_changes(user.mailbox_email, folder_id, tokens[folder_id]).deleted)
            absent = [link for link in absent if link.remote_id not in deleted]
        drift.missing += _mark_lost(absent)
    return drift


def _audit_calendar(user: SyncUser, backend: MailboxBackend) -> Drift:
    """The linked items of the activities this mailbox carries now, in the window: those the
    next pass would write again (a past one is never written again, K2)."""
    drift = Drift(SyncKind.CALENDAR)
    state = FolderState.objects.filter(sync_user=user, kind=SyncKind.CALENDAR, folder_name="").first()
    if state is None or not state.remote_folder_id:
        return drift
    scope = CalendarScope(user)
    mine = scope.my_activities()
    links = [
        link
        for link in _synced_links(user, (mapping.ACTIVITY,)).filter(retired_remote_id="")
        if link.activity_id in mine and scope.activity_in_window(mine[link.activity_id][0])
    ]
    drift.checked = len(links)
    present = backend.calendar_present(
        user.mailbox_email, state.remote_folder_id, [link.remote_id for link in links]
    )
    absent = [link for link in links if link.remote_id not in present]
    if absent and state.sync_token:
        page = backend.calendar_changes(user.mailbox_email, state.remote_folder_id, state.sync_token)
        absent = [link for link in absent if link.remote_id not in set(page.deleted)]
    drift.missing = _mark_lost(absent)
    return drift


def _audit_tasks(user: SyncUser, backend: MailboxBackend) -> Drift:
    """The linked open tasks of live activities, while the CRM's tasks reach the mailbox: those
    the next pass would write again (T1)."""
    drift = Drift(SyncKind.TASKS)
    state = FolderState.objects.filter(sync_user=user, kind=SyncKind.TASKS, folder_name="").first()
    pushes = user.environment.settings.tasks_direction in (SyncDirection.BOTH, SyncDirection.CRM_TO_MAILBOX)
    if state is None or not state.remote_folder_id or not pushes:
        return drift
    links = [
        link
        for link in _synced_links(user, (mapping.TASK,)).select_related("activity")
        if not link.activity.is_tombstone and link.activity.status != TaskStatus.COMPLETED
    ]
    drift.checked = len(links)
    present = backend.find_tasks_by_sync_ids(
        user.mailbox_email, state.remote_folder_id, [str(link.sync_id) for link in links]
    )
    absent = [link for link in links if str(link.sync_id) not in present]
    if absent and state.sync_token:
        page = backend.task_changes(user.mailbox_email, state.remote_folder_id, state.sync_token)
        absent = [link for link in absent if link.remote_id not in set(page.deleted)]
    drift.missing = _mark_lost(absent)
    return drift


def _mark_lost(links: list[ItemLink]) -> list[int]:
    if not links:
        return []
    now = timezone.now()
    ids = [link.pk for link in links]
    ItemLink.objects.filter(pk__in=ids, state=LinkState.SYNCED).update(
        state=LinkState.FAILED,
        remote_id="",
        remote_change_key="",
        last_error=LOST.format(when=now),
        last_error_at=now,
        updated_at=now,
    )
    return ids
