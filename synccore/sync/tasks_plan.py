"""The task decision table (T1–T6, DESIGN §4) as a plan: the normal form both sides are compared
in, the mapping rows the pass honours (T3), and ``TaskPlanner``, which turns each item into
``Step``\\ s without writing anything. ``tasks_write.TaskWrites`` carries the steps out;
``tasks.TaskPass`` reads and orchestrates (as the calendar's three modules).

The normal form compared and kept in a link's snapshot (the three-way merge of the calendar, K8):
trimmed subject, the CRM comment as text between the body markers (K12), status, due and start
as ISO days, importance. Exchange keeps a task's dates as days and computes completion itself
(the completion *day* is the server's), so status and days are compared, never instants: a
completion then stays quiet (T2). A start counts only when the task has a due day and starts
before it (a CRM task without a start has its due day's midnight as start).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.utils import timezone

from synccore import mapping
from synccore.mailbox.base import TaskItem
from synccore.models import (
    Activity,
    ConflictChoice,
    ConflictPolicy,
    FieldMapping,
    ItemLink,
    LinkState,
    PersonalDeletionPolicy,
    SyncDirection,
    SyncUser,
    TaskStatus,
)
from synccore.sync import actions
from synccore.sync import events as ev
from synccore.sync.actions import Action, ItemKey
from synccore.sync.custom_rows import CustomRow

# Normal-form fields, named as the Exchange side of the mapping (T3).
FIELDS = ("subject", "body", "status", "due", "start", "importance")
EMAIL = re.compile(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+")
_PUSHES = (SyncDirection.BOTH, SyncDirection.CRM_TO_MAILBOX)
_PULLS = (SyncDirection.BOTH, SyncDirection.MAILBOX_TO_CRM)
_MISSING = object()


# --- The normal form ----------------------------------------------------------------------------


def zone_of(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def start_day(start: date | None, due: date | None) -> date | None:
    """A start counts only before a due day (see the module's docstring)."""
    return start if start is not None and due is not None and start < due else None


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


def crm_start_day(activity: Activity) -> date | None:
    return start_day(activity.start.astimezone(zone_of(activity.time_zone)).date(), activity.due)


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
        "start": _iso(start_day(task.start, task.due)),
        "importance": task.importance or "normal",
    }


def day_of(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


@dataclass(frozen=True)
class Row:
    """One task mapping row as the pass honours it (T3)."""

    enabled: bool = True
    both_ways: bool = True  # Outlook's edits are taken (both ways, or Exchange → CRM)
    to_mailbox: bool = True  # the CRM's edits are written (both ways, or CRM → Exchange)


def mapping_rows(env_id: int) -> dict[str, Row]:
    """The task rows of the field mapping by Exchange field; a field without a row: the default."""
    rows = {name: Row() for name in (*FIELDS, "reminder")}
    rows["reminder"] = Row(both_ways=False)
    for row in FieldMapping.objects.filter(environment_id=env_id, entity=mapping.TASK):
        if row.exchange_field in rows:
            rows[row.exchange_field] = Row(
                row.enabled, row.direction != mapping.CRM_TO_EXCHANGE, row.direction != mapping.EXCHANGE_TO_CRM
            )
    for name in ("subject", "status"):  # fixed rows: the pass depends on them
        rows[name] = dataclasses.replace(rows[name], enabled=True)
    return rows


def with_custom(rows: dict[str, Row], custom: tuple[CustomRow, ...]) -> dict[str, Row]:
    """The rows with the custom ones (``custom_rows.py``): a custom field in the normal form under
    its Exchange field's name, an extended property or a start or due day whose own row is off."""
    out = dict(rows)
    for row in custom:
        out[row.field] = Row(True, row.direction != mapping.CRM_TO_EXCHANGE, row.direction != mapping.EXCHANGE_TO_CRM)
    return out


def custom_crm_value(row: CustomRow, activity: Activity) -> str | None:
    text = row.crm_text(activity)
    return text if row.is_property else (text or None)  # a day of the normal form, or None


def custom_task_value(row: CustomRow, task: TaskItem) -> str | None:
    if row.is_property:
        return (task.properties.get(row.property_name) or "").strip()
    return _iso(getattr(task, row.field, None))


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
        if self.kind == actions.CREATE and not self.fields:
            # What a create writes (nothing before), as an update carries its fields: for a
            # preview and Explain, whichever path decided it (a first create, a lost one, T6).
            self.fields = actions.field_changes(set(self.values), {}, self.values)

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

    def __init__(self, user: SyncUser, rows: dict[str, Row], custom: tuple[CustomRow, ...] = ()) -> None:
        self.user = user
        self.settings = user.environment.settings
        self.direction = self.settings.tasks_direction
        self.custom = custom
        self.rows = with_custom(rows, custom)
        self.pushes = self.direction in _PUSHES
        self.pulls = self.direction in _PULLS

    def crm(self, activity: Activity) -> dict[str, Any]:
        values = {k: v for k, v in activity_values(activity).items() if self.rows[k].enabled}
        return values | {row.field: custom_crm_value(row, activity) for row in self.custom}

    def remote(self, task: TaskItem) -> dict[str, Any]:
        values = {k: v for k, v in task_values(task).items() if self.rows[k].enabled}
        return values | {row.field: custom_task_value(row, task) for row in self.custom}

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

    def changed(self, snapshot: dict[str, Any], values: dict[str, Any]) -> set[str]:
        """Fields that moved since the last agreement (all of them without one: an adopted task).
        A custom field the snapshot does not hold yet (its row is new) was empty (C8)."""
        empty = {row.field: "" if row.is_property else None for row in self.custom}
        return {k for k, v in values.items() if snapshot.get(k, empty.get(k, _MISSING)) != v}

    def compare(self, link: ItemLink, activity: Activity, task: TaskItem | None) -> list[Step]:
        """The three-way merge (K8) within the direction (T5) and the mapping rows (T3)."""
        snapshot = link.snapshot or {}
        crm = self.crm(activity)
        # A row that goes Exchange → CRM only: the CRM's edit of it is not written (T3).
        crm_changed = {k for k in self.changed(snapshot, crm) if self.rows[k].to_mailbox}
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
            agreed = {
                k: ex[k] if k in pull else crm[k] if k in push or self.rows[k].to_mailbox else snapshot.get(k, crm[k])
                for k in crm
            }
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
