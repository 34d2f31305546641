"""Microsoft To Do: ``/users/{id}/todo/lists``, their ``tasks`` (+ ``delta``) and the tasks' ``linkedResources``.

One store, two front ends: a task list is a task folder of the mailbox (class ``IPF.Task``) and its tasks are
the folder's ``t:Task`` items; the default list (``wellknownListName: defaultList``) is the Tasks folder EWS
names ``tasks``, so what EWS writes there To Do reads and the other way round (`exchange_sim.tasks` holds the
semantics both share: completion, dates as days). To Do has no extended properties: a client keeps its own id
in a ``linkedResource`` (``applicationName``, ``externalId``, ``displayName``, ``webUrl``), which EWS does not show.

Finding a task by a linked resource's ``externalId``: Graph documents no ``$filter`` on ``linkedResources``,
so the simulator refuses one (400) rather than offer what Graph may not; a client lists the list's tasks with
``$expand=linkedResources`` (paging through ``@odata.nextLink``) and matches ``applicationName`` and
``externalId`` itself, or keeps the task ids it made.

Task properties: ``title``, ``body`` {content, contentType}, ``status`` (notStarted, inProgress, completed,
waitingOnOthers, deferred), ``importance`` (low, normal, high), ``isReminderOn``, ``reminderDateTime``,
``dueDateTime`` / ``startDateTime`` / ``completedDateTime`` (dateTimeTimeZone; days, kept as midnight UTC and
answered in UTC or ``Prefer: outlook.timezone``), ``categories``, ``createdDateTime``, ``lastModifiedDateTime``,
``bodyLastModifiedDateTime``, ``hasAttachments``; properties without a value are left out, as To Do does.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from exchange_sim import tasks
from exchange_sim.graph.api import (
    GraphRequest,
    GraphResponse,
    check_if_match,
    collection,
    etag,
    no_content,
    ok,
    route,
)
from exchange_sim.graph.contacts import body_text, mailbox_folder, unknown_property
from exchange_sim.graph.delta import delta_answer, gone, page_size, removed, token_of
from exchange_sim.graph.errors import GraphError, bad_request
from exchange_sim.graph.events import IMPORTANCE, answer_zone, parse_when
from exchange_sim.graph.ids import folder_graph_id
from exchange_sim.graph.odata import apply_select, check_select, compile_filter, filter_roots
from exchange_sim.graph.values import local_text, utc_text
from exchange_sim.store import Folder, Item, StoreError

READ = ("Tasks.Read.All", "Tasks.ReadWrite.All")
WRITE = ("Tasks.ReadWrite.All",)
STATUS = {
    "NotStarted": "notStarted",
    "InProgress": "inProgress",
    "Completed": "completed",
    "WaitingOnOthers": "waitingOnOthers",
    "Deferred": "deferred",
}
WHEN = {"dueDateTime": "DueDate", "startDateTime": "StartDate", "completedDateTime": "CompleteDate"}
WRITABLE = {"title", "body", "status", "importance", "isReminderOn", "reminderDateTime", "categories", "linkedResources", *WHEN}
READ_ONLY = {"id", "createdDateTime", "lastModifiedDateTime", "bodyLastModifiedDateTime", "hasAttachments", "@odata.etag", "@odata.type",
             "@odata.context"}  # fmt: skip
TASK_PROPS = (WRITABLE | READ_ONLY) - {"@odata.etag", "@odata.type", "@odata.context", "linkedResources"}
LIST_PROPS = {"id", "displayName", "isOwner", "isShared", "wellknownListName"}
LINK_FIELDS = ("webUrl", "applicationName", "displayName", "externalId")
NOT_FOUND = "The specified object was not found in the store."


# ---- lists ----------------------------------------------------------------------------------------------
def resolve_list(request: GraphRequest, ref: str) -> Folder:
    """A task list of the request's mailbox by its Graph id (the default list's id is the Tasks folder's)."""
    return mailbox_folder(request, ref, "tasks", "IPF.Task")


def task_folders(request: GraphRequest) -> list[Folder]:
    """The mailbox's task lists: the Tasks folder first, then every other task folder."""
    assert request.mailbox is not None
    store = request.store
    default = store.distinguished_folder(request.mailbox, "tasks")
    root = store.distinguished_folder(request.mailbox, "msgfolderroot")
    others = [f for f in store.child_folders(root.id, deep=True) if f.folder_class == "IPF.Task" and f.id != default.id]
    return [default, *others]


