"""The task pass's writes (``tasks_plan.Step``\\ s carried out): the CRM side at once, the mailbox
in batches — creates (each link committed pending with its sync id before the request: crash
safety), updates, then deletions under the safety limit — and Outlook's own tasks imported (T4)."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.db import transaction
from django.db.models import Q

from synccore import mapping
from synccore.mailbox.base import (
    InvalidItem,
    InvalidSyncToken,
    ItemNotFound,
    ItemResult,
    MailboxBackend,
    MailboxError,
    RemoteRef,
    TaskItem,
)
from synccore.models import (
    Activity,
    ActivityType,
    Company,
    Conflict,
    Contact,
    FolderState,
    ItemLink,
    LinkState,
    SyncKind,
    SyncRun,
    SyncUser,
    TaskStatus,
)
from synccore.sync import actions, custom_rows
from synccore.sync import events as ev
from synccore.sync.custom_rows import CustomRow
from synccore.sync.runs import PassContext
from synccore.sync.tasks_plan import (
    EMAIL,
    FIELDS,
    Row,
    Step,
    TaskPlanner,
    activity_values,
    custom_crm_value,
    custom_task_value,
    day_of,
    remote_comment,
    start_day,
    zone_of,
)

log = logging.getLogger(__name__)


class TaskWrites:
    """The writing half of ``tasks.TaskPass`` (mixed in)."""

    user: SyncUser
    env: Any
    settings: Any
    backend: MailboxBackend
    ctx: PassContext
    run: SyncRun
    mailbox: str
    now: datetime
    rows: dict[str, Row]
    custom: tuple[CustomRow, ...]
    planner: TaskPlanner
    folder_id: str
    wrote: bool
    removed: set[str]
    _companies: list[tuple[int, str]] | None

    def write(self, steps: list[Step], links: list[ItemLink]) -> bool:
        """The CRM side at once, then the mailbox: creates, updates, deletions (safety limit)."""
        creates: list[Step] = []
        updates: list[Step] = []
        deletes: list[Step] = []
        for step in steps:
            kind = step.kind
            if kind == actions.CREATE:
                creates.append(step)
            elif kind == actions.UPDATE:
                updates.append(step)
            elif kind == actions.DELETE and step.side == actions.EXCHANGE:
                deletes.append(step)
            else:
                self.write_crm(step)
                self.ctx.carried_out(step.action().item, {kind})
        self.write_creates(creates)
        self.write_updates(updates)
        return self.write_deletes(deletes, links)

    def write_crm(self, step: Step) -> None:
        kind, link, activity, task = step.kind, step.link, step.activity, step.task
        if kind == actions.ADOPT:
            link.remote_id, link.remote_change_key = task.ref.item_id, task.ref.change_key
            link.remote_folder_id = task.ref.folder_id or self.folder_id
            link.state = LinkState.SYNCED
            link.save()
        elif kind == actions.IMPORT:
            self.import_task(task)
        elif kind == actions.DELETE:
            link.delete()
            activity.retire()
            self.run.deleted += 1
        elif kind == actions.KEEP:
            link.state, link.remote_id = LinkState.DELETED_REMOTE, ""
            link.save()
        elif kind == actions.DROP_LINK:
            if link.pk:
                link.delete()
        elif kind == actions.RESTORE:
            type(activity).all_objects.filter(pk=activity.pk).update(deleted_at=None, updated_at=self.now)
            activity.deleted_at = None
            if activity.responsible_id is None:
                activity.responsible = self.user.employee
                activity.save(update_fields=["responsible", "updated_at"])
            # Compared again now that it is back: the mailbox's edit flows into the CRM.
            for follow in self.planner.compare(link, activity, task):
                if not self.ctx.decided(follow.action()):
                    continue  # held back (P3)
                if follow.kind == actions.UPDATE:
                    self.write_updates([follow])
                else:
                    self.write_crm(follow)
        elif kind == actions.CONFLICT:
            ((name, (crm_value, exchange_value)),) = step.fields.items()
            Conflict.objects.create(
                link=link, run=self.run, field=name, crm_value=crm_value, exchange_value=exchange_value, choice=step.choice
            )
            self.run.conflicts += 1
        elif kind == actions.PULL:
            self.pull(activity, task, step.names)
        elif kind == actions.AGREE:
            ref = task.ref if task is not None else RemoteRef(link.remote_id, link.remote_change_key, link.remote_folder_id)
            self.agree(link, step.values, ref)
            link.save()
        else:  # pragma: no cover - a kind the planner does not give for tasks
            raise ValueError(f"no writer for {kind}")

    def agree(self, link: ItemLink, values: dict[str, Any], ref: RemoteRef) -> None:
        link.snapshot = values
        link.remote_id, link.remote_change_key = ref.item_id, ref.change_key
        link.remote_folder_id = ref.folder_id or link.remote_folder_id or self.folder_id
        keep_ambiguous = link.state == LinkState.AMBIGUOUS and not (
            link.activity.contact_id or link.activity.company_id
        )
        link.state = LinkState.AMBIGUOUS if keep_ambiguous else LinkState.SYNCED
        if not keep_ambiguous:
            link.last_error, link.last_error_at = "", None
        link.synced_at = self.now

    def item_failed(self, link: ItemLink, error: MailboxError) -> None:
        link.state = LinkState.SKIPPED if isinstance(error, InvalidItem) else LinkState.FAILED
        link.last_error, link.last_error_at = str(error), self.now
        if link.pk:
            link.save()
        if isinstance(error, InvalidItem):
            self.run.skipped += 1
        else:
            self.run.failed += 1

    def task_for(self, activity: Activity, body_now: str = "", *, reminder: bool = False) -> TaskItem:
        """The mailbox task an activity is written as (T3)."""
        values = activity_values(activity)
        comment = values["body"]
        task = TaskItem(
            subject=values["subject"],
            body=ev.compose_body(ev.body_text(body_now), comment) if comment or ev.OPEN in body_now else ev.body_text(body_now),
            status="completed" if values["status"] == "completed" else "open",
            due=activity.due,
            start=day_of(values["start"]),
            importance=values["importance"],
        )
        if reminder and self.rows["reminder"].enabled and activity.due is not None:
            minutes = activity.reminder_minutes
            if minutes is None:
                minutes = self.settings.reminder_task_minutes
            if minutes is not None:
                # K13: minutes before the start of the due day, in the task's zone.
                midnight = datetime.combine(activity.due, time.min, zone_of(activity.time_zone))
                task.reminder = (midnight - timedelta(minutes=minutes)).astimezone(UTC)
        for row in self.custom:
            value = custom_crm_value(row, activity)
            if row.is_property:
                task.properties[row.property_name] = value or ""
            else:
                setattr(task, row.field, day_of(value))
        return task

    def _batches(self, items: list) -> list[list]:
        size = max(1, self.settings.batch_size)
        return [items[start : start + size] for start in range(0, len(items), size)]

    def write_creates(self, steps: list[Step]) -> None:
        """Links are committed pending (with the sync id the task will carry) before the request,
        so a crash after it finds the task again by its sync id, never a duplicate."""
        ready: list[tuple[Step, ItemLink]] = []
        for step in steps:
            link = step.link
            if link is None:
                link = ItemLink.objects.create(
                    environment=self.env,
                    sync_user=self.user,
                    kind=mapping.TASK,
                    activity=step.activity,
                    state=LinkState.PENDING,
                )
            elif link.remote_id or link.state != LinkState.PENDING:
                link.remote_id = link.remote_change_key = ""
                link.state = LinkState.PENDING
                ItemLink.objects.filter(pk=link.pk).update(
                    remote_id="", remote_change_key="", state=LinkState.PENDING, updated_at=self.now
                )
            ready.append((step, link))
        fields = set(FIELDS) | {"reminder"}
        for batch in self._batches(ready):
            self.ctx.checkpoint()
            items = []
            for step, link in batch:
                task = self.task_for(step.activity, reminder=True)
                task.sync_id = str(link.sync_id)
                items.append(self._masked(task, fields))
            results = self.backend.create_tasks(self.mailbox, self.folder_id, items)
            self.wrote = True
            for (step, link), result in zip(batch, results, strict=True):
                if not result.ok:
                    self.item_failed(link, result.error)
                    continue
                link.activity = step.activity
                self.agree(link, self.planner.crm(step.activity), result.ref)
                link.save()
                self.ctx.carried_out(step.action().item, {actions.CREATE})
                self.run.created += 1

    def _masked(self, task: TaskItem, names: set[str]) -> TaskItem:
        """Fields whose mapping row is off are not written (T3)."""
        if not self.rows["body"].enabled:
            task.body = ""
        if not self.rows["due"].enabled:
            task.due = None
        if not self.rows["start"].enabled:
            task.start = None
        if not self.rows["importance"].enabled:
            task.importance = "normal"
        return task

    def write_updates(self, steps: list[Step]) -> None:
        if not steps:
            return
        # The body keeps what Outlook wrote outside the markers (K12): read the tasks not read yet.
        unread = [s for s in steps if "body" in s.names and s.task is None]
        refs = [RemoteRef(s.link.remote_id, s.link.remote_change_key, s.link.remote_folder_id) for s in unread]
        for step, found in zip(unread, self._read(refs), strict=True):
            if isinstance(found, TaskItem):
                step.task = found
        for batch in self._batches(steps):
            self.ctx.checkpoint()
            calls = []
            for step in batch:
                task = self.task_for(step.activity, step.task.body if step.task is not None else "")
                ref = RemoteRef(step.link.remote_id, step.link.remote_change_key, step.link.remote_folder_id or self.folder_id)
                calls.append((ref, task, sorted(step.names)))
            results = self.backend.update_tasks(self.mailbox, calls)
            self.wrote = True
            for step, result in zip(batch, results, strict=True):
                self.updated(step, result)

    def _read(self, refs: list[RemoteRef]) -> list[TaskItem | MailboxError]:
        out: list[TaskItem | MailboxError] = []
        for batch in self._batches(refs):
            out += self.backend.get_tasks(self.mailbox, batch, custom_rows.property_names(self.custom))
        return out

    def updated(self, step: Step, result: ItemResult) -> None:
        link = step.link
        if result.ok:
            self.agree(link, step.values, result.ref)
            link.save()
            self.ctx.carried_out(step.action().item, {actions.UPDATE})
            self.run.updated += 1
        elif isinstance(result.error, ItemNotFound):
            # Deleted meanwhile: the next pass reads the deletion and decides (T6).
            link.remote_change_key = ""
            link.save(update_fields=["remote_change_key", "updated_at"])
        else:
            self.item_failed(link, result.error)

    def write_deletes(self, steps: list[Step], links: list[ItemLink]) -> bool:
        """Deletions in the mailbox under the safety limit; False when it held them (T6)."""
        if not steps:
            return True
        synced = sum(1 for link in links if link.remote_id)
        share = len(steps) * 100 / max(synced, 1)
        if (
            len(steps) > self.settings.safety_limit_minimum
            and share > self.settings.safety_limit_percent
            and not self.user.limit_confirmed(SyncKind.TASKS)
        ):
            self.ctx.held_deletions.add(actions.EXCHANGE)
            self.run.error = (
                f"Held: this pass would delete {len(steps)} of {synced} synchronized tasks ({share:.0f} %), "
                "more than the safety limit. An administrator must confirm the deletions."
            )
            return False
        for batch in self._batches(steps):
            self.ctx.checkpoint()
            refs = [RemoteRef(s.link.remote_id, s.link.remote_change_key, s.link.remote_folder_id or self.folder_id) for s in batch]
            self.removed.update(ref.item_id for ref in refs)
            results = self.backend.delete_tasks(self.mailbox, refs)
            self.wrote = True
            for step, result in zip(batch, results, strict=True):
                if result.ok:
                    step.link.delete()
                    self.ctx.carried_out(step.action().item, {actions.DELETE})
                    self.run.deleted += 1
                else:
                    self.item_failed(step.link, result.error)
        return True

    def absorb_own_writes(self, state: FolderState) -> None:
        """Move the token past our own writes (one request per idle pass after); a foreign edit
        meanwhile stays visible: its change key differs from the one we recorded."""
        known = dict(
            ItemLink.objects.filter(sync_user=self.user, kind=mapping.TASK)
            .exclude(remote_id="")
            .values_list("remote_id", "remote_change_key")
        )
        try:
            page = self.backend.task_changes(self.mailbox, state.remote_folder_id, state.sync_token)
        except InvalidSyncToken:
            return
        foreign = [r for r in page.changed if r.item_id not in known or known[r.item_id] != r.change_key]
        if not foreign and set(page.deleted) <= self.removed:
            state.sync_token = page.token

    # --- Mailbox → CRM ------------------------------------------------------------------------

    def pull(self, activity: Activity, task: TaskItem, names: set[str]) -> None:
        """The named fields from the mailbox into the CRM (K8, T2)."""
        zone = zone_of(activity.time_zone)
        changed: list[str] = []
        customs = [row for row in self.custom if row.field in names]
        if customs:
            self.take_custom(activity, customs, task)
            changed.append("custom_fields")
            names = names - {row.field for row in customs}
        if "subject" in names:
            activity.subject = (task.subject or "").strip()[:255] or activity.subject
            changed.append("subject")
        if "body" in names:
            activity.comment = remote_comment(task)
            changed.append("comment")
        if "importance" in names:
            activity.priority = task.importance
            changed.append("priority")
        if "status" in names:
            self._set_status(activity, task, zone)
            changed += ["status", "completed_at"]
        if names & {"due", "start"}:
            # A day a custom field fills is not the CRM task's own due day or start.
            custom_days = {row.field for row in self.custom}
            if "due" not in custom_days:
                activity.due = task.due
            own_start = start_day(task.start, activity.due) if "start" not in custom_days else None
            self._set_start(activity, own_start, zone)
            changed += ["due", "start", "end"]
        if changed:
            activity.save(update_fields=[*changed, "updated_at"])
        self.run.updated += 1

    def take_custom(self, activity: Activity, rows: list[CustomRow], task: TaskItem) -> None:
        """The mailbox's values of custom rows into the task's custom fields (a value not of its
        key's type leaves the field as it is)."""
        for row in rows:
            value = custom_task_value(row, task) or ""
            if not row.take(activity, value):
                log.warning("%s: “%s” is not a %s for the custom field %s; not taken", self.mailbox, value, row.value_type, row.key)

    def _set_status(self, activity: Activity, task: TaskItem, zone: ZoneInfo) -> None:
        if task.status == "completed":
            activity.status = TaskStatus.COMPLETED
            day = task.completed_at
            if day is None or day == self.now.astimezone(zone).date():
                activity.completed_at = self.now
            else:
                activity.completed_at = datetime.combine(day, time.min, zone)
        else:
            activity.status, activity.completed_at = TaskStatus.OPEN, None

    def _set_start(self, activity: Activity, start: date | None, zone: ZoneInfo) -> None:
        """A task's start in the CRM: its start day's midnight, else its due day's (no start)."""
        day = start or activity.due
        if day is not None:
            activity.start = datetime.combine(day, time.min, zone)
        activity.end = activity.start

    def import_task(self, task: TaskItem) -> None:
        """T4: a task made in Outlook becomes a CRM task of this mailbox's employee."""
        contact, company, ambiguous = self.match(task)
        zone = ZoneInfo("UTC")
        with transaction.atomic():
            activity = Activity(
                environment=self.env,
                type=ActivityType.TASK,
                synchronize=True,
                created_by_erp=False,
                subject=((task.subject or "").strip() or "(no subject)")[:255],
                comment=remote_comment(task),
                time_zone="UTC",
                priority=task.importance,
                due=task.due,
                responsible=self.user.employee,
                contact=contact,
                company=company,
                start=datetime.combine(self.now.astimezone(zone).date(), time.min, zone),
            )
            self._set_status(activity, task, zone)
            self._set_start(activity, start_day(task.start, task.due), zone)
            activity.custom_fields = {}
            self.take_custom(activity, [row for row in self.custom if self.rows[row.field].both_ways], task)
            activity.save()
            link = ItemLink(
                environment=self.env, sync_user=self.user, kind=mapping.TASK, activity=activity, state=LinkState.SYNCED
            )
            self.agree(link, self.planner.remote(task), task.ref)
            if ambiguous:
                link.state = LinkState.AMBIGUOUS
                link.last_error, link.last_error_at = ambiguous, self.now
            link.save()
        self.run.created += 1

    def match(self, task: TaskItem) -> tuple[Contact | None, Company | None, str]:
        """T4: a contact, else a company, when exactly one matches an address or a company name
        in the task; several: none, and why (for the administrator)."""
        text = f"{task.subject or ''}\n{ev.body_text(task.body or '')}"
        emails = {e.lower().rstrip(".") for e in EMAIL.findall(text)}
        if emails:
            by_address = Q()
            for email in emails:
                by_address |= Q(email1__iexact=email) | Q(email2__iexact=email) | Q(email3__iexact=email)
            contacts = list(Contact.objects.filter(by_address, environment=self.env)[:3])
            if len(contacts) == 1:
                return contacts[0], None, ""
            if contacts:
                return None, None, self._ambiguous(task, [c.full_name for c in contacts])
        lowered = text.lower()
        if self._companies is None:
            self._companies = list(Company.objects.filter(environment=self.env).values_list("pk", "name"))
        by_email = set(
            Company.objects.filter(environment=self.env, email__in=list(emails)).values_list("pk", flat=True)
        ) if emails else set()
        by_name = {pk for pk, name in self._companies if len(name.strip()) >= 3 and name.strip().lower() in lowered}
        found = by_email | by_name
        if len(found) == 1:
            return None, Company.objects.get(pk=next(iter(found))), ""
        if found:
            names = sorted(name for pk, name in self._companies if pk in found)
            return None, None, self._ambiguous(task, names)
        return None, None, ""

    @staticmethod
    def _ambiguous(task: TaskItem, names: list[str]) -> str:
        shown = ", ".join(names[:3]) + (" …" if len(names) > 3 else "")
        return (
            f"The Outlook task “{task.subject}” names several CRM records ({shown}): it was imported "
            "without a link. Link it to the right contact or company in the CRM."
        )
