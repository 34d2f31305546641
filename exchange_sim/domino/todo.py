"""To Do items of a Domino mail file over the PIM API, on the store's tasks (``sim.domino``).

One store: a To Do is a ``t:Task`` of the mailbox's Tasks folder, the same item EWS shows in Tasks and
Graph in the default Microsoft To Do list (`exchange_sim.tasks` holds the semantics all three share:
completion, dates as days). PIM v1.0.2 (openapi.pim.json) has no To Do endpoints of its own; the simulator
answers the generic ones its specification describes, for To Do documents (``Form = 'Task'``):

    POST   /api/pim-v1/search?mailboxid=ADDR          {"type": "DQL", "query": "Form = 'Task'", "count", "skip"}
           -> SearchResult {"count", "result": [{"@unid", "@noteid", "@created", "@lastmodified", "Form",
              "CrmSyncId"?}]}: the cheap listing of ids and stamps
    GET    /api/pim-v1/pimitem/{unid}?mailboxid=ADDR  the To Do as a JSCalendar ``jstask`` (a calendar entry,
           by its uid, as its ``jsevent``)
    PUT    /api/pim-v1/pimitem/{unid}?mailboxid=ADDR  JSTask properties to change (and ``AdditionalFields``);
           answers the To Do whole
    POST   /api/pim-v1/calendar/default?mailboxid=ADDR with ``"@type": "jstask"``: creates a To Do (a
           JSCalendar object of the mail file's calendar, as RFC 8984 puts tasks beside events)
    DELETE /api/pim-v1/calendar/default/{unid}?mailboxid=ADDR: deletes it (to Deleted Items, as Notes' trash)

A To Do is known by a UNID (32 hex digits, stable for the item's life) which is also its ``uid``. Its
properties: ``title``, ``description`` (text/plain), ``due`` / ``start`` (LocalDateTime at midnight: days,
``showWithoutTime``), ``progress`` (needs-action, in-process, completed), ``percentComplete``,
``progressUpdated`` (the completion day, when completed), ``priority`` (1 high, 5 normal, 9 low), ``alerts``
(one ``AbsoluteTrigger``: the reminder), ``privacy``, ``AdditionalFields`` (Notes items the client keeps:
the product's ``CrmSyncId``), ``created``, ``updated``. DQL: only ``Form = 'Task'`` (400 otherwise).
Faults by operation: ``domino.search``, ``domino.pimitem.get|update`` (creates and deletes count as the
calendar's ``domino.calendar.create|delete``: they go through its routes).
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from exchange_sim.domino.frontend import DominoError, DominoRequest
from exchange_sim.store import ExtendedKey, Folder, Item

if TYPE_CHECKING:
    from exchange_sim.domino.frontend import DominoFrontEnd

Answer = tuple[int, Any, dict[str, str]]
FORM = "Task"
PAGE = 1000  # a search's default count
PROGRESS = {"NotStarted": "needs-action", "InProgress": "in-process", "Completed": "completed",
            "WaitingOnOthers": "in-process", "Deferred": "needs-action"}  # fmt: skip
STATUS_OF_PROGRESS = {"needs-action": "NotStarted", "in-process": "InProgress", "completed": "Completed",
                      "cancelled": "Deferred", "failed": "Deferred"}  # fmt: skip
PRIORITY = {"High": 1, "Normal": 5, "Low": 9}
WRITABLE = {
    "@type", "uid", "title", "description", "descriptionContentType", "due", "start", "showWithoutTime", "timeZone",
    "progress", "percentComplete", "priority", "alerts", "privacy", "AdditionalFields", "created", "updated",
    "progressUpdated", "sequence",
}  # fmt: skip
_QUERY = re.compile(r"^\s*form\s*=\s*'task'\s*$", re.IGNORECASE)


# ---- ids ------------------------------------------------------------------------------------------------
def unid_of(item: Item) -> str:
    """A Notes-like UNID for a store item: stable while the item lives in its folder."""
    return hashlib.md5(item.id.encode()).hexdigest().upper()  # an id, not a secret


def todo_folder(request: DominoRequest) -> Folder:
    return request.store.distinguished_folder(request.mailbox, "tasks")


def find_task(request: DominoRequest, unid: str) -> Item | None:
    wanted = unid.upper()
    for item in request.store.live_items(todo_folder(request).id, "Task"):
        if unid_of(item) == wanted:
            return item
    return None


def _utc(value: datetime) -> str:
    from exchange_sim.domino.jscalendar import utc_text

    return utc_text(value)


# ---- rendering ------------------------------------------------------------------------------------------
def task_json(front: DominoFrontEnd, item: Item) -> dict[str, Any]:
    props = item.props
    status = props.get("Status") or "NotStarted"
    body: dict[str, Any] = {
        "@type": "jstask",
        "uid": unid_of(item),
        "title": props.get("Subject") or "",
        "created": _utc(item.created or front.sim.clock.now()),
        "updated": _utc(front.updated(item)),
        "progress": PROGRESS.get(status, "needs-action"),
        "percentComplete": int(props.get("PercentComplete") or 0),
        "priority": PRIORITY.get(props.get("Importance") or "Normal", 5),
        "privacy": "private" if props.get("Sensitivity") in {"Private", "Confidential", "Personal"} else "public",
        "showWithoutTime": True,
    }
    if props.get("Body"):
        body["description"] = item.body_text
        body["descriptionContentType"] = "text/plain"
    for name, element in (("due", "DueDate"), ("start", "StartDate")):
        if props.get(element):
            body[name] = props[element].astimezone(UTC).strftime("%Y-%m-%dT00:00:00")
    if status == "Completed" and props.get("CompleteDate"):
        body["progressUpdated"] = props["CompleteDate"].astimezone(UTC).strftime("%Y-%m-%dT00:00:00Z")
    if props.get("ReminderIsSet") and props.get("ReminderDueBy"):
        body["alerts"] = {"1": {"@type": "Alert", "trigger": {"@type": "AbsoluteTrigger", "when": _utc(props["ReminderDueBy"])}}}
    fields = {key.name: value for key, value in item.extended.items() if key.name and isinstance(value, str)}
    if fields:
        body["AdditionalFields"] = fields
    return body


def search_entry(front: DominoFrontEnd, item: Item) -> dict[str, Any]:
    """A search result: the document's metadata and the items a sync client looks for."""
    out: dict[str, Any] = {
        "@unid": unid_of(item),
        "@noteid": item.created_seq,
        "@created": _utc(item.created or front.sim.clock.now()),
        "@lastmodified": _utc(front.updated(item)),
        "Form": FORM,
    }
    for key, value in item.extended.items():
        if key.name == "CrmSyncId" and isinstance(value, str):
            out["CrmSyncId"] = value
    return out


