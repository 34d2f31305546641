"""Moving a mailbox to another backend keeps every link (DESIGN §4, H2 and H3).

Item ids, folder ids and sync tokens are per protocol: an EWS ItemId means nothing to Microsoft
Graph and a Graph deltaLink nothing to EWS. So when a sync user's effective backend is no longer
the one its stored ids are in (``SyncUser.linked_backend``), the first pass after the change
finds each linked item again over the new protocol before the contact and calendar engines run:

- by the sync id written into every item we create (the named property ``CrmSyncId`` of our
  property set: an EWS extended property, the same Graph ``singleValueExtendedProperties`` id);
- by the meeting UID (``iCalUId``) for events: an invitee's copy and an imported meeting carry
  no sync id of ours;
- by what it holds, for a personal appointment imported from Outlook (no sync id of ours, no
  meeting UID kept): the one event of the calendar with the subject, start and end the link last
  agreed on, when exactly one matches and no other link claims it (``match_by_content``).

The old protocol's folder ids and tokens are dropped and the new folders taken; nothing is
created, updated, cancelled or sent by the move itself. A link whose item cannot be found is
left alone as ``NOT_FOUND`` and listed in "Needs attention" (never deleted, never re-created
until an administrator retries it: the contact and calendar engines skip such links).

``preview`` does the finding and writes nothing (H3); ``follow_backend`` runs before a pass.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from synccore import mapping
from synccore.mailbox.base import CalendarEvent, MailboxBackend, MailboxError, RemoteRef
from synccore.models import Environment, FolderState, ItemLink, LinkState, SyncKind, SyncSettings, SyncUser
from synccore.sync import events as ev
from synccore.sync.connection import open_backend

log = logging.getLogger(__name__)

CONTACT_KINDS = (mapping.CONTACT, mapping.COMPANY)


@dataclass
class Relinking:
    """What a move of one mailbox to ``backend`` finds: per link its item on the new protocol."""

    user: SyncUser
    backend: str
    found: list[tuple[ItemLink, RemoteRef]] = field(default_factory=list)
    not_found: list[ItemLink] = field(default_factory=list)
    contact_folders: dict[str, str] = field(default_factory=dict)  # folder name → new folder id
    calendar_folder: str = ""
    task_folder: str = ""
    error: str = ""  # the new backend could not be reached for this mailbox

    @property
    def links(self) -> int:
        return len(self.found) + len(self.not_found)

    def as_dict(self) -> dict[str, Any]:
        return {
            "user": self.user.mailbox_email,
            "from": self.user.linked_backend or self.user.effective_backend,
            "to": self.backend,
            "links": self.links,
            "found": len(self.found),
            "not_found": [describe(link) for link in self.not_found],
            **({"error": self.error} if self.error else {}),
        }


def describe(link: ItemLink) -> dict[str, Any]:
    """A link as a person recognises it (kind, CRM record, sync id)."""
    return {"id": link.pk, "kind": link.kind, "record": str(link.crm_record), "sync_id": str(link.sync_id)}


def needs_relink(user: SyncUser) -> bool:
    return bool(user.linked_backend) and user.linked_backend != user.effective_backend


def follow_backend(user: SyncUser, backend: MailboxBackend) -> Relinking | None:
    """Before a pass: relink a mailbox whose backend changed; note the protocol of a new one."""
    wanted = user.effective_backend
    if user.linked_backend == wanted:
        return None
    if not user.linked_backend:
        # Nothing stored under another protocol (a new user): its links will be made over this one.
        SyncUser.objects.filter(pk=user.pk).update(linked_backend=wanted)
        user.linked_backend = wanted
        return None
    relinking = find_links(user, backend, wanted)
    apply(relinking)
    return relinking


def preview(user: SyncUser, backend: MailboxBackend, to: str) -> Relinking:
    """What moving this mailbox to ``to`` would carry over; reads only (H3)."""
    if (user.linked_backend or user.effective_backend) == to:
        links = ItemLink.objects.filter(sync_user=user).exclude(remote_id="")
        return Relinking(user, to, found=[(link, RemoteRef(link.remote_id)) for link in links])
    return find_links(user, backend, to)


def find_links(user: SyncUser, backend: MailboxBackend, to: str) -> Relinking:
    """Find every linked item of the mailbox over ``backend``; reads, writes nothing anywhere."""
    relinking = Relinking(user, to)
    mailbox = user.mailbox_email
    links = list(
        ItemLink.objects.filter(sync_user=user)
        .exclude(remote_id="")
        .select_related("contact", "company", "activity")
        .order_by("pk")
    )
    states = list(FolderState.objects.filter(sync_user=user))
    contact_links = [link for link in links if link.kind in CONTACT_KINDS]
    event_links = [link for link in links if link.kind == mapping.ACTIVITY]

    contact_names = {s.folder_name for s in states if s.kind == SyncKind.CONTACTS}
    if contact_links or contact_names:
        present: dict[str, RemoteRef] = {}
        for name in sorted(contact_names or {""}):
            folder_id = backend.ensure_contact_folder(mailbox, name)
            relinking.contact_folders[name] = folder_id
            for sync_id, ref in backend.list_synced_items(mailbox, folder_id).items():
                present.setdefault(sync_id, RemoteRef(ref.item_id, ref.change_key, ref.folder_id or folder_id))
        for link in contact_links:
            _place(relinking, link, present.get(str(link.sync_id)))

    has_calendar_state = any(s.kind == SyncKind.CALENDAR for s in states)
    if event_links or has_calendar_state:
        relinking.calendar_folder = backend.ensure_calendar_folder(mailbox)
        uids = [link.activity.meeting_uid for link in event_links if link.activity.meeting_uid]
        by_sync, by_uid = backend.find_events(
            mailbox, relinking.calendar_folder, [str(link.sync_id) for link in event_links], uids
        )
        unfound = []
        for link in event_links:
            ref = by_sync.get(str(link.sync_id)) or by_uid.get(link.activity.meeting_uid or "\0")
            if ref is not None and not ref.folder_id:
                ref = RemoteRef(ref.item_id, ref.change_key, relinking.calendar_folder)
            if ref is None and not link.activity.meeting_uid and link.snapshot.get("start"):
                unfound.append(link)
            else:
                _place(relinking, link, ref)
        claimed = {ref.item_id for _, ref in relinking.found}
        matched = match_by_content(backend, mailbox, relinking.calendar_folder, unfound, claimed)
        for link in unfound:
            _place(relinking, link, matched.get(link.pk))
    task_links = [link for link in links if link.kind == mapping.TASK]
    if task_links or any(s.kind == SyncKind.TASKS for s in states):
        # Tasks are found by their sync id alone: one imported from Outlook carries none, and
        # an EWS-written sync id (an extended property) is invisible to To Do (docs/architecture.md).
        relinking.task_folder = backend.ensure_task_folder(mailbox)
        by_sync = backend.find_tasks_by_sync_ids(
            mailbox, relinking.task_folder, [str(link.sync_id) for link in task_links]
        ) if task_links else {}
        for link in task_links:
            ref = by_sync.get(str(link.sync_id))
            if ref is not None and not ref.folder_id:
                ref = RemoteRef(ref.item_id, ref.change_key, relinking.task_folder)
            _place(relinking, link, ref)
    return relinking


def match_by_content(
    backend: MailboxBackend, mailbox: str, folder_id: str, links: list[ItemLink], claimed: set[str]
) -> dict[int, RemoteRef]:
    """Personal appointments imported from Outlook, found by the subject, start and end their
    links last agreed on: one read of the calendar over the days they span; a key two events or
    two links share is left unmatched (never a guess)."""
    if not links:
        return {}
    moments = [ev.moment(value) for link in links for value in (link.snapshot["start"], link.snapshot.get("end") or link.snapshot["start"])]
    refs = backend.calendar_slice(mailbox, folder_id, min(moments) - timedelta(days=1), max(moments) + timedelta(days=1))
    refs = [ref for ref in refs if ref.item_id not in claimed]
    by_key: dict[tuple, list[RemoteRef]] = {}
    for start in range(0, len(refs), 100):
        batch = refs[start : start + 100]
        for ref, event in zip(batch, backend.get_events(mailbox, batch), strict=True):
            if isinstance(event, CalendarEvent) and not event.is_meeting:
                values = ev.event_values(event, False, False, mailbox.lower())
                found = RemoteRef(ref.item_id, event.ref.change_key if event.ref else ref.change_key, folder_id)
                by_key.setdefault(ev.content_key(values), []).append(found)
    wanted: dict[tuple, list[ItemLink]] = {}
    for link in links:
        wanted.setdefault(ev.content_key(link.snapshot), []).append(link)
    return {
        group[0].pk: by_key[key][0]
        for key, group in wanted.items()
        if len(group) == 1 and len(by_key.get(key, [])) == 1
    }


def _place(relinking: Relinking, link: ItemLink, ref: RemoteRef | None) -> None:
    if ref is None:
        relinking.not_found.append(link)
    else:
        relinking.found.append((link, ref))


def apply(relinking: Relinking) -> None:
    """Write what was found: the links' new ids, the new folders, the old tokens dropped."""
    user, now = relinking.user, timezone.now()
    moved_from = user.linked_backend or "another backend"
    with transaction.atomic():
        for link, ref in relinking.found:
            link.remote_id, link.remote_folder_id = ref.item_id, ref.folder_id or link.remote_folder_id
            # The old change key is kept (Exchange gives an item the same one over both
            # protocols): the next pass reads the folder afresh, without a token, and looks at
            # what changed since its last pass only.
            if link.retired_remote_id:
                log.warning("%s: the old series of %s is left as it is after the move", user, link)
                link.retired_remote_id = ""
            link.save(
                update_fields=[
                    "remote_id",
                    "remote_folder_id",
                    "retired_remote_id",
                    "updated_at",
                ]
            )
        for link in relinking.not_found:
            note = (
                f"Not found in {user.mailbox_email} over {relinking.backend} after the move from "
                f"{moved_from}: left as it is. Retry re-creates it."
            )
            link.state = LinkState.NOT_FOUND
            link.remote_id, link.remote_change_key = "", ""
            link.last_error, link.last_error_at = note, now
            link.save(
                update_fields=[
                    "state",
                    "remote_id",
                    "remote_change_key",
                    "last_error",
                    "last_error_at",
                    "updated_at",
                ]
            )
        for state in FolderState.objects.filter(sync_user=user).select_for_update():
            # The old protocol's token is dropped: the next pass reads the folder from the start
            # and finds every linked item unchanged unless it was edited since.
            if state.kind == SyncKind.CONTACTS:
                state.remote_folder_id = relinking.contact_folders.get(state.folder_name, "")
            elif state.kind == SyncKind.CALENDAR:
                state.remote_folder_id = relinking.calendar_folder
            elif state.kind == SyncKind.TASKS:
                state.remote_folder_id = relinking.task_folder
            else:
                state.remote_folder_id = ""  # another kind's folder is looked up again by its pass
            state.sync_token, state.pending_changes = "", []  # the old protocol's ids
            state.save(update_fields=["remote_folder_id", "sync_token", "pending_changes", "updated_at"])
        SyncUser.objects.filter(pk=user.pk).update(linked_backend=relinking.backend, updated_at=now)
    user.linked_backend = relinking.backend
    log.info(
        "%s moved to %s: %d links carried over, %d not found",
        user.mailbox_email,
        relinking.backend,
        len(relinking.found),
        len(relinking.not_found),
    )


