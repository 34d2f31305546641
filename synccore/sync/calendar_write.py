"""The calendar pass's writes: the one executor of the planner's steps (``calendar_plan.py``).

Steps are carried out in the order the planner gave them. Creates are queued and written at
the end of the pass in batches of ``batch_size`` (meetings with invitations apart, K3), each
one's link committed as pending before the request (crash safety); deletes and cancellations
are queued and written at the end under the safety limit; ``ctx.checkpoint()`` runs between
write batches. Where the next decision depends on a write's answer, the writer asks the
planner again (``Step.then``), and an update carries its own follow-ups (see ``push``).
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.db import IntegrityError, transaction
from django.db.models import Q

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
from synccore.mailbox.base import Attendee as EventAttendee
from synccore.models import (
    Activity,
    ActivityType,
    Attendee,
    AttendeeType,
    Conflict,
    Contact,
    Employee,
    FolderState,
    ItemLink,
    LinkState,
    SyncKind,
    SyncRun,
)
from synccore.models.bulk import insert_keyed_rows, save_rows, update_fields
from synccore.sync import actions
from synccore.sync import events as ev
from synccore.sync.actions import ItemKey
from synccore.sync.calendar_plan import (
    CalendarPlanner,
    CalendarScope,
    Step,
    Target,
    attendees_of,
    forget_attendees,
)
from synccore.sync.custom_rows import CustomRow
from synccore.sync.runs import PassContext

log = logging.getLogger(__name__)

REMOVALS = {actions.CANCEL, actions.DELETE}


class CalendarWriter:
    def __init__(
        self,
        scope: CalendarScope,
        planner: CalendarPlanner,
        backend: MailboxBackend,
        ctx: PassContext,
        run: SyncRun,
    ) -> None:
        self.scope = scope
        self.planner = planner
        self.backend = backend
        self.ctx = ctx
        self.run = run
        self.user = scope.user
        self.env = scope.env
        self.settings = scope.settings
        self.mailbox = scope.mailbox
        self.me = scope.me
        self.now = scope.now
        self.folder_id = ""
        self.wrote = False  # whether anything reached Exchange (then our writes are absorbed)
        self.removed: set[str] = set()  # Exchange ids this pass deleted (absorbed with the rest)
        self.creates: list[tuple[Activity, Target, ItemLink]] = []
        self.deletes: list[tuple[ItemLink, bool]] = []  # with whether cancellations are sent
        # Activities Exchange's deletions retire (K9): under the same safety limit (an emptied
        # calendar is no reason to delete everything in the CRM).
        self.crm_deletes: list[tuple[ItemLink, Activity]] = []
        self.ignored_uids: list[str] = []  # invitee copies of sync users' meetings (K4, K7)

    # --- Carrying out steps ---------------------------------------------------------------------

    def carry_out(self, steps: list[Step]) -> None:
        """The steps of one item, in order; a follow-up (``Step.then``) right after its step."""
        retarget: Target | None = None
        for step in steps:
            if step.kind == actions.UPDATE and retarget is not None:
                step.target = retarget
            action = step.action()
            if not self.ctx.decided(action):
                continue  # held back (the loop detector, P3): not written
            done, new_target = self.write(step)
            if not self.queued(step):
                self.ctx.carried_out(action.item, {action.kind})
            retarget = new_target or retarget
            if done and step.then is not None:
                self.carry_out(step.then())

    @staticmethod
    def queued(step: Step) -> bool:
        """Written at the end of the pass (creates, deletions), not by ``write``."""
        return step.kind == actions.CREATE or (step.kind in REMOVALS and step.link is not None)

    def write(self, step: Step) -> tuple[bool, Target | None]:
        """One step; returns whether it was written (a follow-up may come) and, after a pull of
        attendees, whom the activity now invites."""
        kind, link, activity, event = step.kind, step.link, step.activity, step.event
        if kind == actions.ADOPT:
            link.remote_id, link.remote_change_key, link.remote_folder_id = (
                event.ref.item_id,
                event.ref.change_key,
                event.ref.folder_id,
            )
        elif kind == actions.SKIP:
            self.unreadable(None, InvalidItem(step.reason))
        elif kind == actions.IMPORT:
            self.import_event(event)
        elif kind == actions.IGNORE:
            self.ignored_uids.append(event.uid)  # marked together (see mark_ignored)
        elif kind == actions.STUB:
            self.stub_for(event)
        elif kind == actions.CANCEL and link is None:
            self.organizer_cancelled(event)
        elif kind in (actions.CANCEL, actions.DELETE) and step.side == actions.EXCHANGE:
            self.deletes.append((link, kind == actions.CANCEL))  # written at the end (safety limit)
        elif kind == actions.DELETE:
            self.crm_deletes.append((link, activity))  # written at the end (safety limit)
        elif kind == actions.KEEP:
            link.state, link.remote_id = LinkState.DELETED_REMOTE, ""
            link.save()
        elif kind == actions.DROP_LINK:
            link.delete()
        elif kind == actions.CREATE:
            if step.recreate:
                link.remote_id = ""
            self.create(activity, step.target, link)
        elif kind == actions.END_SERIES:
            return self.end_retired(link), None
        elif kind == actions.RESTORE:
            self.restore(activity)
        elif kind == actions.CONFLICT:
            ((name, (crm_value, exchange_value)),) = step.fields.items()
            self.conflict(link, name, crm_value, exchange_value, step.choice)
        elif kind == actions.PULL:
            return True, self.write_pull(step)
        elif kind == actions.UPDATE:
            self.push(link, activity, step.target, step.names, event)
        elif kind == actions.AGREE:
            self.agree(link, step.values, step.ref)
            if step.change_key_only:
                ItemLink.objects.filter(pk=link.pk).update(
                    remote_change_key=step.ref.change_key, updated_at=self.now
                )
            else:
                link.save()
        else:  # pragma: no cover - a kind the planner does not give for calendar items
            raise ValueError(f"no writer for {kind}")
        return True, None

    def mark_ignored(self) -> None:
        """K4: this attendee has the meetings whose invitee copies were ignored — their
        attendee rows marked synchronized, a few hundred meetings to a query."""
        uids, self.ignored_uids = list(dict.fromkeys(self.ignored_uids)), []
        for start in range(0, len(uids), 500):
            Attendee.objects.filter(
                activity__environment=self.env, activity__meeting_uid__in=uids[start : start + 500], email__iexact=self.me
            ).update(synchronized=True, updated_at=self.now)

    def write_pull(self, step: Step) -> Target | None:
        activity = step.activity
        if step.whole_series:
            step.link.series_from = None
        if step.first:
            self.pull_attendees(activity, step.event)
            self.run.updated += 1
            forget_attendees(activity)
            return None
        self.pull(activity, step.event, step.names, step.target, step.occurrences)
        if not step.retarget:
            return None
        # Who is invited decides what is written (K3, K12): ask again after the pull.
        forget_attendees(activity)
        return self.scope.target_for_me(activity) or step.target

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

    def agree(self, link: ItemLink, values: dict[str, Any], ref: RemoteRef) -> None:
        link.snapshot = values
        link.remote_id, link.remote_change_key = ref.item_id, ref.change_key
        link.remote_folder_id = ref.folder_id or link.remote_folder_id
        link.state, link.last_error, link.last_error_at, link.synced_at = LinkState.SYNCED, "", None, self.now

    def restore(self, activity: Activity) -> None:
        type(activity).all_objects.filter(pk=activity.pk).update(deleted_at=None, updated_at=self.now)
        activity.deleted_at = None

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

    def item_failed(self, link: ItemLink, error: MailboxError) -> None:
        link.state = LinkState.SKIPPED if isinstance(error, InvalidItem) else LinkState.FAILED
        link.last_error, link.last_error_at = str(error), self.now
        link.save()
        if isinstance(error, InvalidItem):
            self.run.skipped += 1
        else:
            self.run.failed += 1

    # --- CRM → Exchange: creates -----------------------------------------------------------------

    def event_for(
        self, activity: Activity, target: Target, body_now: str = "", link: ItemLink | None = None
    ) -> CalendarEvent:
        off = self.scope.flow.off
        event = ev.event_from_activity(
            activity,
            attendees=target.attendees if target.invitations else [],
            comment=ev.body_text(activity.comment) if target.with_comment and "comment" not in off else None,
            body_now=body_now,
            reminder=None if "reminder_minutes" in off else ev.default_reminder(activity, self.settings),
            series_from=link.series_from if link is not None else None,
        )
        # Disabled mapping rows are not written: a new event gets Exchange's own default.
        if "location" in off:
            event.location = ""
        if "private" in off:
            event.is_private = False
        for row in self.scope.flow.custom:
            if row.is_property:
                event.properties[row.property_name] = row.crm_text(activity)
            else:
                setattr(event, row.field, row.crm_text(activity))
        return event

    def create(self, activity: Activity, target: Target, link: ItemLink | None) -> None:
        """Queue a create: its link is committed pending (with the sync id the item will carry)
        before any write of the pass — a new one with the others of the pass in one insert (see
        ``save_new_links``) — and the item is written with the others in batches at the end."""
        if link is None:
            link = ItemLink(
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
            present = self.scope.first_present_occurrence(activity)
            if present is not None and present != link.series_from:
                link.series_from = present
                if (link.snapshot or activity.meeting_uid) and target.invitations:
                    # Written before (under this link, or under one an un-synchronize ended): the
                    # past of that meeting stays in the calendars under its UID (K2), so the series
                    # written again is a new meeting, as in a K15 split.
                    link.sync_id = uuid.uuid4()
                    activity.meeting_uid = ""
                    Activity.all_objects.filter(pk=activity.pk).update(meeting_uid="")
                if link.pk is not None:  # a new one is inserted with these
                    ItemLink.objects.filter(pk=link.pk).update(
                        series_from=present, sync_id=link.sync_id, updated_at=self.now
                    )
        self.creates.append((activity, target, link))

    def save_new_links(self) -> None:
        """The pending links of the queued creates not in the database yet, in one insert."""
        insert_keyed_rows(ItemLink, [link for _, _, link in self.creates if link.pk is None], "sync_id")

    def write_creates(self) -> None:
        """The queued creates, in batches (one request per batch), meetings with invitations
        apart from the others (K3)."""
        while self.creates:
            self.save_new_links()
            queued, self.creates = self.creates, []
            for invitations in (True, False):
                batch = [entry for entry in queued if entry[1].invitations == invitations]
                for start in range(0, len(batch), max(1, self.settings.batch_size)):
                    self.ctx.checkpoint()
                    self.write_create_batch(batch[start : start + self.settings.batch_size], invitations)

    def write_create_batch(self, batch: list[tuple[Activity, Target, ItemLink]], invitations: bool) -> None:
        ready: list[tuple[Activity, Target, ItemLink, dict[str, Any]]] = []
        events: list[CalendarEvent] = []
        new_uids: list[Activity] = []
        for activity, target, link in batch:
            try:
                event = self.event_for(activity, target, link=link)
                crm = self.scope.crm_values(activity, target, link)
            except InvalidItem as exc:
                self.item_failed(link, exc)
                continue
            event.sync_id = str(link.sync_id)
            if target.invitations:
                # The meeting's UID is ours to choose: invitee copies carry it, so every user's
                # pass can tell which CRM activity a copy belongs to (K4, K7).
                if not activity.meeting_uid:
                    activity.meeting_uid = f"crm-{link.sync_id}"
                    new_uids.append(activity)
                event.uid = activity.meeting_uid
            ready.append((activity, target, link, crm))
            events.append(event)
        if new_uids:  # one query for the batch, before its request
            update_fields(Activity, new_uids, ["meeting_uid"])
        if not events:
            return
        results = self.backend.create_events(self.mailbox, self.folder_id, events, send_invitations=invitations)
        self.wrote = True
        created: list[tuple[Activity, Target]] = []
        agreed: list[ItemLink] = []
        server_uids: list[Activity] = []
        exceptions: list[tuple[ItemLink, Activity, Target]] = []
        try:
            for (activity, target, link, crm), result in zip(ready, results, strict=True):
                if not result.ok:
                    self.item_failed(link, result.error)
                    continue
                if target.invitations and result.uid and result.uid != activity.meeting_uid:
                    # The server chose the meeting's UID (Graph): invitee copies carry that one (K4, K7).
                    activity.meeting_uid = result.uid
                    server_uids.append(activity)
                # A new series has no exceptions yet: they are written next, as an update (K10).
                written = {**crm, "occurrences": {}} if "occurrences" in crm else crm
                self.agree(link, written, result.ref)
                agreed.append(link)
                self.run.created += 1
                created.append((activity, target))
                if self.scope.differs("occurrences", {}, crm.get("occurrences", {}), crm):
                    exceptions.append((link, activity, target))
        finally:
            # The batch's answers in one transaction: the links as link.save() writes them.
            with transaction.atomic():
                save_rows(ItemLink, agreed)
                if server_uids:
                    update_fields(Activity, server_uids, ["meeting_uid"])
            for activity, _ in created:  # their links are committed: done even if the pass fails later
                self.ctx.carried_out(ItemKey(activity.pk), {actions.CREATE})
            try:
                for link, activity, target in exceptions:
                    self.push(link, activity, target, {"occurrences"}, None, counted=False)
            finally:
                self.flag_attendees(created)

    def flag_attendees(self, created: list[tuple[Activity, Target]]) -> None:
        """K4, each attendee row on its own (an UPDATE of the rows, never a read and a save) so
        passes of different users never overwrite each other; a batch's rows in two queries."""
        if not created:
            return
        # One term per attendee list (a user's meetings often invite the same people), not per meeting.
        lists: dict[tuple[str, ...], list[int]] = {}
        for activity, target in created:
            if target.invitations:
                lists.setdefault(tuple(sorted({a.email for a in target.attendees})), []).append(activity.pk)
        invited = Q()
        for emails, ids in lists.items():
            invited |= Q(activity__in=ids, email__in=emails)
        if invited:
            Attendee.objects.filter(invited).exclude(email__iexact=self.me).update(
                sent_to_synchronizer=True, updated_at=self.now
            )
        Attendee.objects.filter(activity__in=[activity.pk for activity, _ in created], email__iexact=self.me).update(
            synchronized=True, sent_to_synchronizer=True, updated_at=self.now
        )

    # --- CRM → Exchange: updates -----------------------------------------------------------------

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
        """Write the named fields into Exchange. Follow-ups decided here, as the item is now: a
        series-wide change to a series that began in the past is a split instead (K15); an item
        gone meanwhile (ItemNotFound) is created again."""
        ref = RemoteRef(link.remote_id, link.remote_change_key, link.remote_folder_id)
        if event is None and "comment" in names:
            # The body is shared: read what Outlook wrote outside the markers before rewriting it.
            current = self.backend.get_events(self.mailbox, [ref], self.scope.flow.properties())[0]
            event = current if isinstance(current, CalendarEvent) else None
        body_now = event.body if event is not None else ""
        new = self.event_for(activity, target, body_now, link)
        new.sync_id = str(link.sync_id)
        crm = self.scope.crm_values(activity, target, link)
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
        held = self.scope.remote_values(event, target) if event is not None else link.snapshot
        if new.recurrence:
            fields |= self.occurrence_writes(new, crm, held.get("occurrences") or {}, fields)
        series_wide = bool(names - {"occurrences"}) or "recurrence" in fields
        if series_wide and (held.get("recurrence") or new.recurrence) and self.scope.began_in_past(held):
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

    # --- A series that began in the past (K15) ---------------------------------------------------

    def split(self, link: ItemLink, activity: Activity, target: Target) -> None:
        """K15: the CRM changed a series whose Exchange copy began in the past. As Outlook does,
        the old series is ended at its last occurrence that is over (its past stays as it was)
        and a new series carries the present and future occurrences. The link moves to the new
        series, under a new sync id (the old series keeps the old one) and a new meeting UID."""
        with transaction.atomic():
            link.retired_remote_id = link.remote_id
            link.remote_id = link.remote_change_key = ""
            link.sync_id = uuid.uuid4()
            link.series_from = self.scope.first_present_occurrence(activity)
            link.state = LinkState.PENDING
            link.save()
            if target.invitations:
                activity.meeting_uid = ""
                Activity.all_objects.filter(pk=activity.pk).update(meeting_uid="")
        if not self.end_retired(link):
            return
        if link.series_from is None or self.scope.activity_over(activity):
            link.delete()  # nothing of the series is left to come
            return
        self.create(activity, target, link)

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
            self.removed.add(ref.item_id)
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

    # --- Exchange → CRM --------------------------------------------------------------------------

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
        values = self.scope.remote_values(event, target)
        fields = []
        customs = [row for row in self.scope.flow.custom if row.field in names]
        if customs:
            self.take_custom(activity, customs, values)
            fields.append("custom_fields")
            names = names - {row.field for row in customs}
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

    def take_custom(self, activity: Activity, rows: list[CustomRow], values: dict[str, Any]) -> None:
        """Outlook's values of custom rows into the activity's custom fields; a value that is not
        of its key's type (a date stays a date) leaves the field as it is."""
        for row in rows:
            if not row.take(activity, values.get(row.field, "")):
                log.warning(
                    "%s: “%s” is not a %s for the custom field %s; not taken",
                    self.mailbox, values.get(row.field), row.value_type, row.key,
                )

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
        existing = {a.email.lower(): a for a in attendees_of(activity) if not a.meeting_organizer}
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

    # --- Foreign events (K6, K7, K16) ------------------------------------------------------------

    def import_event(self, event: CalendarEvent) -> None:
        """K6: an event unknown to the CRM becomes an Appointment activity (the fields of disabled
        mapping rows left empty)."""
        off = self.scope.flow.off
        imported = Activity(custom_fields={})
        target = Target(invitations=False)
        pulled = [row for row in self.scope.flow.custom if row.field not in self.scope.flow.pushed_only]
        self.take_custom(imported, pulled, self.scope.remote_values(event, target) if pulled else {})
        with transaction.atomic():
            activity = Activity.objects.create(
                custom_fields=imported.custom_fields,
                environment=self.env,
                type=ActivityType.APPOINTMENT,
                synchronize=True,
                created_by_erp=False,
                subject=(event.subject or "(no subject)")[:255],
                comment="" if "comment" in off else ev.remote_comment(event),
                location="" if "location" in off else event.location[:255],
                start=event.start,
                end=event.end,
                all_day=event.is_all_day,
                time_zone=event.time_zone or "UTC",
                private=False if "private" in off else event.is_private,
                reminder_minutes=None if "reminder_minutes" in off else event.reminder_minutes,
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
            target = self.scope.target_for_me(activity) or Target(invitations=True)
            link = ItemLink(
                environment=self.env, sync_user=self.user, kind=mapping.ACTIVITY, activity=activity
            )
            self.agree(link, self.scope.remote_values(event, target), event.ref)
            link.save()
        self.run.created += 1

    def exception_lists(self, event: CalendarEvent) -> dict[str, list]:
        """A new activity's removed and modified occurrences, as Exchange has them (K10)."""
        values = self.scope.remote_values(event, Target(invitations=False))
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
        self.agree(link, self.scope.remote_values(event, Target(invitations=False)), event.ref)
        link.save()

    def organizer_cancelled(self, event: CalendarEvent) -> None:
        stub = Activity.objects.filter(environment=self.env, meeting_uid=event.uid, is_stub=True).first()
        if stub is None:
            return
        ItemLink.objects.filter(activity=stub).delete()
        stub.retire()
        self.run.deleted += 1

    # --- Deletions with the safety limit ---------------------------------------------------------

    def write_deletes(self, links: list[ItemLink]) -> bool:
        """The queued deletes and cancellations, in Exchange and in the CRM; True when the safety
        limit held them."""
        deletes = self.deletes
        count = len(deletes) + len(self.crm_deletes)
        if not count:
            return False
        synced = sum(1 for link in links if link.remote_id)
        share = count * 100 / max(synced, 1)
        if (
            count > self.settings.safety_limit_minimum
            and share > self.settings.safety_limit_percent
            and not self.user.limit_confirmed(SyncKind.CALENDAR)
        ):
            where = " (in the CRM, after deletions in Exchange)" if not deletes else ""
            self.ctx.held_deletions.update((actions.EXCHANGE, actions.CRM))  # both wait (see crm_deletes)
            self.run.error = (
                f"Held: this pass would delete or cancel {count} of {synced} synchronized events{where} "
                f"({share:.0f} %), more than the safety limit. An administrator must confirm the deletions."
            )
            return True
        for link, activity in self.crm_deletes:
            link.delete()
            activity.retire()  # a tombstone: the outside CRM reads the deletion
            self.ctx.carried_out(ItemKey(activity.pk), REMOVALS)
            self.run.deleted += 1
        ended = [
            link
            for link, _ in deletes
            if link.snapshot.get("recurrence") and self.scope.began_in_past(link.snapshot)
        ]
        for link in ended:
            # K2/K15: a series that began in the past is ended there, not deleted with its past.
            ref = RemoteRef(link.remote_id, link.remote_change_key, link.remote_folder_id)
            found = self.backend.get_events(self.mailbox, [ref])[0]
            result = self.end_series(ref, found) if isinstance(found, CalendarEvent) else ItemResult(error=found)
            if result.ok or isinstance(result.error, ItemNotFound):
                link.delete()
                self.ctx.carried_out(ItemKey(link.activity_id), REMOVALS)
                self.run.deleted += 1
            else:
                self.item_failed(link, result.error)
        for cancel in (True, False):
            batch = [link for link, organizer_copy in deletes if organizer_copy == cancel and link not in ended]
            if not batch:
                continue
            refs = [RemoteRef(link.remote_id, link.remote_change_key) for link in batch]
            self.removed.update(ref.item_id for ref in refs)
            results = self.backend.delete_events(self.mailbox, refs, send_cancellations=cancel)
            self.wrote = True
            for link, result in zip(batch, results, strict=True):
                if result.ok:
                    link.delete()
                    self.ctx.carried_out(ItemKey(link.activity_id), REMOVALS)
                    self.run.deleted += 1
                else:
                    self.item_failed(link, result.error)
        self.user.use_confirmation(SyncKind.CALENDAR)
        return False

    def absorb_own_writes(self, state: FolderState) -> None:
        """Advance the token past our own writes; a foreign edit meanwhile stays visible because
        its change key differs from the one we recorded. Our own deletions are absorbed too: a
        token left before this pass's creates would never report their deletion (Exchange reports
        no Delete for an item created after the token), and the link would point at nothing.

        Others' changes seen meanwhile (passes at once: another mailbox's invitations landing
        here) are kept for the next pass, which reads them beside its token's changes: leaving
        the token behind for them would make it page through all of this pass's writes again."""
        known = dict(
            ItemLink.objects.filter(sync_user=self.user, kind=mapping.ACTIVITY)
            .exclude(remote_id="")
            .values_list("remote_id", "remote_change_key")
        )
        try:
            page = self.backend.calendar_changes(self.mailbox, state.remote_folder_id, state.sync_token, known)
        except InvalidSyncToken:
            return
        foreign = [
            ref for ref in page.changed if ref.item_id not in known or known[ref.item_id] != ref.change_key
        ]
        if set(page.deleted) <= self.removed:
            state.sync_token = page.token
            state.pending_changes += [[ref.item_id, ref.change_key] for ref in foreign]