def list_json(folder: Folder) -> dict[str, Any]:
    return {
        "@odata.etag": etag(folder.changekey),
        "displayName": folder.display_name,
        "isOwner": True,
        "isShared": False,
        "wellknownListName": "defaultList" if folder.distinguished == "tasks" else "none",
        "id": folder_graph_id(folder.id),
    }


def _list_context(request: GraphRequest) -> str:
    return f"{request.base_url}/$metadata#users('{request.mailbox}')/todo/lists"


@route("GET", "users/{user}/todo/lists", "graph.todoLists.list", roles=READ)
def list_lists(request: GraphRequest) -> GraphResponse:
    check_select(request.query.select, LIST_PROPS, "todoTaskList")
    lists = [list_json(f) for f in task_folders(request)]
    predicate = compile_filter(request.query.filter)
    if predicate:
        lists = [entry for entry in lists if predicate(entry)]
    lists = [apply_select(entry, request.query.select) for entry in lists]
    return collection(request, lists, f"users('{request.mailbox}')/todo/lists", page_size=request.front.page_size)


@route("POST", "users/{user}/todo/lists", "graph.todoLists.create", roles=WRITE)
def create_list(request: GraphRequest) -> GraphResponse:
    data = request.json()
    unknown = set(data) - {"displayName", "@odata.type"}
    if unknown:
        raise unknown_property(sorted(unknown)[0], "todoTaskList")
    name = data.get("displayName")
    if not isinstance(name, str) or not name.strip():
        raise bad_request("The displayName of a task list is required.", "invalidRequest")
    assert request.mailbox is not None
    root = request.store.distinguished_folder(request.mailbox, "msgfolderroot")
    folder = request.store.create_folder(root.id, name, "IPF.Task")
    return ok(request, {"@odata.context": f"{_list_context(request)}/$entity", **list_json(folder)}, 201)


@route("GET", "users/{user}/todo/lists/{list}", "graph.todoLists.get", roles=READ)
def get_list(request: GraphRequest) -> GraphResponse:
    check_select(request.query.select, LIST_PROPS, "todoTaskList")
    body = {"@odata.context": f"{_list_context(request)}/$entity", **list_json(resolve_list(request, request.params["list"]))}
    return ok(request, apply_select(body, request.query.select))


@route("PATCH", "users/{user}/todo/lists/{list}", "graph.todoLists.update", roles=WRITE)
def update_list(request: GraphRequest) -> GraphResponse:
    folder = resolve_list(request, request.params["list"])
    data = request.json()
    unknown = set(data) - {"displayName", "@odata.type"}
    if unknown:
        raise unknown_property(sorted(unknown)[0], "todoTaskList")
    if folder.distinguished and "displayName" in data:
        raise bad_request("The default task list cannot be renamed.", "invalidRequest")
    if data.get("displayName"):
        folder = request.store.rename_folder(folder.id, data["displayName"])
    return ok(request, {"@odata.context": f"{_list_context(request)}/$entity", **list_json(folder)})


@route("DELETE", "users/{user}/todo/lists/{list}", "graph.todoLists.delete", roles=WRITE)
def delete_list(request: GraphRequest) -> GraphResponse:
    folder = resolve_list(request, request.params["list"])
    if folder.distinguished:
        raise bad_request("The default task list cannot be deleted.", "invalidRequest")
    request.store.delete_folder(folder.id)
    return no_content()


# ---- rendering tasks ------------------------------------------------------------------------------------
def when_json(request: GraphRequest, instant: datetime) -> dict[str, str]:
    label, target = answer_zone(request)
    return {"dateTime": local_text(instant.astimezone(target).replace(tzinfo=None)), "timeZone": label}


def link_json(link: dict[str, Any]) -> dict[str, Any]:
    return {"id": link["id"], **{name: link.get(name) for name in LINK_FIELDS}}


def wants_links(request: GraphRequest) -> bool:
    """$expand=linkedResources (the only navigation a task expands here)."""
    text = (request.query.expand or "").strip()
    if not text:
        return False
    if text.split("(")[0].strip().lower() != "linkedresources":
        raise bad_request(f"Parsing OData Select and Expand failed: Could not find a property named '{text.split('(')[0].strip()}' on type "
                          "'microsoft.graph.todoTask'.")  # fmt: skip
    return True


