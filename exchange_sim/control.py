"""The /_sim/ control API: JSON over HTTP on the EWS port, for a simulator running as its own process.

    GET  /_sim/health                          {"ok": true, "endpoint": ...}
    GET  /_sim/counters                        {"CreateItem": 3, ...}; POST /_sim/counters/reset
    GET  /_sim/faults                          armed faults; POST /_sim/faults {"kind": "server_busy", "times": 2,
                                               "operation": "CreateItem", "back_off_ms": 500}; POST /_sim/faults/clear
    POST /_sim/latency                         {"ms": 50}
    POST /_sim/meetings                        {"delivery_delay": 2.5}  (seconds before invitee copies appear)
    POST /_sim/connections                     {"max_per_account": 2}  (null lifts the limit)
    POST /_sim/budget                          {"requests": 50, "per_seconds": 60}  (throttling; null lifts it)
    GET  /_sim/clock                           POST /_sim/clock {"set": ISO, "frozen": false} | {"advance_seconds": N}
                                               | {"reset": true}
    GET  /_sim/mailboxes                       addresses; POST {"address", "display_name", "time_zone", "password"}
    GET  /_sim/mailboxes/<address>/items?folder=contacts
    POST /_sim/mailboxes/<address>/contacts    {"folder": "contacts", "props": {...}}
    POST /_sim/mailboxes/<address>/events      {"subject", "start", "end", "time_zone", "send", "props": {...}}
    POST /_sim/mailboxes/<address>/tasks       {"subject", "folder": "tasks", "props": {...}}  a task as the user makes it in
                                               Outlook or To Do (the Tasks folder is To Do's default list), e.g. props
                                               {"DueDate": "2027-03-10", "Importance": "High", "Status": "InProgress",
                                               "ReminderIsSet": true, "ReminderDueBy": ISO, "Categories": [...]}
    POST /_sim/mailboxes/<address>/messages   {"folder": "inbox", "from": ADDRESS, "to": [...], "cc": [...], "subject", "body",
                                               "categories": [...], "received": ISO, "internet_message_id": optional,
                                               "attachments": [NAME | {"name", "content"}]}: a message as received from
                                               outside (folder "sentitems": sent from here by another client); with
                                               "send": true it is sent from this mailbox instead (delivered to the
                                               simulator's recipients, the copy kept in Sent Items). Answers the new item
                                               ("copies": N delivers N such messages, subjects numbered, for benches;
                                               answers the last)
    POST /_sim/mailboxes/<address>/folders     {"name": "CRM", "parent": "contacts"}
    POST /_sim/items/<id>/edit                 {"props": {...}}  (null removes); <id> URL-encoded (ids hold '/'); on a
                                               task {"props": {"Status": "Completed"}} ticks it off (100 %, completed
                                               today) and {"Status": "NotStarted"} reopens it, as Exchange does
    POST /_sim/items/<id>/delete               {"hard": false}  (a task too: to Deleted Items, or gone with hard)
    POST /_sim/items/<id>/move                 {"folder": "contacts/Old"}
    POST /_sim/items/<id>/accept | decline | tentative | dismiss_reminder
    GET  /_sim/log                             POST /_sim/log {"enabled": true} | {"clear": true}
    GET  /_sim/violations                      schema violations seen so far
    POST /_sim/save                            write the --state file now
    GET  /_sim/domino                          Domino endpoint; POST /_sim/domino/expire_tokens, /_sim/domino/token_seconds {"seconds"}
    GET  /_sim/graph                           Graph endpoints, apps, throttling; POST /_sim/graph/expire_tokens,
                                               /_sim/graph/invalidate_delta_tokens, /_sim/graph/apps {"client_id",
                                               "secret", "mailboxes", "roles"}, /_sim/graph/throttling {"concurrency",
                                               "retry_after", "requests", "per_seconds"}; /_sim/graph/subscriptions
                                               (GET list; POST .../<id>/lifecycle {"event": "missed"})
The control API is served on the EWS port and on the Graph (TLS) port alike.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlparse

from exchange_sim.ews.codec import xsd_type
from exchange_sim.ews.xmlutil import parse_datetime
from exchange_sim.server import json_response
from exchange_sim.store import Item, StoreError

if TYPE_CHECKING:
    from exchange_sim.simulator import Simulator


def item_json(item: Item) -> dict[str, Any]:
    return {
        "id": item.id,
        "changekey": item.changekey,
        "kind": item.kind,
        "folder_id": item.folder_id,
        "props": item.props,
        "extended": [{**k.as_dict(), "value": v} for k, v in item.extended.items()],
    }


def props_from_json(kind: str, props: dict[str, Any]) -> dict[str, Any]:
    """ISO strings become datetimes where Exchange's schema says dateTime."""
    out: dict[str, Any] = {}
    for name, value in props.items():
        if isinstance(value, str) and xsd_type(kind, name) == "xs:dateTime":
            out[name] = parse_datetime(value)
        else:
            out[name] = value
    return out