# ---- writing --------------------------------------------------------------------------------------------
def _day(value: Any, name: str) -> date | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise DominoError(400, f"'{name}' must be a LocalDateTime string.")
    try:
        return datetime.fromisoformat(value.rstrip("Z")).date()
    except ValueError:
        raise DominoError(400, f"'{name}' is not a LocalDateTime: {value!r}.") from None


def _reminder(value: Any) -> datetime | None:
    if not value:
        return None
    if not isinstance(value, dict):
        raise DominoError(400, "'alerts' must be a map of Alert objects.")
    for alert in value.values():
        trigger = (alert or {}).get("trigger") or {}
        if trigger.get("@type") != "AbsoluteTrigger" or not isinstance(trigger.get("when"), str):
            raise DominoError(400, "A To Do's alert is an AbsoluteTrigger with 'when' (UTCDateTime).")
        try:
            moment = datetime.fromisoformat(trigger["when"].replace("Z", "+00:00"))
        except ValueError:
            raise DominoError(400, f"'when' is not a UTCDateTime: {trigger['when']!r}.") from None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return None


def task_changes(data: dict[str, Any], current: Item | None) -> tuple[dict[str, Any], list[str], dict[ExtendedKey, Any]]:
    """JSTask properties as store writes (set, delete, extended); what is left out stays as it is."""
    unknown = set(data) - WRITABLE
    if unknown:
        raise DominoError(400, f"Unknown property '{sorted(unknown)[0]}' for a To Do.")
    if str(data.get("@type") or "jstask").lower() != "jstask":
        raise DominoError(400, "A To Do is a '@type': 'jstask'.")
    set_props: dict[str, Any] = {}
    delete: list[str] = []
    from exchange_sim.domino.jscalendar import title_and_description

    title_and_description(data, set_props, delete)
    for name, element in (("due", "DueDate"), ("start", "StartDate")):
        if name in data:
            day = _day(data[name], name)
            if day is None:
                delete.append(element)
            else:
                set_props[element] = day
    if "progress" in data:
        progress = str(data["progress"] or "needs-action").lower()
        if progress not in STATUS_OF_PROGRESS:
            raise DominoError(400, f"Unknown progress '{progress}'.")
        set_props["Status"] = STATUS_OF_PROGRESS[progress]
    if "percentComplete" in data:
        value = data["percentComplete"]
        if not isinstance(value, int) or not 0 <= value <= 100:
            raise DominoError(400, "'percentComplete' is an integer from 0 to 100.")
        if "progress" not in data or value != 0:
            set_props["PercentComplete"] = float(value)
    if "priority" in data:
        value = data["priority"]
        if not isinstance(value, int) or not 0 <= value <= 9:
            raise DominoError(400, "'priority' is an integer from 0 to 9.")
        set_props["Importance"] = "High" if 1 <= value <= 4 else "Low" if value >= 6 else "Normal"
    if "alerts" in data:
        when = _reminder(data["alerts"])
        set_props["ReminderIsSet"] = when is not None
        if when is None:
            delete.append("ReminderDueBy")
        else:
            set_props["ReminderDueBy"] = when
    if "privacy" in data:
        set_props["Sensitivity"] = "Private" if data["privacy"] in ("private", "secret") else "Normal"
    from exchange_sim.domino.jscalendar import additional_fields

    extended = additional_fields(data, current)
    return set_props, delete, extended