# --- Switching a backend (H3: the preview, then the change) -----------------------------------


def target_users(environment: Environment, user_email: str | None) -> list[SyncUser]:
    users = SyncUser.objects.filter(environment=environment).select_related("environment__settings", "employee")
    if user_email:
        users = users.filter(mailbox_email__iexact=user_email)
        if not users:
            raise LookupError(f"{user_email} is not a sync user of {environment.name}.")
        return list(users)
    return list(users.filter(active=True))


def plan_switch(environment: Environment, to: str, user_email: str | None = None) -> list[Relinking]:
    """Per mailbox, what a move to ``to`` would carry over and what it could not find. Reads the
    mailboxes over the new backend; writes nothing anywhere."""
    out = []
    for user in target_users(environment, user_email):
        try:
            backend = open_backend(environment.settings, to)
        except MailboxError as exc:
            out.append(Relinking(user, to, error=str(exc)))
            continue
        try:
            out.append(preview(user, backend, to))
        except MailboxError as exc:
            out.append(Relinking(user, to, error=str(exc)))
        finally:
            backend.close()
    return out


def make_switch(environment: Environment, to: str, user_email: str | None = None) -> None:
    """Move one mailbox (its own backend) or the whole environment (its backend, every mailbox
    following it). The links are found again by each mailbox's next pass (``follow_backend``)."""
    with transaction.atomic():
        if user_email:
            SyncUser.objects.filter(environment=environment, mailbox_email__iexact=user_email).update(
                backend=to, updated_at=timezone.now()
            )
            return
        SyncSettings.objects.filter(pk=environment.settings.pk).update(backend=to, updated_at=timezone.now())
        SyncUser.objects.filter(environment=environment).exclude(backend="").update(
            backend="", updated_at=timezone.now()
        )


def switch_report(relinkings: list[Relinking], dry_run: bool) -> dict[str, Any]:
    """The pinned summary: ``users``, ``links``, ``found``, ``not_found``, ``dry_run``."""
    return {
        "users": [r.as_dict() for r in relinkings],
        "links": sum(r.links for r in relinkings),
        "found": sum(len(r.found) for r in relinkings),
        "not_found": sum(len(r.not_found) for r in relinkings),
        "dry_run": dry_run,
    }