def task_json(request: GraphRequest, item: Item, links: bool = False) -> dict[str, Any]:
    props = item.props
    content = item.body_html if props.get("Body") else ""
    if not content or request.prefer.text_body:
        body = {"content": body_text(content) if content else "", "contentType": "text"}
    else:
        body = {"content": content, "contentType": "html"}
    out: dict[str, Any] = {
        "@odata.etag": etag(item.changekey),
        "importance": IMPORTANCE.get(props.get("Importance") or "Normal", "normal"),
        "isReminderOn": bool(props.get("ReminderIsSet")),
        "status": STATUS.get(props.get("Status") or "NotStarted", "notStarted"),
        "title": props.get("Subject") or "",
        "createdDateTime": utc_text(item.created),
        "lastModifiedDateTime": utc_text(item.modified),
        "hasAttachments": item.has_attachments,
        "categories": list(props.get("Categories") or []),
        "id": request.graph_id(item.id, item),
        "body": body,
        "bodyLastModifiedDateTime": utc_text(item.modified),
    }
    for name, element in WHEN.items():
        if props.get(element):
            out[name] = when_json(request, props[element])
    if props.get("ReminderIsSet") and props.get("ReminderDueBy"):
        out["reminderDateTime"] = when_json(request, props["ReminderDueBy"])
    if links:
        out["linkedResources"] = [link_json(link) for link in props.get(tasks.LINKED) or []]
    return out


def entity(request: GraphRequest, item: Item, status: int = 200, headers: dict[str, str] | None = None) -> GraphResponse:
    check_select(request.query.select, TASK_PROPS, "todoTask")
    context = f"{request.base_url}/$metadata#users('{request.mailbox}')/todo/lists('{request.params.get('list')}')/tasks/$entity"
    body = {"@odata.context": context, **apply_select(task_json(request, item, wants_links(request)), request.query.select, ("id", "linkedResources"))}
    return ok(request, body, status, headers)


# ---- writing tasks --------------------------------------------------------------------------------------
def _choice(value: Any, table: dict[str, str], name: str) -> str:
    inverse = {v.lower(): k for k, v in table.items()}
    if not isinstance(value, str) or value.lower() not in inverse:
        raise GraphError(400, "RequestBodyRead", f"The value '{value}' is not valid for '{name}'.")
    return inverse[value.lower()]


def _day(value: Any, name: str) -> Any:
    """A dateTimeTimeZone as a task day: the UTC date of the instant (see `exchange_sim.tasks`)."""
    if value is None:
        return None
    instant, _ = parse_when(value, name)
    return instant.astimezone(UTC).date()


def task_changes(data: dict[str, Any], current: Item | None) -> tuple[dict[str, Any], list[str]]:
    """A todoTask body as store writes (set, delete); PATCH semantics: only what is given."""
    unknown = set(data) - WRITABLE - READ_ONLY
    if unknown:
        raise unknown_property(sorted(unknown)[0], "todoTask")
    set_props: dict[str, Any] = {}
    delete: list[str] = []

    def put(element: str, value: Any) -> None:
        if value is None or value == "" or value == []:
            delete.append(element)
        else:
            set_props[element] = value

    if "title" in data:
        if data["title"] is not None and not isinstance(data["title"], str):
            raise GraphError(400, "RequestBodyRead", "Cannot convert a primitive value to the expected type 'Edm.String' (title).")
        put("Subject", data["title"])
    if "body" in data:
        content = data["body"] or {}
        if not isinstance(content, dict):
            raise GraphError(400, "RequestBodyRead", "'body' must be an itemBody object.")
        kind = "HTML" if str(content.get("contentType") or "text").lower() == "html" else "Text"
        put("Body", {"type": kind, "content": content.get("content") or ""} if content.get("content") else None)
    if "status" in data:
        set_props["Status"] = _choice(data["status"], STATUS, "status")
    if "importance" in data:
        set_props["Importance"] = _choice(data["importance"], IMPORTANCE, "importance")
    if "isReminderOn" in data:
        set_props["ReminderIsSet"] = bool(data["isReminderOn"])
    if "reminderDateTime" in data:
        put("ReminderDueBy", parse_when(data["reminderDateTime"], "reminderDateTime")[0] if data["reminderDateTime"] else None)
        if data["reminderDateTime"] and "isReminderOn" not in data:
            set_props["ReminderIsSet"] = True  # To Do turns the reminder on when its time is set
    for name, element in WHEN.items():
        if name in data:
            put(element, _day(data[name], name))
    if "categories" in data:
        values = data["categories"] or []
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise GraphError(400, "RequestBodyRead", "'categories' must be an array of strings.")
        put("Categories", values)
    return set_props, delete