class ControlApi:
    def __init__(self, simulator: Simulator) -> None:
        self.sim = simulator

    def handle(self, handler: Any, method: str, body: bytes) -> None:
        url = urlparse(handler.path)
        parts = [unquote(p) for p in url.path.split("/")[2:] if p]
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        try:
            data = json.loads(body) if body else {}
            status, result = self.route(method, parts, query, data)
        except StoreError as err:
            status, result = 400, {"error": err.code, "message": err.message}
        except (ValueError, KeyError, TypeError) as err:
            status, result = 400, {"error": type(err).__name__, "message": str(err)}
        json_response(handler, status, result)

    def route(self, method: str, parts: list[str], query: dict[str, str], data: dict[str, Any]) -> tuple[int, Any]:
        sim = self.sim
        head = parts[0] if parts else ""
        if head == "health":
            return 200, {"ok": True, "endpoint": sim.url}
        if head == "counters":
            if method == "POST":
                sim.counters.reset()
            return 200, sim.counters.snapshot()
        if head == "faults":
            return self._faults(method, parts, data)
        if head == "latency" and method == "POST":
            sim.faults.latency_ms = int(data.get("ms", 0))
            return 200, sim.faults.describe()
        if head == "budget" and method == "POST":
            sim.faults.budget(data.get("requests"), float(data.get("per_seconds", 60)))
            return 200, sim.faults.describe()
        if head == "connections" and method == "POST":
            limit = data.get("max_per_account")
            sim.faults.max_connections_per_account = int(limit) if limit is not None else None
            return 200, sim.faults.describe()
        if head == "meetings" and method == "POST":
            sim.meetings.delivery_delay = float(data.get("delivery_delay", 0))
            return 200, {"delivery_delay": sim.meetings.delivery_delay}
        if head == "clock":
            return self._clock(method, data)
        if head == "graph" and sim.graph is not None:
            return sim.graph.control(method, parts[1:], data)
        if head == "domino" and sim.domino is not None:
            return sim.domino.control(method, parts[1:], data)
        if head == "mailboxes":
            return self._mailboxes(method, parts[1:], query, data)
        if head == "items" and len(parts) >= 3 and method == "POST":
            return self._item_action(parts[1], parts[2], data)
        if head == "log":
            if method == "POST":
                if "enabled" in data:
                    sim.request_log.enabled = bool(data["enabled"])
                if data.get("clear"):
                    sim.request_log.clear()
            return 200, [e.__dict__ for e in sim.request_log.entries()]
        if head == "violations":
            return 200, [str(v) for v in sim.schema_violations]
        if head == "save" and method == "POST" and sim.state_file:
            sim.store.save(sim.state_file)
            return 200, {"saved": sim.state_file}
        return 404, {"error": "not found"}

    def _faults(self, method: str, parts: list[str], data: dict[str, Any]) -> tuple[int, Any]:
        faults = self.sim.faults
        if method == "POST" and parts[1:] == ["clear"]:
            faults.clear(data.get("kind"))
        elif method == "POST":
            params = {k: v for k, v in data.items() if k not in {"kind", "times", "operation", "mailbox"}}
            faults.arm(data["kind"], data.get("times", 1), data.get("operation"), data.get("mailbox"), **params)
        return 200, faults.describe()

    def _clock(self, method: str, data: dict[str, Any]) -> tuple[int, Any]:
        clock = self.sim.clock
        if method == "POST":
            if data.get("reset"):
                clock.reset()
            if "set" in data:
                clock.set(datetime.fromisoformat(data["set"]), frozen=bool(data.get("frozen")))
            if "advance_seconds" in data:
                clock.advance(timedelta(seconds=float(data["advance_seconds"])))
        return 200, clock.describe()

    def _mailboxes(self, method: str, parts: list[str], query: dict[str, str], data: dict[str, Any]) -> tuple[int, Any]:
        if not parts and method == "POST":
            self.sim.add_mailbox(data["address"], data.get("display_name"), data.get("time_zone", "UTC"), data.get("password"))
            return 201, {"address": data["address"]}
        if not parts:
            return 200, list(self.sim.mailboxes())
        user = self.sim.user(parts[0])
        what = parts[1] if len(parts) > 1 else ""
        if method == "GET" and what == "items":
            return 200, [item_json(i) for i in user.items(query.get("folder", "contacts"))]
        if method == "POST" and what == "contacts":
            props = props_from_json("Contact", data.get("props", {}))
            return 201, item_json(user.create_contact(data.get("folder", "contacts"), **props))
        if method == "POST" and what == "events":
            props = props_from_json("CalendarItem", data.get("props", {}))
            item = user.create_event(
                data["subject"],
                parse_datetime(data["start"]),
                parse_datetime(data["end"]),
                data.get("folder", "calendar"),
                time_zone=data.get("time_zone"),
                send=data.get("send", True),
                **props,
            )
            return 201, item_json(item)
        if method == "POST" and what == "tasks":
            props = props_from_json("Task", data.get("props", {}))
            return 201, item_json(user.create_task(data["subject"], data.get("folder", "tasks"), **props))
        if method == "POST" and what == "messages":
            return 201, item_json(self._message(user.address, data))
        if method == "POST" and what == "folders":
            folder = user.create_folder(data["name"], data.get("parent", "contacts"), data.get("folder_class"))
            return 201, folder.__dict__
        return 404, {"error": "not found"}

    def _message(self, address: str, data: dict[str, Any]) -> Item:
        from exchange_sim import messages

        common = {k: data[k] for k in ("subject", "body", "categories", "attachments") if k in data}
        if data.get("send"):
            sent = messages.send(self.sim.store, address, to=data.get("to") or [], cc=data.get("cc"), **common)
            if sent is None:
                raise ValueError("a message sent without a copy leaves no item to answer")
            return sent
        received = parse_datetime(data["received"]) if data.get("received") else None
        copies = max(1, int(data.get("copies", 1)))
        for n in range(copies):
            if copies > 1:
                common["subject"] = f"{data.get('subject', '')} {n:05d}"
            item = messages.deliver(
                self.sim.store,
                address,
                folder=data.get("folder", "inbox"),
                sender=data.get("from"),
                to=data.get("to"),
                cc=data.get("cc"),
                received=received,
                internet_message_id=data.get("internet_message_id") if copies == 1 else None,
                **common,
            )
        return item

    def _item_action(self, item_id: str, action: str, data: dict[str, Any]) -> tuple[int, Any]:
        item = self.sim.store.item(item_id)
        user = self.sim.user(item.mailbox)
        if action == "edit":
            return 200, item_json(user.edit(item, **props_from_json(item.kind, data.get("props", {}))))
        if action == "delete":
            user.delete(item, hard=bool(data.get("hard")))
            return 200, {"deleted": item_id}
        if action == "move":
            return 200, item_json(user.move(item, data["folder"]))
        if action in {"accept", "decline", "tentative", "dismiss_reminder"}:
            return 200, item_json(getattr(user, action)(item))
        return 404, {"error": f"unknown action {action}"}
