"""Task semantics: the items of a mailbox's Tasks folder (EWS ``t:Task``, Graph's Microsoft To Do).

Exchange keeps a task's dates as days, not instants: ``DueDate``, ``StartDate`` and ``CompleteDate`` are
stored as midnight UTC of their day (Graph answers ``completedDateTime`` as UTC midnight too, a known
To Do behaviour). A value written is taken as the UTC date of what was written (a ``date`` as is): write
midnight UTC, as exchangelib does for its date fields; a local midnight east of UTC lands on the day before.

Completion, as Exchange does it:
* ``Status`` Completed sets ``PercentComplete`` 100 and ``CompleteDate`` (today in the mailbox's zone,
  unless the same write gave one); ``PercentComplete`` 100 alone completes the task too.
* Back from Completed (another ``Status``, or ``PercentComplete`` below 100) drops ``CompleteDate``; a
  ``PercentComplete`` left at 100 goes to 0 (or stays what the same write set).
* A new task is NotStarted at 0 %, Normal importance, without a reminder.

The hidden property ``_LinkedResources`` holds Graph's linkedResources (To Do keeps the sync id there);
EWS does not show it. ``ReminderDueBy`` is an instant (``reminderDateTime``), not a day.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from exchange_sim.store import Item, Store

STATUSES = ("NotStarted", "InProgress", "Completed", "WaitingOnOthers", "Deferred")
DAY_PROPS = ("DueDate", "StartDate", "CompleteDate")
LINKED = "_LinkedResources"


def as_day(value: Any) -> datetime | None:
    """A task date as the store keeps it: midnight UTC of the UTC date of what was written."""
    if value is None:
        return None
    if isinstance(value, datetime):
        day = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).date()
    elif isinstance(value, date):
        day = value
    else:
        day = date.fromisoformat(str(value)[:10])
    return datetime.combine(day, time(0), tzinfo=UTC)


def today_in(store: Store, address: str) -> datetime:
    """Today's date in the mailbox's zone, as a stored day: what Outlook writes as the completion date."""
    try:
        zone = ZoneInfo(store.mailbox(address).time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return datetime.combine(store.clock.now().astimezone(zone).date(), time(0), tzinfo=UTC)


def _percent(value: Any) -> float:
    try:
        return max(0.0, min(100.0, float(value)))
    except (TypeError, ValueError):
        return 0.0


def normalize_values(props: dict[str, Any]) -> None:
    """Types Exchange keeps: days for the dates, a number for PercentComplete (EWS sends xs:double text)."""
    for name in DAY_PROPS:
        if props.get(name) is not None:
            props[name] = as_day(props[name])
    if "PercentComplete" in props:
        props["PercentComplete"] = _percent(props["PercentComplete"])


def complete_task_defaults(store: Store, item: Item) -> None:
    """Every write: values typed as Exchange keeps them, and the defaults of a new task."""
    if item.kind != "Task":
        return
    props = item.props
    normalize_values(props)
    props.setdefault("Status", "NotStarted")
    props.setdefault("PercentComplete", 0.0)
    props.setdefault("Importance", "Normal")
    props.setdefault("ReminderIsSet", False)
    props.setdefault("Sensitivity", "Normal")


def settle_new_task(store: Store, item: Item) -> None:
    """A created task: Status and PercentComplete agree, as after an edit."""
    if item.kind != "Task":
        return
    props = item.props
    if props.get("Status") == "Completed" or props.get("PercentComplete") == 100.0:
        _complete(store, item, keep_date=True)
    else:
        props.pop("CompleteDate", None)


def settle_update(store: Store, before: Item, item: Item) -> None:
    """An edited task: what the write changed (Status or PercentComplete) decides the other."""
    if item.kind != "Task":
        return
    props, old = item.props, before.props
    status_changed = props.get("Status") != old.get("Status")
    percent_changed = props.get("PercentComplete") != old.get("PercentComplete")
    was_complete = old.get("Status") == "Completed"
    if props.get("Status") == "Completed" and (status_changed or not percent_changed):
        _complete(store, item, keep_date=props.get("CompleteDate") != old.get("CompleteDate") or not status_changed)
    elif percent_changed and props.get("PercentComplete") == 100.0 and not status_changed:
        _complete(store, item, keep_date=False)
    elif was_complete and props.get("Status") == "Completed":  # only PercentComplete went below 100
        props["Status"] = "InProgress" if props.get("PercentComplete") else "NotStarted"
        props.pop("CompleteDate", None)
    elif props.get("Status") != "Completed":
        props.pop("CompleteDate", None)
        if props.get("PercentComplete") == 100.0:
            props["PercentComplete"] = 0.0


def _complete(store: Store, item: Item, keep_date: bool) -> None:
    props = item.props
    props["Status"] = "Completed"
    props["PercentComplete"] = 100.0
    if not (keep_date and props.get("CompleteDate")):
        props["CompleteDate"] = today_in(store, item.mailbox)


def computed_task(store: Store, item: Item) -> dict[str, Any]:
    """Values Exchange computes for a task (EWS ``IsComplete``, ``IsRecurring``)."""
    return {"IsComplete": item.props.get("Status") == "Completed", "IsRecurring": bool(item.props.get("Recurrence"))}


def install(simulator: Any) -> None:
    from exchange_sim.ews import task_ops

    store: Store = simulator.store
    store.add_hook("complete_defaults", lambda item: complete_task_defaults(store, item))
    store.add_hook("after_create", lambda item, context: settle_new_task(store, item))
    store.add_hook("after_update", lambda before, item, context: settle_update(store, before, item))
    task_ops.install(simulator)