def parse_link(data: Any, current: dict[str, Any] | None = None) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise GraphError(400, "RequestBodyRead", "A linkedResource must be an object.")
    unknown = set(data) - {*LINK_FIELDS, "id", "@odata.type", "@odata.etag", "@odata.context"}
    if unknown:
        raise unknown_property(sorted(unknown)[0], "linkedResource")
    link = dict(current or {"id": str(uuid.uuid4())})
    for name in LINK_FIELDS:
        if name in data:
            value = data[name]
            if value is not None and not isinstance(value, str):
                raise GraphError(400, "RequestBodyRead", f"Cannot convert a primitive value to the expected type 'Edm.String' ({name}).")
            link[name] = value
    if not link.get("applicationName") and not link.get("displayName"):
        raise bad_request("A linkedResource needs an applicationName or a displayName.", "invalidRequest")
    return link


def task_item(request: GraphRequest) -> tuple[Folder, Item]:
    """The list of the path and the task in it; a task of another list or mailbox is not found."""
    folder = resolve_list(request, request.params["list"])
    try:
        item = request.store.item(request.store_id(request.params["id"]))
    except StoreError as err:
        if err.code == "ErrorInvalidIdMalformed":
            raise GraphError(400, "ErrorInvalidIdMalformed", "Id is malformed.") from None
        raise GraphError(404, "ErrorItemNotFound", NOT_FOUND) from None
    if item.folder_id != folder.id or item.kind != "Task":
        raise GraphError(404, "ErrorItemNotFound", NOT_FOUND)
    return folder, item


# ---- task routes ----------------------------------------------------------------------------------------
TASKS = "users/{user}/todo/lists/{list}/tasks"


@route("GET", TASKS, "graph.todoTasks.list", roles=READ)
def list_tasks(request: GraphRequest) -> GraphResponse:
    folder = resolve_list(request, request.params["list"])
    check_select(request.query.select, TASK_PROPS, "todoTask")
    if "linkedresources" in {root.lower() for root in filter_roots(request.query.filter)}:
        raise bad_request(
            "Filtering tasks on linkedResources is not supported: list them with $expand=linkedResources and match the externalId.",
            "invalidRequest",
        )
    links = wants_links(request)
    predicate = compile_filter(request.query.filter)
    out = []
    for item in sorted(request.store.live_items(folder.id, "Task"), key=lambda i: i.created_seq):
        rendered = task_json(request, item, links)
        if predicate is None or predicate(rendered):
            out.append(apply_select(rendered, request.query.select, ("id", "linkedResources")))
    context = f"users('{request.mailbox}')/todo/lists('{request.params['list']}')/tasks"
    return collection(request, out, context, page_size=request.front.page_size)


@route("POST", TASKS, "graph.todoTasks.create", roles=WRITE)
def create_task(request: GraphRequest) -> GraphResponse:
    folder = resolve_list(request, request.params["list"])
    data = request.json()
    set_props, _ = task_changes(data, None)
    links = data.get("linkedResources") or []
    if not isinstance(links, list):
        raise GraphError(400, "RequestBodyRead", "'linkedResources' must be an array.")
    if len(links) > 1:
        raise bad_request("Only one item in linkedResources is allowed.", "invalidRequest")
    if links:
        set_props[tasks.LINKED] = [parse_link(links[0])]
    item = request.store.create_item(folder.id, "Task", set_props)
    location = request.url(f"users/{request.params['user']}/todo/lists/{request.params['list']}/tasks/{request.graph_id(item.id, item)}")
    if links:  # the answer to a create carries the linked resources made with it, as To Do's does
        request.query.expand = "linkedResources"
    return entity(request, item, 201, {"Location": location})


@route("GET", f"{TASKS}/{{id}}", "graph.todoTasks.get", roles=READ)
def get_task(request: GraphRequest) -> GraphResponse:
    return entity(request, task_item(request)[1])


@route("PATCH", f"{TASKS}/{{id}}", "graph.todoTasks.update", roles=WRITE)
def update_task(request: GraphRequest) -> GraphResponse:
    _, item = task_item(request)
    check_if_match(request, item.changekey)
    data = request.json()
    if "linkedResources" in data:
        raise bad_request("linkedResources are changed under /tasks/{id}/linkedResources.", "invalidRequest")
    set_props, delete = task_changes(data, item)
    updated = request.store.update_item(item.id, set_props=set_props, delete_props=delete)
    return entity(request, updated)


@route("DELETE", f"{TASKS}/{{id}}", "graph.todoTasks.delete", roles=WRITE)
def delete_task(request: GraphRequest) -> GraphResponse:
    _, item = task_item(request)
    check_if_match(request, item.changekey)
    request.store.delete_item(item.id, "MoveToDeletedItems")  # as Outlook: the task waits in Deleted Items
    return no_content()


