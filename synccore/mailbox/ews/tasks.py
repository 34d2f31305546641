"""The task operations of the EWS backend: task items in the mailbox's default Tasks folder,
changes by SyncFolderItems (as for contacts), bulk writes, and the sync id extended property.

Exchange keeps a task's dates as days (midnight UTC) and computes completion itself: ``Status``
Completed sets 100 % and the completion day, which exchangelib treats as read-only — so the
completion day is read, never written."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal

from exchangelib import Account, EWSDateTime, Task
from exchangelib.folders import Tasks

from synccore.mailbox import base
from synccore.mailbox.base import ChangePage, ConnectionConfig, ItemResult, MailboxError, RemoteRef, TaskItem
from synccore.mailbox.ews.client import bulk_create, bulk_update, translate
from synccore.mailbox.ews.translation import (
    SYNC_ID_FIELD,
    SyncIdProperty,
    property_field,
    read_properties,
    set_properties,
)

if SYNC_ID_FIELD not in {f.name for f in Task.FIELDS}:
    Task.register(SYNC_ID_FIELD, SyncIdProperty)

_IMPORTANCE = {"low": "Low", "normal": "Normal", "high": "High"}
_FROM_IMPORTANCE = {v: k for k, v in _IMPORTANCE.items()}
# TaskItem field → the exchangelib fields a write of it sends.
_FIELDNAMES = {
    "subject": ("subject",),
    "body": ("body",),
    "status": ("status", "percent_complete"),
    "due": ("due_date",),
    "start": ("start_date",),
    "importance": ("importance",),
    "reminder": ("reminder_is_set", "reminder_due_by"),
}


def task_fieldnames(names: Iterable[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        if name.startswith(base.PROPERTY_PREFIX):
            out.append(property_field(name[len(base.PROPERTY_PREFIX) :], Task))
            continue
        out += [n for n in _FIELDNAMES[name] if n not in out]
    return out


def to_task(task: TaskItem, account: Account, folder=None) -> Task:
    completed = task.status == "completed"
    item = Task(
        account=account,
        folder=folder,
        subject=task.subject,
        body=task.body or None,
        status=Task.COMPLETED if completed else Task.NOT_STARTED,
        percent_complete=Decimal(100) if completed else Decimal(0),
        due_date=task.due,
        start_date=task.start,
        importance=_IMPORTANCE[task.importance],
        reminder_is_set=task.reminder is not None,
        reminder_due_by=EWSDateTime.from_datetime(task.reminder.astimezone(UTC)) if task.reminder else None,
    )
    if task.sync_id:
        setattr(item, SYNC_ID_FIELD, task.sync_id)
    set_properties(item, task.properties)
    return item


def _day(value: date | datetime | None) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        # A day kept as midnight UTC: its UTC date is the day.
        return _utc(value).date() if value.tzinfo else value.date()
    return date(value.year, value.month, value.day)


def _utc(value: datetime) -> datetime:
    # exchangelib's own datetime type refuses the standard library's UTC in astimezone().
    return datetime.fromtimestamp(value.timestamp(), UTC)


def from_task(item: Task, folder_id: str) -> TaskItem:
    return TaskItem(
        subject=item.subject or "",
        body=str(item.body or ""),
        status="completed" if item.status == Task.COMPLETED else "open",
        due=_day(item.due_date),
        start=_day(item.start_date),
        completed_at=_day(item.complete_date) if item.status == Task.COMPLETED else None,
        importance=_FROM_IMPORTANCE.get(item.importance or "Normal", "normal"),  # type: ignore[arg-type]
        reminder=_utc(item.reminder_due_by) if item.reminder_is_set and item.reminder_due_by else None,
        sync_id=getattr(item, SYNC_ID_FIELD, None) or "",
        ref=RemoteRef(item.id, item.changekey or "", folder_id),
        last_modified=_utc(item.last_modified_time) if item.last_modified_time else None,
    )


class TaskOperations:
    """The task half of ``MailboxBackend`` over EWS, mixed into ``EwsBackend``, whose
    ``account``, ``call``, ``root``, ``folder``, ``contact_changes`` and ``find_by_sync_ids`` it uses."""

    config: ConnectionConfig

    def ensure_task_folder(self, mailbox: str) -> str:
        account = self.account(mailbox)
        return self.call(Tasks.get_distinguished, self.root(account)).id

    def task_changes(self, mailbox: str, folder_id: str, token: str) -> ChangePage:
        return self.contact_changes(mailbox, folder_id, token)

    def get_tasks(
        self, mailbox: str, refs: Sequence[RemoteRef], properties: Sequence[str] = ()
    ) -> list[TaskItem | MailboxError]:
        if not refs:
            return []
        for name in properties:
            property_field(name, Task)  # registered: a fetch reads every field of the class
        account = self.account(mailbox)
        # The Tasks folder validates the fields: exchangelib's default asks the server for the root
        # folder first, one request more per pass that reads.
        validation = self.folder(account, refs[0].folder_id)
        items = self.call(
            lambda: list(
                account.fetch(
                    ids=[(r.item_id, None) for r in refs], folder=validation, chunk_size=self.config.batch_size
                )
            )
        )
        out: list[TaskItem | MailboxError] = []
        for ref, item in zip(refs, items, strict=True):
            if isinstance(item, Exception):
                out.append(translate(item))
            elif not isinstance(item, Task):
                out.append(base.ItemNotFound(f"{ref.item_id} is not a task.", code="ErrorItemNotFound"))
            else:
                task = from_task(item, ref.folder_id)
                task.properties = read_properties(item, properties)
                out.append(task)
        return out

    def find_tasks_by_sync_ids(
        self, mailbox: str, folder_id: str, sync_ids: Sequence[str]
    ) -> dict[str, RemoteRef]:
        return self.find_by_sync_ids(mailbox, [folder_id], sync_ids)

    def create_tasks(self, mailbox: str, folder_id: str, tasks: Sequence[TaskItem]) -> list[ItemResult]:
        if not tasks:
            return []
        account = self.account(mailbox)
        folder = self.folder(account, folder_id)
        return bulk_create(
            self.call,
            account,
            folder,
            tasks,
            lambda task: to_task(task, account, folder),
            folder_id=folder_id,
            chunk_size=self.config.batch_size,
        )

    def update_tasks(
        self, mailbox: str, updates: Sequence[tuple[RemoteRef, TaskItem, Iterable[str]]]
    ) -> list[ItemResult]:
        if not updates:
            return []
        account = self.account(mailbox)

        def build(task: TaskItem, names: Iterable[str]) -> tuple[Task, list[str]]:
            fieldnames = task_fieldnames(names)
            if task.sync_id:
                fieldnames.append(SYNC_ID_FIELD)
            return to_task(task, account), fieldnames

        # The engine merged both sides before writing (as for events): the write overwrites.
        return bulk_update(self.call, account, updates, build, chunk_size=self.config.batch_size)

    def delete_tasks(self, mailbox: str, refs: Sequence[RemoteRef]) -> list[ItemResult]:
        return self.delete_items(mailbox, refs)
