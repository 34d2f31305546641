"""``calendarView/delta``: occurrences, exceptions and single events of a window fixed in the token.

A round's state is kept by the simulator (as Exchange keeps sync states): the instances of the window
with their change keys when the round ended. The next round answers what differs: new or changed
instances in full, vanished ones as ``@removed``; and, as documented for Graph, events outside the window
that were added, updated or deleted since also come as ``@removed`` (clients filter those). Series
masters never appear. ``$select``, ``$filter``, ``$expand``, ``$orderby`` and ``$search`` are refused,
as Graph documents. Unknown, evicted or invalidated tokens answer 410 Gone (SyncStateNotFound).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from exchange_sim import calendar
from exchange_sim.graph.api import GraphRequest, GraphResponse, route
from exchange_sim.graph.delta import delta_answer, gone, page_size, removed, token_of
from exchange_sim.graph.events import READ, event_json, resolve_calendar, window
from exchange_sim.store import StoreError

MAX_ROUNDS = 5000  # rounds kept; older tokens answer 410 as expired ones do on Exchange


@dataclass
class Round:
    mailbox: str
    folder_id: str
    start: datetime
    end: datetime
    snapshot: dict[str, str]  # instance store id -> change key, at the end of the round
    seq: int  # store journal position when the snapshot was taken
    pending: list[tuple[str, str]] = field(default_factory=list)  # ("upsert" | "removed", store id)


def _snapshot(request: GraphRequest, folder_id: str, start: datetime, end: datetime) -> dict[str, str]:
    return calendar.view_keys(request.store, folder_id, start, end)


def _changes(request: GraphRequest, previous: Round, current: dict[str, str]) -> list[tuple[str, str]]:
    changes = [("upsert", i) for i, key in current.items() if previous.snapshot.get(i) != key]
    changes += [("removed", i) for i in previous.snapshot if i not in current]
    seen = {calendar.split_occurrence_id(i)[0] if calendar.split_occurrence_id(i) else i for i in [*current, *previous.snapshot]}
    outside: list[str] = []
    for change in request.store.journal(previous.seq):
        if change.is_folder or change.mailbox.lower() != previous.mailbox.lower():
            continue
        if change.folder_id != previous.folder_id and change.old_folder_id != previous.folder_id:
            continue
        if change.id not in seen and change.id not in outside:
            outside.append(change.id)
    return changes + [("removed", i) for i in outside]


def _instance(request: GraphRequest, store_id: str, until: datetime, series: dict[str, Any]) -> Any:
    """The item or occurrence behind a page entry (the round's occurrences start by `until`); None when
    it is gone. `series` keeps each master's occurrences for the page (a page lists many of a series).
    Items are read live (the handler holds the store lock and only renders them)."""
    split = calendar.split_occurrence_id(store_id)
    try:
        if split is None:
            return request.store.live_item(store_id)
        master_id, original = split
        if master_id not in series:
            master = request.store.live_item(master_id)
            expanded = calendar.occurrences(master, until=until) if master.props.get("Recurrence") else []
            series[master_id] = (master, {o.original_start: o for o in expanded})
        master, by_start = series[master_id]
    except StoreError:
        return None
    occ = by_start.get(original)
    return calendar.occurrence_item(master, occ) if occ is not None and not occ.deleted else None


def _calendar_delta(request: GraphRequest) -> GraphResponse:
    front = request.front
    deltas = front.deltas
    folder = resolve_calendar(request, request.params.get("calendar"))
    request.query.refuse("$select", "$filter", "$expand", "$orderby", "$search", where="calendarView delta")
    token = token_of(request)
    assert request.mailbox is not None
    if token is None:
        start, end = window(request)
        current = _snapshot(request, folder.id, start, end)
        state = Round(request.mailbox, folder.id, start, end, current, request.store.seq, [("upsert", i) for i in current])
        offset = 0
    else:
        if front.sim.faults.take("invalid_sync_state", request.operation, request.mailbox):
            raise gone()
        payload = deltas.decode(token, "calendarView")
        previous = deltas.rounds.get(payload["r"])
        if previous is None or previous.folder_id != folder.id:
            raise gone()
        if payload["o"] is None:  # a deltaLink: a new round from the end of the previous one
            current = _snapshot(request, folder.id, previous.start, previous.end)
            pending = _changes(request, previous, current)
            state = Round(previous.mailbox, folder.id, previous.start, previous.end, current, request.store.seq, pending)
            offset = 0
        else:
            state, offset = previous, int(payload["o"])
    size = page_size(request)
    page = state.pending[offset : offset + size]
    values = []
    series: dict[str, Any] = {}
    for op, store_id in page:
        item = _instance(request, store_id, state.end, series) if op == "upsert" else None
        values.append(event_json(request, item, []) if item is not None else removed(request.graph_id(store_id), "event"))
    round_id = payload["r"] if token is not None and payload["o"] is not None else _keep(front, state)
    done = offset + size >= len(state.pending)
    next_token = deltas.encode({"k": "calendarView", "r": round_id, "o": None if done else offset + size})
    return delta_answer(request, values, next_token, done, "event")


def _keep(front: Any, state: Round) -> str:
    rounds = front.deltas.rounds
    round_id = uuid.uuid4().hex
    rounds[round_id] = state
    while len(rounds) > MAX_ROUNDS:
        rounds.pop(next(iter(rounds)))
    return round_id


for _base in ("users/{user}", "users/{user}/calendar", "users/{user}/calendars/{calendar}"):
    route("GET", f"{_base}/calendarView/delta", "graph.calendarView.delta", roles=READ)(_calendar_delta)
