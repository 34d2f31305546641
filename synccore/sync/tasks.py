"""One task pass for one sync user: CRM activities of type Task ⇄ the mailbox's tasks (T1–T6).

EWS: the default Tasks folder; Graph: the default Microsoft To Do list. Per pass: read what
changed in the task folder since its token, select the CRM tasks this mailbox carries (T1: the
responsible employee's sync user), decide every item first — ``TaskPlanner`` gives ``Step``\\ s,
each with its plain-data ``Action`` for a preview — and only then write: the CRM side at once, the
mailbox side in batches (creates, then updates, then deletions under the safety limit).

The normal form compared and kept in a link's snapshot (the three-way merge of the calendar, K8):
trimmed subject, the CRM comment as text between the body markers (K12), status, due and start
as ISO days, importance. Exchange keeps a task's dates as days and computes completion itself
(the completion *day* is the server's), so status and days are compared, never instants: a
completion then stays quiet (T2). A start counts only when the task has a due day and starts
before it (a CRM task without a start has its due day's midnight as start).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

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
    ConflictChoice,
    ConflictPolicy,
    Contact,
    FieldMapping,
    FolderState,
    ItemLink,
    LinkState,
    PersonalDeletionPolicy,
    SyncDirection,
    SyncKind,
    SyncRun,
    SyncUser,
    TaskStatus,
)
from synccore.sync import actions
from synccore.sync import events as ev
from synccore.sync.actions import Action, ItemKey
from synccore.sync.runs import PassContext, execute_pass

log = logging.getLogger(__name__)

# Normal-form fields, named as the Exchange side of the mapping (T3).
FIELDS = ("subject", "body", "status", "due", "start", "importance")
_EMAIL = re.compile(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+")
_PUSHES = (SyncDirection.BOTH, SyncDirection.CRM_TO_MAILBOX)
_PULLS = (SyncDirection.BOTH, SyncDirection.MAILBOX_TO_CRM)
_MISSING = object()


class TaskSyncDisabled(Exception):
    pass


# --- The normal form ----------------------------------------------------------------------------


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _start_day(start: date | None, due: date | None) -> date | None:
    """A start counts only before a due day (see the module's docstring)."""
    return start if start is not None and due is not None and start < due else None


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


def crm_start_day(activity: Activity) -> date | None:
    return _start_day(activity.start.astimezone(_zone(activity.time_zone)).date(), activity.due)


def activity_values(activity: Activity) -> dict[str, Any]:
    return {
        "subject": activity.subject.strip(),
        "body": ev.body_text(activity.comment or ""),
        "status": TaskStatus.COMPLETED.value if activity.status == TaskStatus.COMPLETED else "open",
        "due": _iso(activity.due),
        "start": _iso(crm_start_day(activity)),
        "importance": activity.priority or "normal",
    }


def remote_comment(task: TaskItem) -> str:
    before, inside, _ = ev.split_body(ev.body_text(task.body or ""))
    return inside if inside is not None else before


def task_values(task: TaskItem) -> dict[str, Any]:
    return {
        "subject": (task.subject or "").strip(),
        "body": remote_comment(task),
        "status": "completed" if task.status == "completed" else "open",
        "due": _iso(task.due),
        "start": _iso(_start_day(task.start, task.due)),
        "importance": task.importance or "normal",
    }


def _day(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


@dataclass(frozen=True)
class Row:
    """One task mapping row as the pass honours it (T3)."""

    enabled: bool = True
    both_ways: bool = True


def mapping_rows(env_id: int) -> dict[str, Row]:
    """The task rows of the field mapping by Exchange field; a field without a row: the default."""
    rows = {name: Row() for name in (*FIELDS, "reminder")}
    rows["reminder"] = Row(both_ways=False)
    for row in FieldMapping.objects.filter(environment_id=env_id, entity=mapping.TASK):
        if row.exchange_field in rows:
            rows[row.exchange_field] = Row(row.enabled, row.direction == mapping.BOTH)
    for name in ("subject", "status"):  # fixed rows: the pass depends on them
        rows[name] = Row(True, rows[name].both_ways)
    return rows


# --- Steps --------------------------------------------------------------------------------------

_EXCHANGE_KINDS = {actions.CREATE, actions.UPDATE}


@dataclass
class Step:
    """One decision for one item; ``action()`` is its plain-data form for a preview."""

    kind: str
    rule: str
    reason: str
    link: ItemLink | None = None
    activity: Activity | None = None
    task: TaskItem | None = None
    names: set[str] = field(default_factory=set)
    values: dict[str, Any] = field(default_factory=dict)  # AGREE / UPDATE: the agreed normal form
    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    side: str = ""
    choice: str = ""  # CONFLICT: the side the policy chose
    recreate: bool = False  # CREATE: written again (an edit beat a delete, T6)

    def __post_init__(self) -> None:
        if not self.side:
            self.side = actions.EXCHANGE if self.kind in _EXCHANGE_KINDS else actions.CRM

    def action(self) -> Action:
        activity = self.activity or (self.link.activity if self.link is not None else None)
        remote_id = self.task.ref.item_id if self.task is not None and self.task.ref else ""
        if not remote_id and self.link is not None:
            remote_id = self.link.remote_id
        subject = activity.subject if activity is not None else self.task.subject if self.task else ""
        item = ItemKey(activity.pk if activity is not None else None, remote_id, subject)
        return Action(self.kind, item, self.side, dict(self.fields), self.reason, self.rule)


# --- The decision table ---------------------------------------------------------------------------


class TaskPlanner:
    """T1–T6 for one user: one function per direction; reads only, returns ``Step``\\ s."""

    def __init__(self, user: SyncUser, rows: dict[str, Row]) -> None:
        self.user = user
        self.settings = user.environment.settings
        self.direction = self.settings.tasks_direction
        self.rows = rows
        self.pushes = self.direction in _PUSHES
        self.pulls = self.direction in _PULLS

    def crm(self, activity: Activity) -> dict[str, Any]:
        return {k: v for k, v in activity_values(activity).items() if self.rows[k].enabled}

    def remote(self, task: TaskItem) -> dict[str, Any]:
        return {k: v for k, v in task_values(task).items() if self.rows[k].enabled}

    # Mailbox → CRM: a task the CRM has no link for (T4) ---------------------------------------

    def foreign(self, task: TaskItem, pending: dict[str, ItemLink], known_sync_ids: set[str]) -> Step | None:
        link = pending.get(task.sync_id) if task.sync_id else None
        if link is not None:
            return Step(actions.ADOPT, "", "A create whose link was lost in a crash.", link=link, task=task)
        if task.sync_id and task.sync_id in known_sync_ids:
            return None  # ours, linked elsewhere (another folder's copy): never a second activity
        if not self.pulls:
            return None  # T5: the mailbox's own tasks stay there
        if task.status == "completed":
            return None  # as T2 the other way: a task done before it was ever synced stays out
        return Step(actions.IMPORT, "T4", "Made in Outlook, unknown to the CRM.", task=task)

    # CRM → mailbox: a task of mine without a link (T1, T2) ------------------------------------

    def new(self, activity: Activity) -> Step | None:
        if not self.pushes or activity.status == TaskStatus.COMPLETED:
            return None  # T5; T2: a task already completed in the CRM is never created
        values = self.crm(activity)
        return Step(
            actions.CREATE,
            "T1",
            "A CRM task of this mailbox's employee, not yet in the mailbox.",
            activity=activity,
            values=values,
            fields=actions.field_changes(set(values), {}, values),
        )

    # Both ways for a linked task ---------------------------------------------------------------

    def linked(self, link: ItemLink, mine: Activity | None, task: TaskItem | None, gone: bool) -> list[Step]:
        activity = link.activity
        if link.state in (LinkState.NOT_FOUND, LinkState.DELETED_REMOTE):
            return []  # lost in a change of backend (H2), or kept after a deletion (T6)
        if not link.remote_id:
            if mine is not None and self.pushes and mine.status != TaskStatus.COMPLETED:
                values = self.crm(mine)
                return [Step(actions.CREATE, "T1", "Not yet in the mailbox.", link=link, activity=mine, values=values)]
            return [Step(actions.DROP_LINK, "T1", "Nothing was written for it.", link=link)]
        if mine is None:
            return self.gone_from_crm(link, activity, task, gone)
        if gone:
            return self.deleted_in_mailbox(link, mine)
        return self.compare(link, mine, task)

    def gone_from_crm(self, link: ItemLink, activity: Activity, task: TaskItem | None, gone: bool) -> list[Step]:
        """Deleted in the CRM, un-synchronized, or given to another employee (T1, T6)."""
        if gone:
            return [Step(actions.DROP_LINK, "T6", "Deleted on both sides.", link=link)]
        if task is not None and activity.is_tombstone and self.pulls and self.changed(link.snapshot, self.remote(task)):
            reason = "Edited in the mailbox after its deletion in the CRM: an edit beats a delete."
            return [Step(actions.RESTORE, "T6", reason, link=link, activity=activity, task=task)]
        if not self.pushes:
            # T5: the CRM's changes do not reach the mailbox; the task stays there, unlinked.
            return [Step(actions.DROP_LINK, "T5", "Gone from the CRM; the mailbox keeps its task.", link=link)]
        return [Step(actions.DELETE, "T6", "Gone from the CRM.", link=link, side=actions.EXCHANGE)]

    def deleted_in_mailbox(self, link: ItemLink, activity: Activity) -> list[Step]:
        """T6 as K9 for a personal appointment; an edit in the CRM beats the delete."""
        crm = self.crm(activity)
        if self.pushes and self.changed(link.snapshot, crm) and activity.status != TaskStatus.COMPLETED:
            reason = "Deleted in the mailbox, changed in the CRM: an edit beats a delete."
            return [Step(actions.CREATE, "T6", reason, link=link, activity=activity, values=crm, recreate=True)]
        if self.pulls and self.settings.personal_deletion_policy == PersonalDeletionPolicy.DELETE:
            reason = "Deleted in the mailbox; the policy deletes the CRM task."
            return [Step(actions.DELETE, "T6", reason, link=link, activity=activity)]
        reason = "Deleted in the mailbox; kept in the CRM and not written again."
        return [Step(actions.KEEP, "T6", reason, link=link, activity=activity)]

    @staticmethod
    def changed(snapshot: dict[str, Any], values: dict[str, Any]) -> set[str]:
        """Fields that moved since the last agreement (all of them without one: an adopted task)."""
        return {k for k, v in values.items() if snapshot.get(k, _MISSING) != v}

    def compare(self, link: ItemLink, activity: Activity, task: TaskItem | None) -> list[Step]:
        """The three-way merge (K8) within the direction (T5) and the mapping rows (T3)."""
        snapshot = link.snapshot or {}
        crm = self.crm(activity)
        crm_changed = self.changed(snapshot, crm)
        if task is None and not crm_changed:
            return []
        ex = self.remote(task) if task is not None else {}
        ex_all = self.changed(snapshot, ex) & set(crm) if task is not None else set()
        ex_changed = {k for k in ex_all if self.rows[k].both_ways}
        # A one-way row's field edited in Outlook is written over with the CRM's value (T3).
        overwrite = {k for k in ex_all - ex_changed if ex[k] != crm[k]}
        steps: list[Step] = []
        push: set[str] = set()
        pull: set[str] = set()
        if self.direction == SyncDirection.CRM_TO_MAILBOX:
            # The CRM is the source: what Outlook changed is written over (as contacts, C6).
            push = crm_changed | {k for k in ex_all if ex[k] != crm[k]}
        elif self.direction == SyncDirection.MAILBOX_TO_CRM:
            pull = {k for k in ex_changed if ex[k] != crm[k]}
        else:
            push = (crm_changed - ex_changed) | overwrite
            pull = ex_changed - crm_changed
            for name in sorted(crm_changed & ex_changed):
                if crm[name] == ex[name]:
                    continue
                choice = self.resolve(activity, task)
                (push if choice == ConflictChoice.CRM else pull).add(name)
                steps.append(
                    Step(
                        actions.CONFLICT,
                        "K8",
                        "Changed on both sides; the conflict policy chose.",
                        link=link,
                        fields={name: (crm[name], ex[name])},
                        choice=choice,
                    )
                )
        if task is None and not (push or pull):
            return []  # a CRM edit this direction does not carry (T5)
        held = ex if task is not None else snapshot
        # What both sides hold once the writes are done; fields not written keep the last agreement.
        agreed = {k: ex[k] if k in pull else crm[k] if k in push else snapshot.get(k, crm[k]) for k in crm}
        if self.direction == SyncDirection.BOTH:
            agreed = {k: ex[k] if k in pull else crm[k] for k in crm}
        if pull:
            steps.append(
                Step(
                    actions.PULL,
                    "T2" if pull == {"status"} else "K8",
                    "Changed in the mailbox.",
                    link=link,
                    activity=activity,
                    task=task,
                    names=pull,
                    fields=actions.field_changes(pull, crm, ex),
                )
            )
        if push:
            steps.append(
                Step(
                    actions.UPDATE,
                    "T2" if push == {"status"} else "K8",
                    "Changed in the CRM.",
                    link=link,
                    activity=activity,
                    task=task,
                    names=push,
                    values=agreed,
                    fields=actions.field_changes(push, held, crm),
                )
            )
        else:
            reason = "Both sides agree." if pull or crm_changed else "A change key moved without a real edit."
            steps.append(Step(actions.AGREE, "K8", reason, link=link, task=task, values=agreed))
        return steps

    def resolve(self, activity: Activity, task: TaskItem | None) -> str:
        policy = self.settings.conflict_policy
        if policy == ConflictPolicy.CRM_WINS:
            return ConflictChoice.CRM
        if policy == ConflictPolicy.EXCHANGE_WINS:
            return ConflictChoice.EXCHANGE
        remote_time = (task.last_modified if task is not None else None) or timezone.now()
        return ConflictChoice.CRM if activity.updated_at >= remote_time else ConflictChoice.EXCHANGE


# --- The pass -----------------------------------------------------------------------------------


class TaskPass:
    """Reads both sides, plans every item, then writes (CRM at once, the mailbox in batches)."""

    def __init__(self, user: SyncUser, backend: MailboxBackend, ctx: PassContext, run: SyncRun) -> None:
        self.user = user
        self.env = user.environment
        self.settings = self.env.settings
        self.backend = backend
        self.ctx = ctx
        self.run = run
        self.mailbox = user.mailbox_email
        self.now = timezone.now()
        self.rows = mapping_rows(self.env.pk)
        self.planner = TaskPlanner(user, self.rows)
        self.folder_id = ""
        self.wrote = False
        self.removed: set[str] = set()
        self._companies: list[tuple[int, str]] | None = None

    # --- Reading ------------------------------------------------------------------------------

    def my_tasks(self) -> dict[int, Activity]:
        """T1: synchronized CRM tasks whose responsible employee is this sync user's."""
        responsible = Q(responsible_id=self.user.employee_id)
        if self.mailbox:
            responsible |= Q(responsible__email__iexact=self.mailbox)
        found = Activity.objects.filter(
            environment=self.env, type=ActivityType.TASK, synchronize=True, is_stub=False
        ).filter(responsible)
        return {activity.pk: activity for activity in found}

    def read_changes(self, state: FolderState, by_remote: dict[str, ItemLink]) -> tuple[list[RemoteRef], set[str]]:
        try:
            page = self.backend.task_changes(self.mailbox, state.remote_folder_id, state.sync_token)
        except InvalidSyncToken:
            log.warning("task sync token of %s rejected; reading the folder again", self.mailbox)
            page = self.backend.task_changes(self.mailbox, state.remote_folder_id, "")
            state.sync_token = page.token
            present = {ref.item_id for ref in page.changed}
            changed = [r for r in page.changed if r.item_id not in by_remote or by_remote[r.item_id].remote_change_key != r.change_key]
            return changed, set(by_remote) - present
        state.sync_token = page.token
        changed = [
            ref
            for ref in page.changed
            if ref.item_id not in by_remote or by_remote[ref.item_id].remote_change_key != ref.change_key
        ]
        return changed, set(page.deleted)

    def read_tasks(self, refs: list[RemoteRef], by_remote: dict[str, ItemLink], deleted: set[str]) -> dict[str, TaskItem]:
        out: dict[str, TaskItem] = {}
        size = max(1, self.settings.batch_size)
        for start in range(0, len(refs), size):
            batch = refs[start : start + size]
            for ref, task in zip(batch, self.backend.get_tasks(self.mailbox, batch), strict=True):
                if isinstance(task, ItemNotFound):
                    deleted.add(ref.item_id)
                elif isinstance(task, MailboxError):
                    link = by_remote.get(ref.item_id)
                    if link is not None:
                        self.item_failed(link, task)
                    else:
                        log.warning("could not read task %s of %s: %s", ref.item_id, self.mailbox, task)
                else:
                    if task.ref is not None and not task.ref.folder_id:
                        task.ref = RemoteRef(task.ref.item_id, task.ref.change_key, self.folder_id)
                    out[ref.item_id] = task
        return out

    def plan(
        self, links: list[ItemLink], mine: dict[int, Activity], remote: dict[str, TaskItem], deleted: set[str]
    ) -> list[Step]:
        """Every item through the table; nothing is written here."""
        planner = self.planner
        steps = self.plan_foreign(links, remote)
        adopted = {step.link.pk: step.task for step in steps if step.kind == actions.ADOPT}
        for link in links:
            task = adopted.get(link.pk) or remote.get(link.remote_id)
            if link.pk in adopted:
                # Adopted: compared as a linked task (both sides against an empty agreement).
                steps += planner.compare(link, mine[link.activity_id], task) if link.activity_id in mine else []
                continue
            steps += planner.linked(link, mine.get(link.activity_id), task, link.remote_id in deleted)
        linked_ids = {link.activity_id for link in links}
        for activity_id, activity in mine.items():
            if activity_id not in linked_ids:
                step = planner.new(activity)
                if step is not None:
                    steps.append(step)
        return steps

    def plan_foreign(self, links: list[ItemLink], remote: dict[str, TaskItem]) -> list[Step]:
        """Mailbox → CRM for the tasks no link knows (T4), and adoption by sync id."""
        by_remote = {link.remote_id for link in links if link.remote_id}
        pending = {str(link.sync_id): link for link in links if not link.remote_id}
        known = {str(link.sync_id) for link in links}
        steps = []
        for item_id, task in remote.items():
            if item_id not in by_remote:
                step = self.planner.foreign(task, pending, known)
                if step is not None:
                    steps.append(step)
        return steps

    def execute(self) -> bool:
        state, _ = FolderState.objects.get_or_create(sync_user=self.user, kind=SyncKind.TASKS, folder_name="")
        if not state.remote_folder_id:
            state.remote_folder_id = self.backend.ensure_task_folder(self.mailbox)
            state.sync_token = ""
        self.folder_id = state.remote_folder_id
        links = self.links()
        by_remote = {link.remote_id: link for link in links if link.remote_id}
        # A mailbox never read and nothing linked (a new user): its first read comes after the
        # writes, so one delta round gives both Outlook's own tasks and a token past ours.
        fresh = not state.sync_token and not links
        changed, deleted = ([], set()) if fresh else self.read_changes(state, by_remote)
        remote = self.read_tasks(changed, by_remote, deleted)
        steps = self.plan(links, self.my_tasks(), remote, deleted)
        for step in steps:
            self.ctx.decided(step.action())
        allowed = self.write(steps, links)
        if fresh:
            links = self.links()
            by_remote = {link.remote_id: link for link in links if link.remote_id}
            changed, deleted = self.read_changes(state, by_remote)
            foreign = self.plan_foreign(links, self.read_tasks(changed, by_remote, deleted))
            for step in foreign:
                self.ctx.decided(step.action())
            self.write(foreign, links)
        elif self.wrote:
            self.absorb_own_writes(state)
        state.save()
        if allowed and self.user.deletions_confirmed and any(s.kind == actions.DELETE and s.side == actions.EXCHANGE for s in steps):
            self.user.deletions_confirmed = False
            self.user.save(update_fields=["deletions_confirmed", "updated_at"])
        return allowed

    def links(self) -> list[ItemLink]:
        return list(ItemLink.objects.filter(sync_user=self.user, kind=mapping.TASK).select_related("activity"))

    # --- Writing ------------------------------------------------------------------------------

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
                self.ctx.decided(follow.action())
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
            start=_day(values["start"]),
            importance=values["importance"],
        )
        if reminder and self.rows["reminder"].enabled and activity.due is not None:
            minutes = activity.reminder_minutes
            if minutes is None:
                minutes = self.settings.reminder_task_minutes
            if minutes is not None:
                # K13: minutes before the start of the due day, in the task's zone.
                midnight = datetime.combine(activity.due, time.min, _zone(activity.time_zone))
                task.reminder = (midnight - timedelta(minutes=minutes)).astimezone(UTC)
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
            out += self.backend.get_tasks(self.mailbox, batch)
        return out

    def updated(self, step: Step, result: ItemResult) -> None:
        link = step.link
        if result.ok:
            self.agree(link, step.values, result.ref)
            link.save()
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
            and not self.user.deletions_confirmed
        ):
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
        zone = _zone(activity.time_zone)
        changed: list[str] = []
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
            activity.due = task.due
            self._set_start(activity, _start_day(task.start, task.due), zone)
            changed += ["due", "start", "end"]
        if changed:
            activity.save(update_fields=[*changed, "updated_at"])
        self.run.updated += 1

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
            self._set_start(activity, _start_day(task.start, task.due), zone)
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
        emails = {e.lower().rstrip(".") for e in _EMAIL.findall(text)}
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


def run_task_pass(user_id: int, ctx: PassContext | None = None, backend: MailboxBackend | None = None) -> SyncRun:
    """One task pass for one sync user. Never raises for mailbox trouble: the run says it."""
    ctx = ctx or PassContext()
    user = SyncUser.objects.select_related("environment__settings", "employee").get(pk=user_id)
    sync_settings = user.environment.settings
    if not sync_settings.synchronize_tasks or sync_settings.tasks_direction == SyncDirection.OFF:
        raise TaskSyncDisabled(f"Task synchronization is off in {user.environment.name}.")
    if not (user.active and user.tasks_enabled):
        raise TaskSyncDisabled(f"{user.mailbox_email} does not synchronize tasks (inactive or turned off).")
    return execute_pass(user, SyncKind.TASKS, ctx, backend, lambda run, b: TaskPass(user, b, ctx, run).execute())