# ---- handlers (registered in routes.py) -----------------------------------------------------------------
def create(request: DominoRequest, data: dict[str, Any]) -> Answer:
    set_props, _, extended = task_changes(data, None)
    set_props.setdefault("Subject", "")
    item = request.store.create_item(todo_folder(request).id, "Task", set_props, extended)
    return 200, task_json(request.front, request.store.item(item.id)), {}


def delete(request: DominoRequest, item: Item) -> Answer:
    request.store.delete_item(item.id, "MoveToDeletedItems")
    return 200, {"status": 200, "message": "To Do deleted"}, {}


def search(request: DominoRequest) -> Answer:
    data = request.json()
    if data.get("type") != "DQL":
        raise DominoError(501, "Full-text search is not implemented by the simulator (DQL only).")
    query = data.get("query")
    if not isinstance(query, str) or not _QUERY.match(query):
        raise DominoError(400, f"The simulator's DQL knows only \"Form = 'Task'\", not {query!r}.")
    count, skip = data.get("count", PAGE), data.get("skip", 0)
    if not isinstance(count, int) or not isinstance(skip, int) or count < 1 or skip < 0:
        raise DominoError(400, "'count' and 'skip' are whole numbers (count at least 1).")
    items = sorted(request.store.live_items(todo_folder(request).id, "Task"), key=lambda i: i.created_seq)
    found = [search_entry(request.front, item) for item in items]
    return 200, {"count": len(found), "result": found[skip : skip + count]}, {}


def get_item(request: DominoRequest) -> Answer:
    from exchange_sim.domino.jscalendar import entry_json

    unid = request.params["unid"]
    item = find_task(request, unid)
    if item is not None:
        return 200, task_json(request.front, item), {}
    calendar = request.store.distinguished_folder(request.mailbox, "calendar")
    for entry in request.store.live_items(calendar.id, "CalendarItem"):
        if entry.props.get("UID") == unid:
            return 200, entry_json(request.front, entry), {}
    raise DominoError(404, "This is not the data you seek!")


def update_item(request: DominoRequest) -> Answer:
    item = find_task(request, request.params["unid"])
    if item is None:
        raise DominoError(404, "This is not the data you seek! (the simulator updates To Do items here)")
    set_props, delete_props, extended = task_changes(request.json(), item)
    updated = request.store.update_item(item.id, set_props=set_props, delete_props=delete_props, set_extended=extended)
    return 200, task_json(request.front, updated), {}
