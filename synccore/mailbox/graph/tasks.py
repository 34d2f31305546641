"""The task operations of the Graph backend: Microsoft To Do's default list, ``tasks/delta``, and
writes through ``$batch``.

To Do has no extended properties: the sync id rides in one ``linkedResource`` of each task
(``applicationName`` = the product, ``externalId`` = the sync id). Graph offers no ``$filter`` on
linked resources, so a task is found by its sync id by listing the list with
``$expand=linkedResources``. Task dates are days (Graph answers midnight UTC); completion is the
server's (``status`` completed sets the completion day)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Any

from synccore.mailbox import base
from synccore.mailbox.base import ChangePage, ConnectionConfig, ItemResult, MailboxError, RemoteRef, TaskItem
from synccore.mailbox.graph.client import (
    IMMUTABLE_IDS,
    PAGE_SIZE,
    Call,
    GraphClient,
    odata_query,
    segment,
    user_path,
)
from synccore.mailbox.graph.translation import change_key_of, deletion_results, item_results

# The product's name in the linkedResource that carries a task's sync id.
LINK_APPLICATION = "CRM Synchronizer"
# Bodies as text (the K12 markers), ids immutable as everywhere in this backend.
TEXT_BODY = {"Prefer": f'{IMMUTABLE_IDS}, outlook.body-content-type="text"'}
_DAY_FIELDS = {"due": "dueDateTime", "start": "startDateTime"}


def _when(day: date | None) -> dict[str, str] | None:
    # A day is written as midnight UTC: a local midnight east of UTC would land on the day before.
    return {"dateTime": f"{day.isoformat()}T00:00:00.0000000", "timeZone": "UTC"} if day else None


def _instant(value: datetime | None) -> dict[str, str] | None:
    if value is None:
        return None
    return {"dateTime": value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000"), "timeZone": "UTC"}


def _read_when(value: dict[str, Any] | None) -> datetime | None:
    if not value or not value.get("dateTime"):
        return None
    text = str(value["dateTime"]).rstrip("Z")
    head = text.partition(".")[0]
    moment = datetime.fromisoformat(head)
    # Graph answers in UTC unless asked for another zone (this backend never asks).
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _read_day(value: dict[str, Any] | None) -> date | None:
    moment = _read_when(value)
    return moment.date() if moment else None


def task_body(task: TaskItem, names: Iterable[str] | None = None) -> dict[str, Any]:
    """A todoTask body with the named fields (None: all, and the sync id's linked resource)."""
    wanted = set(base.TASK_FIELDS if names is None else names)
    body: dict[str, Any] = {}
    if "subject" in wanted:
        body["title"] = task.subject
    if "body" in wanted:
        body["body"] = {"content": task.body, "contentType": "text"}
    if "status" in wanted:
        body["status"] = "completed" if task.status == "completed" else "notStarted"
    for name, prop in _DAY_FIELDS.items():
        if name in wanted:
            body[prop] = _when(getattr(task, name))
    if "importance" in wanted:
        body["importance"] = task.importance
    if "reminder" in wanted:
        body["isReminderOn"] = task.reminder is not None
        if task.reminder is not None:
            body["reminderDateTime"] = _instant(task.reminder)
    if names is None and task.sync_id:
        body["linkedResources"] = [
            {"applicationName": LINK_APPLICATION, "externalId": task.sync_id, "displayName": task.subject[:255]}
        ]
    return body


def link_sync_id(entity: dict[str, Any]) -> str:
    for link in entity.get("linkedResources") or []:
        if link.get("applicationName") == LINK_APPLICATION and link.get("externalId"):
            return str(link["externalId"])
    return ""


def from_todo(entity: dict[str, Any], folder_id: str) -> TaskItem:
    completed = entity.get("status") == "completed"
    modified = entity.get("lastModifiedDateTime")
    return TaskItem(
        subject=entity.get("title") or "",
        body=((entity.get("body") or {}).get("content") or "").strip(),
        status="completed" if completed else "open",
        due=_read_day(entity.get("dueDateTime")),
        start=_read_day(entity.get("startDateTime")),
        completed_at=_read_day(entity.get("completedDateTime")) if completed else None,
        importance=entity.get("importance") if entity.get("importance") in ("low", "high") else "normal",
        reminder=_read_when(entity.get("reminderDateTime")) if entity.get("isReminderOn") else None,
        sync_id=link_sync_id(entity),
        ref=RemoteRef(entity["id"], change_key_of(entity), folder_id),
        last_modified=datetime.fromisoformat(modified.replace("Z", "+00:00")) if modified else None,
    )


class TaskOperations:
    """The task half of ``MailboxBackend`` over Graph (mixed into ``GraphBackend``, whose
    ``_delta`` it uses)."""

    client: GraphClient
    config: ConnectionConfig

    def _tasks_url(self, mailbox: str, folder_id: str) -> str:
        return f"{user_path(mailbox)}/todo/lists/{segment(folder_id)}/tasks"

    def ensure_task_folder(self, mailbox: str) -> str:
        # Graph takes no well-known name for a To Do list in a path: find the default list's id.
        url = f"{user_path(mailbox)}/todo/lists?{odata_query(select='id,wellknownListName')}"
        for page in self.client.pages(mailbox, url):
            for found in page.get("value", []):
                if found.get("wellknownListName") == "defaultList":
                    return found["id"]
        raise base.ItemNotFound(f"The mailbox {mailbox} has no default To Do list.", code="ErrorItemNotFound")

    def task_changes(self, mailbox: str, folder_id: str, token: str) -> ChangePage:
        first = f"{self._tasks_url(mailbox, folder_id)}/delta?{odata_query(select='id')}"
        return self._delta(mailbox, first, token, folder_id)  # type: ignore[attr-defined]

    def get_tasks(
        self, mailbox: str, refs: Sequence[RemoteRef], properties: Sequence[str] = ()
    ) -> list[TaskItem | MailboxError]:
        # To Do has no extended properties (PROPERTY_KINDS): ``properties`` reads nothing.
        if not refs:
            return []
        query = odata_query(expand="linkedResources")
        calls = [
            Call("GET", f"{self._tasks_url(mailbox, r.folder_id)}/{segment(r.item_id)}?{query}", headers=TEXT_BODY)
            for r in refs
        ]
        out: list[TaskItem | MailboxError] = []
        for ref, answer in zip(refs, self.client.batch(mailbox, calls), strict=True):
            out.append(from_todo(answer.body, ref.folder_id) if answer.ok else answer.error())
        return out

    def list_tasks(self, mailbox: str, folder_id: str) -> list[TaskItem]:
        """Every task of the list, whole, with its linked resources (pages of up to 1000)."""
        url = f"{self._tasks_url(mailbox, folder_id)}?{odata_query(expand='linkedResources', top=PAGE_SIZE)}"
        return [
            from_todo(entity, folder_id)
            for page in self.client.pages(mailbox, url, headers=TEXT_BODY)
            for entity in page.get("value", [])
        ]

    def find_tasks_by_sync_ids(
        self, mailbox: str, folder_id: str, sync_ids: Sequence[str]
    ) -> dict[str, RemoteRef]:
        wanted = set(sync_ids)
        if not wanted:
            return {}
        found: dict[str, RemoteRef] = {}
        for task in self.list_tasks(mailbox, folder_id):
            if task.sync_id in wanted and task.ref is not None:
                found.setdefault(task.sync_id, task.ref)
        return found

    def create_tasks(self, mailbox: str, folder_id: str, tasks: Sequence[TaskItem]) -> list[ItemResult]:
        if not tasks:
            return []
        url = self._tasks_url(mailbox, folder_id)
        answers = self.client.batch(mailbox, [Call("POST", url, task_body(task)) for task in tasks])
        return item_results(answers, folder_id)

    def update_tasks(
        self, mailbox: str, updates: Sequence[tuple[RemoteRef, TaskItem, Iterable[str]]]
    ) -> list[ItemResult]:
        if not updates:
            return []
        # The engine merged both sides before writing (as for events): no If-Match, the write
        # overwrites.
        calls = [
            Call("PATCH", f"{self._tasks_url(mailbox, ref.folder_id)}/{segment(ref.item_id)}", task_body(task, names))
            for ref, task, names in updates
        ]
        answers = self.client.batch(mailbox, calls)
        return [
            ItemResult(ref=RemoteRef(ref.item_id, change_key_of(a.body or {}), ref.folder_id))
            if a.ok
            else ItemResult(error=a.error())
            for (ref, _, _), a in zip(updates, answers, strict=True)
        ]

    def delete_tasks(self, mailbox: str, refs: Sequence[RemoteRef]) -> list[ItemResult]:
        if not refs:
            return []
        calls = [Call("DELETE", f"{self._tasks_url(mailbox, r.folder_id)}/{segment(r.item_id)}") for r in refs]
        return deletion_results(refs, self.client.batch(mailbox, calls))