# ---- linked resources -----------------------------------------------------------------------------------
LINKS = f"{TASKS}/{{id}}/linkedResources"


def _links(item: Item) -> list[dict[str, Any]]:
    return [dict(link) for link in item.props.get(tasks.LINKED) or []]


def _link(item: Item, link_id: str) -> dict[str, Any]:
    for link in _links(item):
        if link["id"] == link_id:
            return link
    raise GraphError(404, "ErrorItemNotFound", NOT_FOUND)


def _link_answer(request: GraphRequest, link: dict[str, Any], status: int = 200) -> GraphResponse:
    context = f"{request.base_url}/$metadata#users('{request.mailbox}')/todo/lists('{request.params['list']}')/tasks('{request.params['id']}')"
    return ok(request, {"@odata.context": f"{context}/linkedResources/$entity", **link_json(link)}, status)


def _write_links(request: GraphRequest, item: Item, links: list[dict[str, Any]]) -> None:
    if links:
        request.store.update_item(item.id, set_props={tasks.LINKED: links})
    else:
        request.store.update_item(item.id, delete_props=[tasks.LINKED])


@route("GET", LINKS, "graph.todoLinkedResources.list", roles=READ)
def list_links(request: GraphRequest) -> GraphResponse:
    _, item = task_item(request)
    context = f"users('{request.mailbox}')/todo/lists('{request.params['list']}')/tasks('{request.params['id']}')/linkedResources"
    return collection(request, [link_json(link) for link in _links(item)], context)


@route("POST", LINKS, "graph.todoLinkedResources.create", roles=WRITE)
def create_link(request: GraphRequest) -> GraphResponse:
    _, item = task_item(request)
    link = parse_link(request.json())
    _write_links(request, item, [*_links(item), link])
    return _link_answer(request, link, 201)


@route("GET", f"{LINKS}/{{link}}", "graph.todoLinkedResources.get", roles=READ)
def get_link(request: GraphRequest) -> GraphResponse:
    _, item = task_item(request)
    return _link_answer(request, _link(item, request.params["link"]))


@route("PATCH", f"{LINKS}/{{link}}", "graph.todoLinkedResources.update", roles=WRITE)
def update_link(request: GraphRequest) -> GraphResponse:
    _, item = task_item(request)
    link = parse_link(request.json(), _link(item, request.params["link"]))
    _write_links(request, item, [link if other["id"] == link["id"] else other for other in _links(item)])
    return _link_answer(request, link)


@route("DELETE", f"{LINKS}/{{link}}", "graph.todoLinkedResources.delete", roles=WRITE)
def delete_link(request: GraphRequest) -> GraphResponse:
    _, item = task_item(request)
    link = _link(item, request.params["link"])
    _write_links(request, item, [other for other in _links(item) if other["id"] != link["id"]])
    return no_content()


# ---- delta ----------------------------------------------------------------------------------------------
@route("GET", f"{TASKS}/delta", "graph.todoTasks.delta", roles=READ)
def tasks_delta(request: GraphRequest) -> GraphResponse:
    """Changes of a list since the last round: pages through nextLink ($skiptoken) to a deltaLink ($deltatoken);
    a task gone from the list (deleted, or moved to another list) comes as ``@removed``."""
    front = request.front
    folder = resolve_list(request, request.params["list"])
    request.query.refuse("$filter", "$expand", "$orderby", "$search", "$top", where="todoTask delta")
    token = token_of(request)
    if token is not None:
        if front.sim.faults.take("invalid_sync_state", request.operation, request.mailbox):
            raise gone()
        payload = front.deltas.decode(token, "todo")
        if payload.get("f") != folder.id:
            raise gone()
        state, select = payload["s"], payload.get("sel")
    else:
        check_select(request.query.select, TASK_PROPS, "todoTask")
        state, select = None, request.query.select
    try:
        changes, new_state, done = request.store.sync_folder_items(folder.id, state, page_size(request))
    except StoreError as err:
        if err.code == "ErrorInvalidSyncStateData":
            raise gone() from None
        raise
    values: list[dict[str, Any]] = []
    for op, change in changes:
        if op == "Delete":
            assert isinstance(change, str)
            values.append(removed(request.graph_id(change), "todoTask"))
        elif isinstance(change, Item) and change.kind == "Task":
            values.append(apply_select(task_json(request, change), select))
    next_token = front.deltas.encode({"k": "todo", "f": folder.id, "s": new_state, "sel": select})
    return delta_answer(request, values, next_token, done, "todoTask")
