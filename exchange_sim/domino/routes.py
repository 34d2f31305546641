"""The routes of the Domino front end: ``/v1/auth`` (basis), the PIM calendar (``/pim-v1``) and the PIM
routes To Do items go through (``todo.py``: search, pimitem; a ``jstask`` posted to the calendar)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from exchange_sim import meetings
from exchange_sim.domino import todo
from exchange_sim.domino.frontend import DominoError, DominoRequest
from exchange_sim.domino.jscalendar import entry_changes, entry_json
from exchange_sim.store import Folder, Item

Answer = tuple[int, Any, dict[str, str]]
SEND = {"send_invitations": "SendToAllAndSaveCopy"}
QUIET = {"send_invitations": "SendToNone"}


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    operation: str
    handler: Callable[[DominoRequest], Answer]
    anonymous: bool = False


ROUTES: list[Route] = []


def route(method: str, path: str, operation: str, *, anonymous: bool = False) -> Callable[[Callable[[DominoRequest], Answer]], Callable[[DominoRequest], Answer]]:
    pattern = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path) + "/?$")

    def register(func: Callable[[DominoRequest], Answer]) -> Callable[[DominoRequest], Answer]:
        ROUTES.append(Route(method, pattern, operation, func, anonymous))
        return func

    return register


def match(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    for candidate in ROUTES:
        found = candidate.pattern.match(path)
        if found and candidate.method == method:
            return candidate, found.groupdict()
    return None


# ---- basis: authentication ------------------------------------------------------------------------------
@route("POST", "/v1/auth", "domino.auth", anonymous=True)
def auth(request: DominoRequest) -> Answer:
    data = request.json()
    username, password = data.get("username"), data.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise DominoError(400, "'username' and 'password' are required.")
    account = request.front.sim.auth.check_password(username, password)
    if account is None:
        raise DominoError(401, "Invalid credentials or account locked")
    return 200, request.front.issue(account.name), {}


# ---- PIM: calendars -------------------------------------------------------------------------------------
def default_calendar(request: DominoRequest) -> Folder:
    if request.params.get("calid", "default") != "default":
        raise DominoError(404, f"No calendar '{request.params['calid']}' (only 'default').")
    return request.store.distinguished_folder(request.mailbox, "calendar")


def entry_item(request: DominoRequest) -> Item:
    folder = default_calendar(request)
    uid = request.params["calentryid"]
    for item in request.store.live_items(folder.id, "CalendarItem"):
        if item.props.get("UID") == uid:
            return item
    raise DominoError(404, "This is not the data you seek!")


@route("GET", "/pim-v1/calendars", "domino.calendars.list")
def list_calendars(request: DominoRequest) -> Answer:
    folder = request.store.distinguished_folder(request.mailbox, "calendar")
    return 200, [{"calendarName": "default", "id": "default", "title": folder.display_name, "private": True}], {}


def _day(text: str | None, name: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise DominoError(400, f"'{name}' is not a date: {text!r}.") from None


@route("GET", "/pim-v1/calendar/{calid}", "domino.calendar.list")
def list_entries(request: DominoRequest) -> Answer:
    """Entries overlapping [startdate, enddate] (whole UTC days, enddate inclusive)."""
    folder = default_calendar(request)
    first, last = _day(request.query.get("startdate"), "startdate"), _day(request.query.get("enddate"), "enddate")
    low = datetime.combine(first, time.min, UTC) if first else None
    high = datetime.combine(last + timedelta(days=1), time.min, UTC) if last else None
    items = sorted(request.store.live_items(folder.id, "CalendarItem"), key=lambda i: (i.props["Start"], i.created_seq))
    out = []
    for item in items:
        start, end = item.props["Start"], item.props["End"]
        if high is not None and start >= high:
            continue
        if low is not None and max(end, start + timedelta(seconds=1)) <= low and not item.props.get("Recurrence"):
            continue
        out.append(entry_json(request.front, item))
    return 200, out, {}


@route("POST", "/pim-v1/calendar/{calid}", "domino.calendar.create")
def create_entry(request: DominoRequest) -> Answer:
    folder = default_calendar(request)
    data = request.json()
    if str(data.get("@type") or "").lower() == "jstask":  # a To Do (todo.py)
        return todo.create(request, data)
    set_props, _, extended = entry_changes(data, None, request.mailbox, request.store.new_changekey)
    if data.get("uid"):
        uid = str(data["uid"])
        if any(i.props.get("UID") == uid for i in request.store.live_items(folder.id, "CalendarItem")):
            raise DominoError(400, f"An entry with uid '{uid}' exists already.")
        set_props["UID"] = uid
    context = dict(SEND if request.flag("send") else QUIET)
    item = request.store.create_item(folder.id, "CalendarItem", set_props, extended, context=context)
    return 200, entry_json(request.front, request.store.item(item.id)), {}


@route("GET", "/pim-v1/calendar/{calid}/{calentryid}", "domino.calendar.get")
def get_entry(request: DominoRequest) -> Answer:
    return 200, entry_json(request.front, entry_item(request)), {}


@route("PUT", "/pim-v1/calendar/{calid}/{calentryid}", "domino.calendar.update")
def update_entry(request: DominoRequest) -> Answer:
    item = entry_item(request)
    data = request.json()
    organizer = meetings.is_organizer_copy(item)
    send = request.flag("send") and organizer
    if data.get("status") == "cancelled" and organizer:
        if send and meetings.attendee_addresses(item.props):
            meetings.cancel(request.store, item.id, save_copy=False)
        else:
            request.store.delete_item(item.id, "MoveToDeletedItems", context=dict(QUIET))
        return 200, {"status": 200, "message": "Entry cancelled"}, {}
    data = {k: v for k, v in data.items() if k != "status"}
    set_props, delete, extended = entry_changes(data, item, request.mailbox, request.store.new_changekey)
    context: dict[str, Any] = {**(SEND if send else QUIET), "written": frozenset(set_props)}
    if "recurrenceOverrides" in data:
        # The overrides written are the series' whole set: a pattern written with them keeps them.
        context["occurrence"] = "*"
    updated = request.store.update_item(item.id, set_props=set_props, delete_props=delete, set_extended=extended, context=context)
    return 200, entry_json(request.front, updated), {}


@route("DELETE", "/pim-v1/calendar/{calid}/{calentryid}", "domino.calendar.delete")
def delete_entry(request: DominoRequest) -> Answer:
    task = todo.find_task(request, request.params["calentryid"]) if request.params.get("calid") == "default" else None
    if task is not None:  # a To Do (todo.py)
        return todo.delete(request, task)
    item = entry_item(request)
    request.store.delete_item(item.id, "MoveToDeletedItems", context=dict(QUIET))
    return 200, {"status": 200, "message": "Entry deleted"}, {}


# ---- PIM: meeting responses -----------------------------------------------------------------------------
RESPONSE_OF_ACTION = {"accepted": "Accept", "declined": "Decline", "tentative": "Tentative"}


@route("GET", "/pim-v1/calendarresponse/{calid}/{calentryid}", "domino.calendar.responses")
def get_responses(request: DominoRequest) -> Answer:
    """The participants of an entry with their responses (CalendarEventNotification's shape)."""
    return 200, {"participants": entry_json(request.front, entry_item(request)).get("participants") or {}}, {}


@route("POST", "/pim-v1/calendarresponse/{calid}/{calentryid}", "domino.calendar.respond")
def respond(request: DominoRequest) -> Answer:
    """An invitee answers a meeting in their mail file: their copy takes the response, and the
    organizer's entry records it (Domino mails the response to the organizer's mail file, as
    Exchange does). Declined: the invitee's copy leaves the calendar."""
    item = entry_item(request)
    data = request.json()
    action = str(data.get("participantAction") or "").lower()
    if action in ("delegated", "counter"):
        raise DominoError(501, f"A '{action}' response is not implemented by the simulator.")
    if action not in RESPONSE_OF_ACTION:
        raise DominoError(400, "'participantAction' must be accepted, declined or tentative.")
    if meetings.is_organizer_copy(item):
        raise DominoError(400, "The chair of a meeting does not respond to it.")
    meetings.respond(request.store, item.id, RESPONSE_OF_ACTION[action], send=True)
    return 200, {"status": 200, "message": f"Response '{action}' sent"}, {}


# ---- PIM: the generic routes To Do items go through (todo.py) ---------------------------------------------
route("POST", "/pim-v1/search", "domino.search")(todo.search)
route("GET", "/pim-v1/pimitem/{unid}", "domino.pimitem.get")(todo.get_item)
route("PUT", "/pim-v1/pimitem/{unid}", "domino.pimitem.update")(todo.update_item)
