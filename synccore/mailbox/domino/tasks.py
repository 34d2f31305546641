"""The task operations of the Domino backend: Notes To Do items of the mail file (T1–T6).

The PIM API (v1.0.2) has no To Do endpoints of its own; its generic ones carry them (docs/domino.md):

- listing: ``POST /pim-v1/search`` with the DQL ``Form = 'Task'`` answers each To Do's ``@unid`` and
  ``@lastmodified`` (and the items asked for: the product's ``CrmSyncId``) — ids and stamps, no bodies;
- reading: ``GET /pim-v1/pimitem/{unid}``, the To Do as a JSCalendar ``jstask``;
- creating: ``POST /pim-v1/calendar/default`` with ``"@type": "jstask"`` (a JSCalendar task of the mail
  file's calendar), the sync id in ``AdditionalFields.CrmSyncId`` (a Notes item, as for entries);
- updating and completing: ``PUT /pim-v1/pimitem/{unid}`` with the JSTask properties to change
  (completion is ``progress`` completed, 100 %: the server sets the completion day);
- deleting: ``DELETE /pim-v1/calendar/default/{unid}``.

Change detection without delta tokens: each pass searches once (1000 ids a page) and compares every
``@lastmodified`` with the stamps of the last search, kept in the token; the engine compares the change
keys with its link rows again. An idle pass is one request per mailbox. A To Do's dates are days
(``due`` / ``start`` at midnight, ``showWithoutTime``), its importance JSCalendar's ``priority``
(1 high, 5 normal, 9 low), its reminder one absolute alert.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote

from synccore.mailbox import base
from synccore.mailbox.base import ChangePage, ConnectionConfig, ItemResult, MailboxError, RemoteRef, TaskItem
from synccore.mailbox.domino.client import DominoClient
from synccore.mailbox.domino.translation import parse_utc

TODO_FOLDER = "todo"  # the mail file's To Do items (a Notes view, not a folder the API names)
SEARCH_PATH = "/pim-v1/search"
CREATE_PATH = "/pim-v1/calendar/default"
SEARCH_PAGE = 1000
TODO_QUERY = "Form = 'Task'"
SYNC_ID_FIELD = base.SYNC_ID_PROPERTY
TOKEN_PREFIX = "domino-todo:"
_PRIORITY = {"high": 1, "normal": 5, "low": 9}


def _item_path(unid: str) -> str:
    return f"/pim-v1/pimitem/{quote(unid, safe='')}"


def _day_text(day: date | None) -> str | None:
    return f"{day.isoformat()}T00:00:00" if day else None


def _read_day(value: Any) -> date | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).date()
    except ValueError:
        return None


def todo_body(task: TaskItem, names: Iterable[str] | None = None) -> dict[str, Any]:
    """The JSTask properties of the named fields (None: a whole new To Do); the sync id always."""
    wanted = set(base.TASK_FIELDS if names is None else names)
    body: dict[str, Any] = {"@type": "jstask", "showWithoutTime": True} if names is None else {}
    if "subject" in wanted:
        body["title"] = task.subject
    if "body" in wanted:
        body["description"] = task.body
        body["descriptionContentType"] = "text/plain"
    if "status" in wanted:
        done = task.status == "completed"
        body["progress"] = "completed" if done else "needs-action"
        body["percentComplete"] = 100 if done else 0
    if "due" in wanted:
        body["due"] = _day_text(task.due)
    if "start" in wanted:
        body["start"] = _day_text(task.start)
    if "importance" in wanted:
        body["priority"] = _PRIORITY[task.importance]
    if "reminder" in wanted:
        when = task.reminder.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if task.reminder else ""
        trigger = {"@type": "AbsoluteTrigger", "when": when}
        body["alerts"] = {"1": {"@type": "Alert", "trigger": trigger}} if when else {}
    if task.sync_id:
        body["AdditionalFields"] = {SYNC_ID_FIELD: task.sync_id}
    return body


def task_from_todo(todo: dict[str, Any], folder_id: str) -> TaskItem:
    """A ``jstask`` as the engine's task; InvalidItem for one that is not a To Do."""
    if str(todo.get("@type") or "").lower() != "jstask":
        raise base.InvalidItem(f"{todo.get('uid')} is not a To Do ({todo.get('@type')}).", code="NotATask")
    completed = todo.get("progress") == "completed"
    priority = todo.get("priority")
    importance = "normal"
    if isinstance(priority, int) and 1 <= priority <= 4:
        importance = "high"
    elif isinstance(priority, int) and priority >= 6:
        importance = "low"
    reminder = None
    for alert in (todo.get("alerts") or {}).values():
        trigger = (alert or {}).get("trigger") or {}
        if trigger.get("@type") == "AbsoluteTrigger":
            reminder = parse_utc(trigger.get("when"))
            break
    return TaskItem(
        subject=str(todo.get("title") or ""),
        body=str(todo.get("description") or "").strip(),
        status="completed" if completed else "open",
        due=_read_day(todo.get("due")),
        start=_read_day(todo.get("start")),
        completed_at=(_read_day(todo.get("progressUpdated")) or _read_day(todo.get("updated"))) if completed else None,
        importance=importance,  # type: ignore[arg-type]
        reminder=reminder,
        sync_id=str((todo.get("AdditionalFields") or {}).get(SYNC_ID_FIELD) or ""),
        ref=RemoteRef(str(todo["uid"]), str(todo.get("updated") or ""), folder_id),
        last_modified=parse_utc(todo.get("updated")),
    )


