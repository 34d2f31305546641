"""One calendar pass for one sync user, both directions (rules K1–K16, DESIGN §4 and §5).

Per pass: read what changed in the mailbox's calendar since the folder token (plus the slice of
the horizon that came into the window since yesterday, K15), select the CRM activities this
mailbox carries (K1, K3), then decide per item with the decision table: create, adopt, import,
ignore an invitee copy, make the stub, push, pull, three-way merge, delete or cancel.

A link's snapshot holds the normal form (``events.py``) last agreed on both sides; a side has
changed only where its normal form differs from the snapshot, so moved change keys, HTML
bodies and our own writes never come back as changes (K8: no ping-pong).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from synccore import mapping
from synccore.mailbox.base import (
    PATTERN_FIELDS,
    CalendarEvent,
    InvalidItem,
    InvalidSyncToken,
    ItemNotFound,
    ItemResult,
    MailboxBackend,
    MailboxError,
    Occurrence,
    RemoteRef,
    Series,
)
from synccore.mailbox.base import (
    Attendee as EventAttendee,
)
from synccore.models import (
    Activity,
    ActivityType,
    Attendee,
    AttendeeType,
    Conflict,
    ConflictChoice,
    ConflictPolicy,
    Contact,
    Employee,
    FolderState,
    ItemLink,
    LinkState,
    PersonalDeletionPolicy,
    SyncKind,
    SyncRun,
    SyncUser,
)
from synccore.sync import events as ev
from synccore.sync.runs import PassContext, execute_pass

log = logging.getLogger(__name__)

CALENDAR_TYPES = (ActivityType.CALL, ActivityType.APPOINTMENT)
FOREVER = datetime.max.replace(tzinfo=UTC)
# Normal-form fields that give a series its shape (Exchange drops exceptions when they change).
SHAPE = {"start", "end", "all_day", "recurrence", "occurrences"}
LINK_FIELDS = [
    "remote_id",
    "remote_change_key",
    "remote_folder_id",
    "crm_hash",
    "remote_hash",
    "snapshot",
    "state",
    "last_error",
    "last_error_at",
    "synced_at",
    "updated_at",
]


class CalendarSyncDisabled(Exception):
    pass


@dataclass
class Target:
    """How one activity is written into this user's mailbox (K3)."""

    invitations: bool  # the user organizes: attendees are written and Exchange sends invitations
    attendees: list[EventAttendee] = field(default_factory=list)
    with_comment: bool = True


def _attendee_emails(target: Target) -> list[str] | None:
    return sorted({a.email for a in target.attendees}) if target.invitations else None