def _load_token(token: str) -> dict[str, str] | None:
    if not token:
        return None
    if not token.startswith(TOKEN_PREFIX):
        raise base.InvalidSyncToken("The task token is not a Domino To Do one.", code="ForeignToken")
    try:
        return {str(k): str(v) for k, v in json.loads(token[len(TOKEN_PREFIX) :]).items()}
    except (ValueError, AttributeError) as exc:
        raise base.InvalidSyncToken(f"The Domino To Do token cannot be read ({exc}).") from exc


def _dump_token(stamps: dict[str, str]) -> str:
    return TOKEN_PREFIX + json.dumps(stamps, separators=(",", ":"), sort_keys=True)


class TaskOperations:
    """The task half of ``MailboxBackend`` over the Domino REST API (mixed into ``DominoBackend``)."""

    client: DominoClient
    config: ConnectionConfig

    def ensure_task_folder(self, mailbox: str) -> str:
        # To Do items are documents of the mail file, found by search: no folder to look up.
        return TODO_FOLDER

    def _search_todos(self, mailbox: str) -> list[dict[str, Any]]:
        """Every To Do of the mail file: ``@unid``, ``@lastmodified``, ``CrmSyncId`` (pages of 1000)."""
        out: list[dict[str, Any]] = []
        while True:
            query = {"type": "DQL", "query": TODO_QUERY, "count": SEARCH_PAGE, "skip": len(out)}
            answer = self.client.call("POST", SEARCH_PATH, mailbox, json=query, not_found=base.MailboxNotFound)
            page = [r for r in (answer or {}).get("result") or [] if isinstance(r, dict) and r.get("@unid")]
            out += page
            if not page or len(out) >= int((answer or {}).get("count") or 0):
                return out

    def task_changes(self, mailbox: str, folder_id: str, token: str) -> ChangePage:
        """One search: what is new or has another stamp than in the token changed; what the token
        knows and the search lacks is gone (a To Do does not leave the search otherwise)."""
        known = _load_token(token)
        found = self._search_todos(mailbox)
        stamps = {str(r["@unid"]): str(r.get("@lastmodified") or "") for r in found}
        refs = {unid: RemoteRef(unid, stamp, folder_id) for unid, stamp in stamps.items()}
        if known is None:
            return ChangePage(changed=list(refs.values()), token=_dump_token(stamps))
        changed = [ref for unid, ref in refs.items() if known.get(unid) != ref.change_key]
        deleted = sorted(set(known) - set(stamps))
        return ChangePage(changed=changed, deleted=deleted, token=_dump_token(stamps))

    def get_tasks(
        self, mailbox: str, refs: Sequence[RemoteRef], properties: Sequence[str] = ()
    ) -> list[TaskItem | MailboxError]:
        # Notes To Dos carry no extended properties of ours (PROPERTY_KINDS): ``properties`` reads nothing.
        out: list[TaskItem | MailboxError] = []
        for ref in refs:
            try:
                todo = self.client.call("GET", _item_path(ref.item_id), mailbox)
                out.append(task_from_todo(todo or {}, ref.folder_id or TODO_FOLDER))
            except base.ItemError as exc:  # this To Do's failure; the others (login, busy) are the pass's
                out.append(exc)
        return out

    def find_tasks_by_sync_ids(
        self, mailbox: str, folder_id: str, sync_ids: Sequence[str]
    ) -> dict[str, RemoteRef]:
        """From the one search (it answers the ``CrmSyncId`` item): no query on the id itself."""
        wanted = set(sync_ids)
        if not wanted:
            return {}
        found: dict[str, RemoteRef] = {}
        for row in self._search_todos(mailbox):
            sync_id = str(row.get(SYNC_ID_FIELD) or "")
            if sync_id in wanted:
                found.setdefault(sync_id, RemoteRef(str(row["@unid"]), str(row.get("@lastmodified") or ""), folder_id))
        return found

    def create_tasks(self, mailbox: str, folder_id: str, tasks: Sequence[TaskItem]) -> list[ItemResult]:
        results: list[ItemResult] = []
        for task in tasks:
            try:
                todo = self.client.call("POST", CREATE_PATH, mailbox, params={"send": "false"}, json=todo_body(task))
                ref = RemoteRef(str(todo["uid"]), str(todo.get("updated") or ""), folder_id)
                results.append(ItemResult(ref=ref))
            except base.ItemError as exc:
                results.append(ItemResult(error=exc))
            except (KeyError, TypeError) as exc:
                results.append(ItemResult(error=base.ItemError(f"Domino answered a To Do without its uid ({exc}).")))
        return results

    def update_tasks(
        self, mailbox: str, updates: Sequence[tuple[RemoteRef, TaskItem, Iterable[str]]]
    ) -> list[ItemResult]:
        # The engine merged both sides before writing (no change key on writes: docs/domino.md).
        results: list[ItemResult] = []
        for ref, task, names in updates:
            try:
                todo = self.client.call("PUT", _item_path(ref.item_id), mailbox, json=todo_body(task, names))
                stamp = str((todo or {}).get("updated") or "")
                results.append(ItemResult(ref=RemoteRef(ref.item_id, stamp, ref.folder_id)))
            except base.ItemError as exc:
                results.append(ItemResult(error=exc))
        return results

    def delete_tasks(self, mailbox: str, refs: Sequence[RemoteRef]) -> list[ItemResult]:
        results: list[ItemResult] = []
        for ref in refs:
            try:
                self.client.call("DELETE", f"{CREATE_PATH}/{quote(ref.item_id, safe='')}", mailbox)
                results.append(ItemResult(ref=ref))
            except base.ItemNotFound:
                results.append(ItemResult(ref=ref))  # already gone counts as deleted
            except base.ItemError as exc:
                results.append(ItemResult(error=exc))
        return results