class CalendarPass:
    def __init__(self, user: SyncUser, backend: MailboxBackend, ctx: PassContext, run: SyncRun) -> None:
        self.user = user
        self.env = user.environment
        self.settings = self.env.settings
        self.backend = backend
        self.ctx = ctx
        self.run = run
        self.mailbox = user.mailbox_email
        self.me = user.mailbox_email.lower()
        self.now = timezone.now()
        horizon_day = self.now.astimezone(UTC).date() + timedelta(
            days=self.settings.calendar_horizon_days + 1
        )
        # The horizon moves once a day, so each day's new slice is read once (K15).
        self.horizon_end = datetime.combine(horizon_day, time.min, UTC)
        self.sync_users = {
            u.mailbox_email.lower(): u
            for u in SyncUser.objects.filter(
                environment=self.env, active=True, calendar_enabled=True
            ).select_related("employee")
        }
        self.domains = self.settings.organisation_domains()
        self.creates: list[tuple[Activity, Target, ItemLink]] = []

    # --- CRM side ---------------------------------------------------------------------------

    def organizer_of(self, activity: Activity) -> str:
        if activity.organizer_id and activity.organizer and activity.organizer.email:
            return activity.organizer.email.lower()
        if activity.organizer_email:
            return activity.organizer_email.lower()
        for attendee in activity.attendees.all():
            if attendee.meeting_organizer and attendee.email:
                return attendee.email.lower()
        return ""

    def target_for_me(self, activity: Activity) -> Target | None:
        """K3: the organizer's mailbox with invitations, or each invited sync user's own copy."""
        if activity.is_stub or not activity.synchronize or activity.type not in CALENDAR_TYPES:
            return None
        organizer = self.organizer_of(activity)
        invited = [
            a for a in activity.attendees.all() if a.invite and a.email and a.email.lower() != organizer
        ]
        if organizer in self.sync_users:
            if organizer != self.me:
                return None
            attendees = [EventAttendee(email=a.email.lower(), name=a.name) for a in invited]
            external = any(a.email.split("@")[-1] not in self.domains for a in attendees)
            with_comment = not external or self.settings.comment_to_external_attendees
            return Target(invitations=True, attendees=attendees, with_comment=with_comment)
        if any(a.email.lower() == self.me for a in invited):
            return Target(invitations=False)
        return None

    def my_activities(self) -> dict[int, tuple[Activity, Target]]:
        mine = (
            Q(organizer__email__iexact=self.me)
            | Q(organizer_email__iexact=self.me)
            | Q(attendees__email__iexact=self.me)
        )
        candidates = (
            Activity.objects.filter(
                environment=self.env, type__in=CALENDAR_TYPES, synchronize=True, is_stub=False
            )
            .filter(pk__in=Activity.objects.filter(mine).values("pk"))
            .select_related("organizer")
            .prefetch_related("attendees")
        )
        out = {}
        for activity in candidates:
            target = self.target_for_me(activity)
            if target is not None:
                out[activity.pk] = (activity, target)
        return out

    def activity_in_window(self, activity: Activity) -> bool:
        return ev.in_window(
            activity.start, activity.end, activity.recurrence, self.now, self.horizon_end, activity.time_zone
        )

    def activity_over(self, activity: Activity) -> bool:
        """Over, whatever the horizon: a linked item is kept in step until then (K2); the horizon
        only limits which new items are created and imported (K15)."""
        return not ev.in_window(activity.start, activity.end, activity.recurrence, self.now, FOREVER, activity.time_zone)

    def crm_values(self, activity: Activity, target: Target, link: ItemLink | None = None) -> dict[str, Any]:
        series_from = link.series_from if link is not None else None
        return ev.activity_values(activity, _attendee_emails(target), target.with_comment, series_from)

    # --- Exchange side ----------------------------------------------------------------------

    def event_in_window(self, event: CalendarEvent) -> bool:
        return ev.in_window(
            event.start, event.end, event.recurrence, self.now, self.horizon_end, event.time_zone
        )

    def event_over(self, event: CalendarEvent) -> bool:
        return not ev.in_window(event.start, event.end, event.recurrence, self.now, FOREVER, event.time_zone)

    def remote_values(self, event: CalendarEvent, target: Target) -> dict[str, Any]:
        return ev.event_values(event, target.invitations, target.with_comment, self.me)

    def read_changes(
        self, state: FolderState, links_by_remote: dict[str, ItemLink]
    ) -> tuple[list[RemoteRef], set[str]]:
        """Changed refs worth reading (not our own writes) and ids deleted, since the token."""
        try:
            page = self.backend.calendar_changes(self.mailbox, state.remote_folder_id, state.sync_token)
        except InvalidSyncToken:
            log.warning("calendar sync token of %s rejected; reading the folder again", self.mailbox)
            page = self.backend.calendar_changes(self.mailbox, state.remote_folder_id, "")
            known = {ref.item_id for ref in page.changed}
            state.sync_token = page.token
            # A first read may cover only the window (Graph): what it lacks is looked up, and only
            # what is no longer in the calendar is gone.
            missing = [i for i in links_by_remote if i not in known]
            present = self.backend.calendar_present(self.mailbox, state.remote_folder_id, missing)
            changed = list(page.changed)
            changed += [RemoteRef(i, key, state.remote_folder_id) for i, key in present.items()]
            return changed, set(missing) - present.keys()
        state.sync_token = page.token
        changed = [
            ref
            for ref in page.changed
            if ref.item_id not in links_by_remote
            or links_by_remote[ref.item_id].remote_change_key != ref.change_key
        ]
        return changed, set(page.deleted)

    # --- The pass ---------------------------------------------------------------------------

    def execute(self) -> bool:
        state, _ = FolderState.objects.get_or_create(
            sync_user=self.user, kind=SyncKind.CALENDAR, folder_name=""
        )
        if not state.remote_folder_id:
            state.remote_folder_id = self.backend.ensure_calendar_folder(self.mailbox)
            state.sync_token, state.window_end = "", None
        self.folder_id = state.remote_folder_id
        links = list(
            ItemLink.objects.filter(sync_user=self.user, kind=mapping.ACTIVITY)
            .select_related("activity__organizer")
            .prefetch_related("activity__attendees")
        )
        links_by_remote = {link.remote_id: link for link in links if link.remote_id}
        links_by_activity = {link.activity_id: link for link in links}

        changed_refs, deleted_ids = self.read_changes(state, links_by_remote)
        if state.window_end and state.window_end < self.horizon_end:
            fresh = self.backend.calendar_slice(
                self.mailbox, state.remote_folder_id, state.window_end, self.horizon_end
            )
            seen = {ref.item_id for ref in changed_refs}
            changed_refs += [
                ref for ref in fresh if ref.item_id not in seen and ref.item_id not in links_by_remote
            ]
        state.window_end = self.horizon_end

        remote: dict[str, CalendarEvent] = {}
        for start in range(0, len(changed_refs), max(1, self.settings.batch_size)):
            batch = changed_refs[start : start + self.settings.batch_size]
            for ref, event in zip(batch, self.backend.get_events(self.mailbox, batch), strict=True):
                if isinstance(event, ItemNotFound):
                    deleted_ids.add(ref.item_id)
                elif isinstance(event, InvalidItem):
                    self.unreadable(links_by_remote.get(ref.item_id), event)
                elif isinstance(event, MailboxError):
                    log.warning("could not read %s in %s: %s", ref.item_id, self.mailbox, event)
                else:
                    remote[ref.item_id] = event

        self.wrote = False
        mine = self.my_activities()
        held = self.plan_and_write(
            state, links, links_by_remote, links_by_activity, mine, remote, deleted_ids
        )
        if self.wrote:
            self.absorb_own_writes(state)
        state.save()
        return not held

    def unreadable(self, link: ItemLink | None, error: InvalidItem) -> None:
        """An Exchange item the product cannot read faithfully (e.g. an unknown time zone): an
        item error on its link, or on the run for an item not linked yet; never a shifted copy."""
        if link is not None:
            self.item_failed(link, error)
            return
        log.warning("skipped an event of %s: %s", self.mailbox, error)
        self.run.skipped += 1
        note = f"Skipped: {error}"
        if note not in self.run.error:
            self.run.error = f"{self.run.error}\n{note}".strip()

    def plan_and_write(
        self, state, links, links_by_remote, links_by_activity, mine, remote, deleted_ids
    ) -> bool:
        deletes: list[tuple[ItemLink, bool]] = []
        handled_links: set[int] = set()

        # Exchange → CRM for items we know nothing of (K6, K7), and adoption by sync id.
        pending_by_sync_id = {str(link.sync_id): link for link in links if not link.remote_id}
        for item_id, event in remote.items():
            if item_id in links_by_remote:
                continue
            link = pending_by_sync_id.get(event.sync_id) if event.sync_id else None
            if link is not None:  # a create whose link was lost in a crash: adopt it
                link.remote_id, link.remote_change_key, link.remote_folder_id = (
                    event.ref.item_id,
                    event.ref.change_key,
                    event.ref.folder_id,
                )
                links_by_remote[item_id] = link
                continue
            if not self.event_in_window(event):
                continue
            self.foreign_event(event, links_by_activity)

        # Linked items: the decision table.
        for link in links:
            self.ctx.checkpoint()
            handled_links.add(link.pk)
            try:
                self.decide(link, mine.get(link.activity_id), remote, deleted_ids, deletes)
            except InvalidItem as exc:  # bad input on this item (e.g. an unknown time zone)
                self.item_failed(link, exc)

        # CRM → Exchange for activities of mine without a link (K3).
        for activity_id, (activity, target) in mine.items():
            if activity_id in links_by_activity or not self.activity_in_window(activity):
                continue
            self.create(activity, target, None)

        self.write_creates()
        return self.write_deletes(deletes, links)

    def decide(
        self,
        link: ItemLink,
        entry: tuple[Activity, Target] | None,
        remote: dict[str, CalendarEvent],
        deleted_ids: set[str],
        deletes: list[tuple[ItemLink, bool]],
    ) -> None:
        """One linked item through the decision table."""
        activity = link.activity
        if link.retired_remote_id and not self.end_retired(link):
            return
        if activity.is_stub:
            self.stub_copy(link, remote.get(link.remote_id), link.remote_id in deleted_ids)
            return
        if link.state == LinkState.DELETED_REMOTE:
            return  # kept under the deletion policy; not re-created (K16)
        if not link.remote_id:
            if entry and self.activity_in_window(activity):
                self.create(activity, entry[1], link)
            return
        event = remote.get(link.remote_id)
        gone = link.remote_id in deleted_ids
        if entry is None or activity.is_tombstone:
            if self.activity_over(activity):
                if activity.is_tombstone:
                    link.delete()  # K2: its event is over and stays; the tombstone may be purged
                return  # K2: the past is never touched
            if (
                event is not None
                and activity.is_tombstone
                and self.changed_remotely(link, event, activity)
            ):
                self.restore(activity)  # an edit beats a delete: the activity is back, with the edit
                target = self.target_for_me(activity)
                if target is not None:
                    self.compare(link, activity, target, event)
                return
            if gone:
                link.delete()
                return
            organizer_copy = bool(link.snapshot.get("attendees"))
            deletes.append((link, organizer_copy))
            return
        target = entry[1]
        if self.activity_over(activity) and (event is None or self.event_over(event)):
            return  # K2
        if gone:
            self.deleted_in_exchange(link, activity, target)
            return
        self.compare(link, activity, target, event)

    # --- Decisions --------------------------------------------------------------------------

    def differs(self, name: str, old: Any, new: Any, values: dict[str, Any]) -> bool:
        """Whether a field moved from ``old`` (the snapshot) to ``new``; for a series' exceptions
        only the occurrences not yet over count (K2)."""
        if name != "occurrences":
            return old != new
        duration = ev.duration_of(values)
        old = {} if old is _MISSING else old
        return ev.future(old, self.now, duration) != ev.future(new, self.now, duration)

    def changed_fields(self, snapshot: dict[str, Any], values: dict[str, Any]) -> set[str]:
        return {k for k, v in values.items() if self.differs(k, snapshot.get(k, _MISSING), v, values)}

    def changed_remotely(self, link: ItemLink, event: CalendarEvent, activity: Activity) -> bool:
        target = Target(invitations="attendees" in link.snapshot, with_comment="comment" in link.snapshot)
        values = self.remote_values(event, target)
        return any(self.differs(k, v, values.get(k), values) for k, v in link.snapshot.items())

    def compare(
        self, link: ItemLink, activity: Activity, target: Target, event: CalendarEvent | None
    ) -> None:
        target = self.attendees_first(link, activity, target, event)
        crm = self.crm_values(activity, target, link)
        snapshot = link.snapshot or {}
        crm_changed = self.changed_fields(snapshot, crm)
        # K12: a comment written before outside attendees joined must leave the body now.
        withdraw = "comment" not in crm and "comment" in snapshot
        if event is None and not crm_changed and not withdraw:
            return  # nothing moved on either side
        ex = self.remote_values(event, target) if event is not None else {}
        ex_changed = {k for k in self.changed_fields(snapshot, ex) if k in crm}
        if snapshot and "comment" not in snapshot:
            # The comment was kept out of Exchange (K12): its body is no source for it.
            ex_changed.discard("comment")
        if event is not None and not ex_changed and not crm_changed and not withdraw:
            self.agree(link, crm, event.ref)  # a change key that moved without a real edit
            ItemLink.objects.filter(pk=link.pk).update(
                remote_change_key=event.ref.change_key, updated_at=self.now
            )
            return
        push = set(crm_changed - ex_changed) | ({"comment"} if withdraw else set())
        pull = set(ex_changed - crm_changed)
        occurrences = ex.get("occurrences")
        for name in crm_changed & ex_changed:
            if name == "occurrences":
                occurrences = self.merge_occurrences(link, activity, target, event, snapshot, crm, ex)
                if self.differs(name, crm[name], occurrences, crm):
                    pull.add(name)
                if self.differs(name, ex[name], occurrences, ex):
                    push.add(name)
                continue
            if crm[name] == ex[name]:
                continue
            choice = self.resolve(activity, event)
            (push if choice == ConflictChoice.CRM else pull).add(name)
            self.conflict(link, name, crm[name], ex[name], choice)
        if link.series_from and pull & SHAPE:
            # The CRM takes the Exchange series' shape whole: it no longer holds only a part of it.
            pull |= SHAPE & set(ex)
            push -= pull
            link.series_from = None
        merged = {k: ex[k] if k in pull else crm[k] for k in crm}
        if pull:
            self.pull(activity, event, pull, target, occurrences)
            if "attendees" in pull:
                # Who is invited decides what is written (K3, K12): ask again after the pull.
                getattr(activity, "_prefetched_objects_cache", {}).pop("attendees", None)
                target = self.target_for_me(activity) or target
        if push:
            self.push(link, activity, target, push, event)
        else:
            self.agree(
                link,
                merged,
                event.ref
                if event
                else RemoteRef(link.remote_id, link.remote_change_key, link.remote_folder_id),
            )
            link.save()

    def attendees_first(
        self, link: ItemLink, activity: Activity, target: Target, event: CalendarEvent | None
    ) -> Target:
        """Who is invited decides how the rest is written (K3, K12: the comment stays out of the
        body while outside attendees are invited): attendees changed in Outlook only are taken
        first, and the rest is decided with the attendee list that results."""
        snapshot = link.snapshot or {}
        if event is None or not target.invitations or "attendees" not in snapshot:
            return target
        theirs = self.remote_values(event, target).get("attendees")
        ours = self.crm_values(activity, target, link).get("attendees")
        if theirs == snapshot["attendees"] or ours != snapshot["attendees"]:
            return target
        self.pull_attendees(activity, event)
        self.run.updated += 1
        getattr(activity, "_prefetched_objects_cache", {}).pop("attendees", None)
        return self.target_for_me(activity) or target

    def conflict(self, link: ItemLink, name: str, crm_value: Any, exchange_value: Any, choice: str) -> None:
        Conflict.objects.create(
            link=link,
            run=self.run,
            field=name,
            crm_value=crm_value,
            exchange_value=exchange_value,
            choice=choice,
        )
        self.run.conflicts += 1

    def merge_occurrences(
        self,
        link: ItemLink,
        activity: Activity,
        target: Target,
        event: CalendarEvent,
        snapshot: dict[str, Any],
        crm: dict[str, Any],
        ex: dict[str, Any],
    ) -> dict[str, Any]:
        """Both sides changed a series' exceptions: merged occurrence by occurrence (K8, K10). An
        occurrence changed on both sides follows the conflict policy, except that an edit beats a
        delete — unless the delete is the organizer's cancellation of a meeting occurrence."""
        duration = ev.duration_of(crm)
        old = ev.future(snapshot.get("occurrences") or {}, self.now, duration)
        ours = ev.future(crm["occurrences"], self.now, duration)
        theirs = ev.future(ex["occurrences"], self.now, duration)
        organizer_meeting = target.invitations and bool(target.attendees)
        merged: dict[str, Any] = {}
        for key in sorted({*old, *ours, *theirs}):
            before, mine, other = old.get(key), ours.get(key), theirs.get(key)
            if mine in (before, other):
                value = other
            elif other == before:
                value = mine
            else:
                if ev.DELETED in (mine, other) and None not in (mine, other):
                    cancelled = other == ev.DELETED and organizer_meeting
                    value = ev.DELETED if cancelled else (mine if other == ev.DELETED else other)
                    choice = ConflictChoice.EXCHANGE if value == other else ConflictChoice.CRM
                else:
                    choice = self.resolve(activity, event)
                    value = mine if choice == ConflictChoice.CRM else other
                self.conflict(link, f"occurrences {key}", mine, other, choice)
            if value is not None:
                merged[key] = value
        return merged

    def resolve(self, activity: Activity, event: CalendarEvent) -> str:
        policy = self.settings.conflict_policy
        if policy == ConflictPolicy.CRM_WINS:
            return ConflictChoice.CRM
        if policy == ConflictPolicy.EXCHANGE_WINS:
            return ConflictChoice.EXCHANGE
        remote_time = event.last_modified or self.now
        return ConflictChoice.CRM if activity.updated_at >= remote_time else ConflictChoice.EXCHANGE

    def agree(self, link: ItemLink, values: dict[str, Any], ref: RemoteRef) -> None:
        link.snapshot = values
        link.remote_id, link.remote_change_key = ref.item_id, ref.change_key
        link.remote_folder_id = ref.folder_id or link.remote_folder_id
        link.state, link.last_error, link.last_error_at, link.synced_at = LinkState.SYNCED, "", None, self.now

    def event_for(
        self, activity: Activity, target: Target, body_now: str = "", link: ItemLink | None = None
    ) -> CalendarEvent:
        return ev.event_from_activity(
            activity,
            attendees=target.attendees if target.invitations else [],
            comment=ev.body_text(activity.comment) if target.with_comment else None,
            body_now=body_now,
            reminder=ev.default_reminder(activity, self.settings),
            series_from=link.series_from if link is not None else None,
        )

    def create(self, activity: Activity, target: Target, link: ItemLink | None) -> None:
        """Queue a create: its link is committed now (pending, with the sync id the item will
        carry), the item is written with the others in batches at the end of the pass."""
        if link is None:
            link = ItemLink.objects.create(
                environment=self.env,
                sync_user=self.user,
                kind=mapping.ACTIVITY,
                activity=activity,
                state=LinkState.PENDING,
            )
        elif link.remote_id or link.state != LinkState.PENDING:
            # Written again (an edit beat a delete, the item vanished): pending before the write,
            # so a crash right after it finds the new item by its sync id (no duplicate).
            link.remote_id = link.remote_change_key = ""
            link.state = LinkState.PENDING
            ItemLink.objects.filter(pk=link.pk).update(
                remote_id="", remote_change_key="", state=LinkState.PENDING, updated_at=self.now
            )
        # K2: a series that began in the past is written (or written again) from its present
        # occurrence on: nothing that is over is created.
        if activity.recurrence.strip() and self.now >= (link.series_from or activity.start):
            present = self.first_present_occurrence(activity)
            if present is not None and present != link.series_from:
                link.series_from = present
                if link.snapshot and target.invitations:
                    # Written before: the attendees keep that meeting's past under its UID (K2),
                    # so the series written again is a new meeting, as in a K15 split.
                    link.sync_id = uuid.uuid4()
                    activity.meeting_uid = ""
                    Activity.all_objects.filter(pk=activity.pk).update(meeting_uid="")
                ItemLink.objects.filter(pk=link.pk).update(
                    series_from=present, sync_id=link.sync_id, updated_at=self.now
                )
        self.creates.append((activity, target, link))

    def write_creates(self) -> None:
        """The queued creates, in batches (one request per batch), meetings with invitations
        apart from the others (K3)."""
        while self.creates:
            queued, self.creates = self.creates, []
            for invitations in (True, False):
                batch = [entry for entry in queued if entry[1].invitations == invitations]
                for start in range(0, len(batch), max(1, self.settings.batch_size)):
                    self.ctx.checkpoint()
                    self.write_create_batch(batch[start : start + self.settings.batch_size], invitations)

    def write_create_batch(self, batch: list[tuple[Activity, Target, ItemLink]], invitations: bool) -> None:
        ready: list[tuple[Activity, Target, ItemLink, dict[str, Any]]] = []
        events: list[CalendarEvent] = []
        for activity, target, link in batch:
            try:
                event = self.event_for(activity, target, link=link)
                crm = self.crm_values(activity, target, link)
            except InvalidItem as exc:
                self.item_failed(link, exc)
                continue
            event.sync_id = str(link.sync_id)
            if target.invitations:
                # The meeting's UID is ours to choose: invitee copies carry it, so every user's
                # pass can tell which CRM activity a copy belongs to (K4, K7).
                if not activity.meeting_uid:
                    activity.meeting_uid = f"crm-{link.sync_id}"
                    Activity.all_objects.filter(pk=activity.pk).update(meeting_uid=activity.meeting_uid)
                event.uid = activity.meeting_uid
            ready.append((activity, target, link, crm))
            events.append(event)
        if not events:
            return
        results = self.backend.create_events(self.mailbox, self.folder_id, events, send_invitations=invitations)
        self.wrote = True
        for (activity, target, link, crm), result in zip(ready, results, strict=True):
            if not result.ok:
                self.item_failed(link, result.error)
                continue
            if target.invitations and result.uid and result.uid != activity.meeting_uid:
                # The server chose the meeting's UID (Graph): invitee copies carry that one (K4, K7).
                activity.meeting_uid = result.uid
                Activity.all_objects.filter(pk=activity.pk).update(meeting_uid=result.uid)
            # A new series has no exceptions yet: they are written next, as an update (K10).
            written = {**crm, "occurrences": {}} if "occurrences" in crm else crm
            self.agree(link, written, result.ref)
            link.save()
            self.run.created += 1
            self.flag_attendees(activity, target)
            if self.differs("occurrences", {}, crm.get("occurrences", {}), crm):
                self.push(link, activity, target, {"occurrences"}, None, counted=False)

    def push(
        self,
        link: ItemLink,
        activity: Activity,
        target: Target,
        names: set[str],
        event: CalendarEvent | None,
        *,
        counted: bool = True,
    ) -> None:
        ref = RemoteRef(link.remote_id, link.remote_change_key, link.remote_folder_id)
        if event is None and "comment" in names:
            # The body is shared: read what Outlook wrote outside the markers before rewriting it.
            current = self.backend.get_events(self.mailbox, [ref])[0]
            event = current if isinstance(current, CalendarEvent) else None
        body_now = event.body if event is not None else ""
        new = self.event_for(activity, target, body_now, link)
        new.sync_id = str(link.sync_id)
        crm = self.crm_values(activity, target, link)
        if "comment" in names and not target.with_comment:
            new.body = ev.strip_comment(ev.body_text(body_now))
            if event is not None and new.body == ev.body_text(body_now):
                names = names - {"comment"}  # nothing of ours in the body: nothing to take out
        fields = set()
        for name in names - {"occurrences"}:
            fields |= {
                "comment": {"body"},
                "all_day": {"is_all_day", "start", "end"},
                "private": {"is_private"},
            }.get(name, {name})
        if "start" in fields or "end" in fields:
            fields |= {"start", "end", "time_zone"}
        held = self.remote_values(event, target) if event is not None else link.snapshot
        if new.recurrence:
            fields |= self.occurrence_writes(new, crm, held.get("occurrences") or {}, fields)
        series_wide = bool(names - {"occurrences"}) or "recurrence" in fields
        if series_wide and (held.get("recurrence") or new.recurrence) and self.began_in_past(held):
            # K15: written in place, the change would reach occurrences that are over.
            self.split(link, activity, target)
            return
        send = (
            target.invitations
            and bool(names & ev.ATTENDEE_VISIBLE)
            and bool(target.attendees or "attendees" in names)
        )
        if fields:
            result = self.backend.update_events(
                self.mailbox, [(ref, new, sorted(fields))], send_updates=send
            )[0]
            self.wrote = True
        else:
            result = ItemResult(ref=ref)
        if not result.ok:
            if isinstance(result.error, ItemNotFound):
                link.remote_id = ""
                self.create(activity, target, link)
                return
            self.item_failed(link, result.error)
            return
        self.agree(link, crm, result.ref)
        link.save()
        if counted and fields:
            self.run.updated += 1

    def occurrence_writes(
        self, new: CalendarEvent, crm: dict[str, Any], held: dict[str, Any], fields: set[str]
    ) -> set[str]:
        """Fill ``new``'s occurrence lists with what Exchange must be told so that the series'
        present and future exceptions become the CRM's (K10); return the fields to write.

        Exchange cannot bring a deleted occurrence back, and writing the pattern drops every
        exception: then the pattern is written again with the whole list."""
        duration = ev.duration_of(crm)
        wanted = ev.future(crm.get("occurrences") or {}, self.now, duration)
        held = ev.future(held, self.now, duration)
        restore = any(v == ev.DELETED and wanted.get(k) != ev.DELETED for k, v in held.items())
        if restore or fields & set(PATTERN_FIELDS):
            fields = {"recurrence"}
            held = {}
        else:
            fields = set()
        deletes = [k for k, v in wanted.items() if v == ev.DELETED and held.get(k) != ev.DELETED]
        changes = [k for k, v in wanted.items() if v != ev.DELETED and held.get(k) != v]
        back = [k for k, v in held.items() if v != ev.DELETED and k not in wanted]
        new.deleted_occurrences = [ev.moment(k) for k in deletes]
        new.modified_occurrences = [
            Occurrence(ev.moment(k), ev.moment(wanted[k][0]), ev.moment(wanted[k][1]), *wanted[k][2:])
            for k in changes
        ] + [Occurrence(ev.moment(k), ev.moment(k), ev.moment(k) + duration) for k in back]
        if deletes:
            fields.add("deleted_occurrences")
        if changes or back:
            fields.add("modified_occurrences")
        return fields

    # --- A series that began in the past (K15) ----------------------------------------------

    def began_in_past(self, values: dict[str, Any]) -> bool:
        """Whether the Exchange item these values describe has a first occurrence that is over."""
        try:
            return bool(values.get("end")) and ev.moment(values["end"]) <= self.now
        except (TypeError, ValueError):
            return False

    def split(self, link: ItemLink, activity: Activity, target: Target) -> None:
        """K15: the CRM changed a series whose Exchange copy began in the past. As Outlook does,
        the old series is ended at its last occurrence that is over (its past stays as it was)
        and a new series carries the present and future occurrences. The link moves to the new
        series, under a new sync id (the old series keeps the old one) and a new meeting UID."""
        with transaction.atomic():
            link.retired_remote_id = link.remote_id
            link.remote_id = link.remote_change_key = ""
            link.sync_id = uuid.uuid4()
            link.series_from = self.first_present_occurrence(activity)
            link.state = LinkState.PENDING
            link.save()
            if target.invitations:
                activity.meeting_uid = ""
                Activity.all_objects.filter(pk=activity.pk).update(meeting_uid="")
        if not self.end_retired(link):
            return
        if link.series_from is None or self.activity_over(activity):
            link.delete()  # nothing of the series is left to come
            return
        self.create(activity, target, link)

    def first_present_occurrence(self, activity: Activity) -> datetime | None:
        duration = activity.end - activity.start
        if not activity.recurrence.strip():
            return activity.start if activity.end > self.now else None
        try:
            series = Series(activity.recurrence, activity.start, activity.time_zone)
            return next(series.starts(after=self.now - duration + timedelta(seconds=1)), None)
        except (ValueError, TypeError, KeyError):
            return None

    def end_retired(self, link: ItemLink) -> bool:
        """End the series a split left behind; False when that has to wait for another pass."""
        ref = RemoteRef(link.retired_remote_id, "", link.remote_folder_id)
        found = self.backend.get_events(self.mailbox, [ref])[0]
        if isinstance(found, CalendarEvent):
            result = self.end_series(ref, found)
            if not result.ok and not isinstance(result.error, ItemNotFound):
                self.item_failed(link, result.error)
                return False
        elif not isinstance(found, ItemNotFound):
            self.item_failed(link, found)
            return False
        link.retired_remote_id = ""
        ItemLink.objects.filter(pk=link.pk).update(retired_remote_id="", updated_at=self.now)
        return True

    def end_series(self, ref: RemoteRef, event: CalendarEvent) -> ItemResult:
        """End an Exchange series at its last occurrence that is over, keeping the exceptions of
        its past (Exchange drops them when the end moves, so they are written again). A series
        with nothing over is deleted instead. Attendees of the organizer's meeting are told."""
        send = event.is_meeting and event.organizer.lower() in ("", self.me)
        duration = event.end - event.start
        last = None
        try:
            for original in Series(event.recurrence, event.start, event.time_zone).starts():
                if original + duration > self.now:
                    break
                last = original
        except (ValueError, TypeError, KeyError):
            last = None
        self.wrote = True
        if last is None:
            return self.backend.delete_events(self.mailbox, [ref], send_cancellations=send)[0]
        parts = dict(
            p.split("=", 1) for p in ev.canonical_rrule(event.recurrence, event.start, event.time_zone).split(";")
        )
        parts.pop("COUNT", None)
        local_day = last.astimezone(ZoneInfo(event.time_zone or "UTC")).date()
        parts["UNTIL"] = f"{local_day:%Y%m%d}"
        event.recurrence = ";".join(f"{k}={v}" for k, v in sorted(parts.items()))
        event.deleted_occurrences = [d for d in event.deleted_occurrences if d <= last]
        event.modified_occurrences = [o for o in event.modified_occurrences if o.original_start <= last]
        names = ["recurrence"]
        if event.deleted_occurrences:
            names.append("deleted_occurrences")
        if event.modified_occurrences:
            names.append("modified_occurrences")
        return self.backend.update_events(self.mailbox, [(ref, event, names)], send_updates=send)[0]

    def pull(
        self,
        activity: Activity,
        event: CalendarEvent,
        names: set[str],
        target: Target,
        occurrences: dict[str, Any] | None = None,
    ) -> None:
        """Exchange → CRM for the named fields (K8); ``occurrences``: the exceptions to keep
        when both sides changed some (merged), else Exchange's."""
        values = self.remote_values(event, target)
        fields = []
        if "subject" in names:
            activity.subject = values["subject"][:255] or activity.subject
            fields.append("subject")
        if "location" in names:
            activity.location = values["location"][:255]
            fields.append("location")
        if "comment" in names:
            activity.comment = values["comment"]
            fields.append("comment")
        if "private" in names:
            activity.private = values["private"]
            fields.append("private")
        if names & {"start", "end", "all_day"}:
            activity.start, activity.end, activity.all_day = event.start, event.end, event.is_all_day
            if event.time_zone:
                activity.time_zone = event.time_zone
            fields += ["start", "end", "all_day", "time_zone"]
        if "recurrence" in names:
            activity.recurrence = event.recurrence
            fields.append("recurrence")
        if "occurrences" in names:
            wanted = occurrences if occurrences is not None else values.get("occurrences", {})
            self.set_occurrences(activity, wanted, ev.duration_of(values))
            fields += ["recurrence_exdates", "recurrence_exceptions"]
        if fields:
            activity.save(update_fields=[*fields, "updated_at"])
        if "attendees" in names:
            self.pull_attendees(activity, event)
        self.run.updated += 1

    def set_occurrences(self, activity: Activity, wanted: dict[str, Any], duration: timedelta) -> None:
        """The CRM's exceptions become ``wanted`` for occurrences not yet over; those that are
        over stay as the CRM has them (K2)."""
        exdates = []
        for raw in activity.recurrence_exdates or []:
            try:
                if ev.is_over(ev._utc(ev.moment(raw)), ev.DELETED, self.now, duration):
                    exdates.append(raw)
            except (TypeError, ValueError):
                continue
        exceptions = []
        for raw in activity.recurrence_exceptions or []:
            try:
                original = ev.moment(raw["original_start"])
                end = ev.moment(raw["end"]) if raw.get("end") else original + duration
                if ev.is_over(ev._utc(original), [None, ev._utc(end)], self.now, duration):
                    exceptions.append(raw)
            except (TypeError, ValueError, KeyError):
                continue
        future_exdates, future_exceptions = ev.crm_lists(ev.future(wanted, self.now, duration))
        activity.recurrence_exdates = exdates + future_exdates
        activity.recurrence_exceptions = exceptions + future_exceptions

    def pull_attendees(self, activity: Activity, event: CalendarEvent) -> None:
        wanted = {a.email.lower(): a for a in event.attendees if a.email.lower() != self.me}
        existing = {a.email.lower(): a for a in activity.attendees.all() if not a.meeting_organizer}
        removed, _ = Attendee.objects.filter(
            pk__in=[a.pk for e, a in existing.items() if e not in wanted and a.invite]
        ).delete()
        added = [attendee for email, attendee in wanted.items() if email not in existing]
        for attendee in added:
            self.new_attendee(activity, attendee)
        if removed or added:
            # the attendee set is part of the activity: an outside CRM reading changes must see it
            type(activity).all_objects.filter(pk=activity.pk).update(updated_at=self.now)

    def new_attendee(self, activity: Activity, attendee: EventAttendee, organizer: bool = False) -> None:
        """K6: typed Employee / Contact / Other by address; synchronized on, not sent."""
        email = attendee.email.lower()
        employee = Employee.objects.filter(environment=self.env, email__iexact=email).first()
        contact = None
        if employee is None:
            contact = Contact.objects.filter(
                Q(email1__iexact=email) | Q(email2__iexact=email) | Q(email3__iexact=email),
                environment=self.env,
            ).first()
        kind = AttendeeType.EMPLOYEE if employee else AttendeeType.CONTACT if contact else AttendeeType.OTHER
        Attendee.objects.get_or_create(
            activity=activity,
            email=attendee.email,
            defaults={
                "type": kind,
                "employee": employee,
                "contact": contact,
                "name": attendee.name
                or (employee.name if employee else contact.full_name if contact else ""),
                "invite": True,
                "meeting_organizer": organizer,
                "synchronized": True,
                "sent_to_synchronizer": False,
            },
        )

    def flag_attendees(self, activity: Activity, target: Target) -> None:
        """K4, each attendee row on its own so passes of different users never overwrite each other."""
        if target.invitations:
            emails = [a.email for a in target.attendees]
            Attendee.objects.filter(activity=activity, email__in=emails).exclude(
                email__iexact=self.me
            ).update(sent_to_synchronizer=True, updated_at=self.now)
        Attendee.objects.filter(activity=activity, email__iexact=self.me).update(
            synchronized=True, sent_to_synchronizer=True, updated_at=self.now
        )

    def deleted_in_exchange(self, link: ItemLink, activity: Activity, target: Target) -> None:
        """K9: a meeting deleted in Exchange deletes the activity; a personal one follows the policy.
        An edit beats a delete: a CRM change since the last agreement re-creates the event."""
        crm = self.crm_values(activity, target, link)
        if self.changed_fields(link.snapshot, crm):
            link.remote_id = ""
            self.create(activity, target, link)
            return
        is_meeting = bool(link.snapshot.get("attendees"))
        if is_meeting or self.settings.personal_deletion_policy == PersonalDeletionPolicy.DELETE:
            link.delete()
            activity.retire()  # a tombstone: the outside CRM reads the deletion
            self.run.deleted += 1
            return
        link.state, link.remote_id = LinkState.DELETED_REMOTE, ""
        link.save()

    def restore(self, activity: Activity) -> None:
        type(activity).all_objects.filter(pk=activity.pk).update(deleted_at=None, updated_at=self.now)
        activity.deleted_at = None

    # --- Foreign events (K6, K7, K16) -------------------------------------------------------

    def foreign_event(self, event: CalendarEvent, links_by_activity: dict[int, ItemLink]) -> None:
        organizer = event.organizer.lower()
        if event.is_cancelled:
            if organizer and organizer not in self.sync_users:
                self.organizer_cancelled(event)
            return
        if not organizer or organizer == self.me or not event.is_meeting:
            self.import_event(event)
            return
        if organizer in self.sync_users:
            # K7: the organizer's copy is the one synced; K4: this attendee now has it.
            Attendee.objects.filter(
                activity__environment=self.env, activity__meeting_uid=event.uid, email__iexact=self.me
            ).update(synchronized=True, updated_at=self.now)
            return
        self.stub_for(event)

    def import_event(self, event: CalendarEvent) -> None:
        """K6: an event unknown to the CRM becomes an Appointment activity."""
        if event.is_meeting and event.uid and Activity.objects.filter(environment=self.env, meeting_uid=event.uid).exists():
            # Not unknown after all (a copy of a meeting the CRM has): never a second activity.
            self.unreadable(None, InvalidItem(f"“{event.subject}” is a copy of a meeting the CRM already has."))
            return
        with transaction.atomic():
            activity = Activity.objects.create(
                environment=self.env,
                type=ActivityType.APPOINTMENT,
                synchronize=True,
                created_by_erp=False,
                subject=(event.subject or "(no subject)")[:255],
                comment=ev.remote_comment(event),
                location=event.location[:255],
                start=event.start,
                end=event.end,
                all_day=event.is_all_day,
                time_zone=event.time_zone or "UTC",
                private=event.is_private,
                reminder_minutes=event.reminder_minutes,
                recurrence=event.recurrence,
                **self.exception_lists(event),
                organizer=self.user.employee,
                organizer_email=self.mailbox,
                meeting_uid=event.uid if event.is_meeting else "",
            )
            self.new_attendee(
                activity, EventAttendee(email=self.mailbox, name=self.user.employee.name), organizer=True
            )
            for attendee in event.attendees:
                if attendee.email.lower() != self.me:
                    self.new_attendee(activity, attendee)
            # As later passes will see it: with the comment only without outside attendees (K12).
            target = self.target_for_me(activity) or Target(invitations=True)
            link = ItemLink(
                environment=self.env, sync_user=self.user, kind=mapping.ACTIVITY, activity=activity
            )
            self.agree(link, self.remote_values(event, target), event.ref)
            link.save()
        self.run.created += 1

    def exception_lists(self, event: CalendarEvent) -> dict[str, list]:
        """A new activity's removed and modified occurrences, as Exchange has them (K10)."""
        values = self.remote_values(event, Target(invitations=False))
        exdates, exceptions = ev.crm_lists(values.get("occurrences") or {})
        return {"recurrence_exdates": exdates, "recurrence_exceptions": exceptions}

    def stub_for(self, event: CalendarEvent) -> None:
        """K7/K16: one stub per environment and meeting UID, however many invitees hold it."""
        defaults = {
            "type": ActivityType.APPOINTMENT,
            "created_by_erp": False,
            "synchronize": True,
            "is_stub": True,
            "subject": (event.subject or "(no subject)")[:255],
            "location": event.location[:255],
            "start": event.start,
            "end": event.end,
            "all_day": event.is_all_day,
            "time_zone": event.time_zone or "UTC",
            "private": event.is_private,
            "organizer_email": event.organizer,
            "recurrence": event.recurrence,
            **self.exception_lists(event),
        }
        try:
            with transaction.atomic():
                stub, created = Activity.objects.get_or_create(
                    environment=self.env, meeting_uid=event.uid, defaults=defaults
                )
        except IntegrityError:  # another user's pass made it at the same moment
            stub, created = Activity.objects.get(environment=self.env, meeting_uid=event.uid), False
        if created:
            self.run.created += 1
            self.new_attendee(stub, EventAttendee(email=event.organizer), organizer=True)
            for attendee in event.attendees:
                self.new_attendee(stub, attendee)
        Attendee.objects.filter(activity=stub, email__iexact=self.me).update(
            synchronized=True, updated_at=self.now
        )
        link, _ = ItemLink.objects.get_or_create(
            sync_user=self.user, activity=stub, defaults={"environment": self.env, "kind": mapping.ACTIVITY}
        )
        self.agree(link, self.remote_values(event, Target(invitations=False)), event.ref)
        link.save()

    def stub_copy(self, link: ItemLink, event: CalendarEvent | None, gone: bool) -> None:
        if gone:
            link.delete()  # an invitee's deletion of its copy; the stub stays (K16)
            return
        if event is None:
            return
        if event.is_cancelled:
            self.organizer_cancelled(event)
            return
        target = Target(invitations=False)
        values = self.remote_values(event, target)
        changed = {k for k, v in values.items() if link.snapshot.get(k, _MISSING) != v}
        if changed:
            self.pull(link.activity, event, changed, target)
        self.agree(link, values, event.ref)
        link.save()

    def organizer_cancelled(self, event: CalendarEvent) -> None:
        stub = Activity.objects.filter(environment=self.env, meeting_uid=event.uid, is_stub=True).first()
        if stub is None:
            return
        ItemLink.objects.filter(activity=stub).delete()
        stub.retire()
        self.run.deleted += 1

    # --- Deletions with the safety limit ----------------------------------------------------

    def write_deletes(self, deletes: list[tuple[ItemLink, bool]], links: list[ItemLink]) -> bool:
        if not deletes:
            return False
        synced = sum(1 for link in links if link.remote_id)
        share = len(deletes) * 100 / max(synced, 1)
        if (
            len(deletes) > self.settings.safety_limit_minimum
            and share > self.settings.safety_limit_percent
            and not self.user.deletions_confirmed
        ):
            self.run.error = (
                f"Held: this pass would delete or cancel {len(deletes)} of {synced} synchronized events "
                f"({share:.0f} %), more than the safety limit. An administrator must confirm the deletions."
            )
            return True
        ended = [link for link, _ in deletes if link.snapshot.get("recurrence") and self.began_in_past(link.snapshot)]
        for link in ended:
            # K2/K15: a series that began in the past is ended there, not deleted with its past.
            ref = RemoteRef(link.remote_id, link.remote_change_key, link.remote_folder_id)
            found = self.backend.get_events(self.mailbox, [ref])[0]
            result = self.end_series(ref, found) if isinstance(found, CalendarEvent) else ItemResult(error=found)
            if result.ok or isinstance(result.error, ItemNotFound):
                link.delete()
                self.run.deleted += 1
            else:
                self.item_failed(link, result.error)
        for cancel in (True, False):
            batch = [link for link, organizer_copy in deletes if organizer_copy == cancel and link not in ended]
            if not batch:
                continue
            refs = [RemoteRef(link.remote_id, link.remote_change_key) for link in batch]
            results = self.backend.delete_events(self.mailbox, refs, send_cancellations=cancel)
            self.wrote = True
            for link, result in zip(batch, results, strict=True):
                if result.ok:
                    link.delete()
                    self.run.deleted += 1
                else:
                    self.item_failed(link, result.error)
        if self.user.deletions_confirmed:
            self.user.deletions_confirmed = False
            self.user.save(update_fields=["deletions_confirmed", "updated_at"])
        return False

    def item_failed(self, link: ItemLink, error: MailboxError) -> None:
        link.state = LinkState.SKIPPED if isinstance(error, InvalidItem) else LinkState.FAILED
        link.last_error, link.last_error_at = str(error), self.now
        link.save()
        if isinstance(error, InvalidItem):
            self.run.skipped += 1
        else:
            self.run.failed += 1

    def absorb_own_writes(self, state: FolderState) -> None:
        """Advance the token past our own writes; a foreign edit meanwhile stays visible because
        its change key differs from the one we recorded."""
        known = dict(
            ItemLink.objects.filter(sync_user=self.user, kind=mapping.ACTIVITY)
            .exclude(remote_id="")
            .values_list("remote_id", "remote_change_key")
        )
        try:
            page = self.backend.calendar_changes(self.mailbox, state.remote_folder_id, state.sync_token)
        except InvalidSyncToken:
            return
        foreign = [
            ref for ref in page.changed if ref.item_id not in known or known[ref.item_id] != ref.change_key
        ]
        if not foreign and not page.deleted:
            state.sync_token = page.token


_MISSING = object()


def run_calendar_pass(
    user_id: int, ctx: PassContext | None = None, backend: MailboxBackend | None = None
) -> SyncRun:
    """One calendar pass for one sync user. Never raises for mailbox trouble: the run says it."""
    ctx = ctx or PassContext()
    user = SyncUser.objects.select_related("environment__settings", "employee").get(pk=user_id)
    if not user.environment.settings.synchronize_activities:
        raise CalendarSyncDisabled(f"Activity synchronization is off in {user.environment.name}.")
    if not (user.active and user.calendar_enabled):
        raise CalendarSyncDisabled(
            f"{user.mailbox_email} does not synchronize its calendar (inactive or turned off)."
        )
    return execute_pass(
        user, SyncKind.CALENDAR, ctx, backend, lambda run, b: CalendarPass(user, b, ctx, run).execute()
    )
