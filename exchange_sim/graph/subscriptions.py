"""Change notifications through webhooks: ``/v1.0/subscriptions`` (``sim.graph.subscriptions``).

* ``POST /subscriptions`` validates the notification URL first, as Graph does: it POSTs
  ``{notificationUrl}?validationToken=...`` (``text/plain``) and wants the token back within
  ``validation_timeout`` seconds as ``200 text/plain``, else the create fails with 400 ValidationError
  (the lifecycleNotificationUrl is validated the same way).
* Resources: ``users/{id}/contacts`` (contacts in every contact folder), ``users/{id}/contactFolders/{id}/contacts``,
  ``users/{id}/events`` (every calendar), ``users/{id}/calendar/events``, ``users/{id}/calendars/{id}/events``,
  ``users/{id}/todo/lists/{id}/tasks`` (Microsoft To Do; at most 4230 minutes ahead, as Graph allows for todoTask).
* Each change of the store (whoever made it: Graph, EWS, Outlook, meeting delivery) becomes a notification
  ``{"subscriptionId", "subscriptionExpirationDateTime", "changeType", "resource", "resourceData",
  "clientState", "tenantId"}`` POSTed (batched per URL) to the notificationUrl. A delivery that fails
  (no 2xx within ``delivery_timeout``) is retried after each of ``retry_delays`` seconds, then dropped;
  a dropped delivery sends a ``missed`` lifecycle notification.
* Subscriptions expire on the simulator clock (at most ``max_expiration`` ahead); PATCH renews them;
  DELETE removes them. ``lifecycle(id, "reauthorizationRequired" | "missed" | "subscriptionRemoved")``
  sends a lifecycle notification now (``POST /_sim/graph/subscriptions/<id>/lifecycle {"event": ...}``).
* Notification URLs must be https, except loopback ones (http://127.0.0.1:..., http://localhost:...);
  a loopback https URL is called without verifying its certificate.

    sim.graph.subscriptions.all(); sim.graph.subscriptions.wait_idle(timeout=5)
    sim.graph.subscriptions.retry_delays = [0.1]; sim.graph.subscriptions.validation_timeout = 10
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlparse, urlunparse

import httpx

from exchange_sim.graph.api import GraphRequest, GraphResponse, collection, no_content, ok, route, split_path
from exchange_sim.graph.auth import ACCESS_POLICY_TEXT
from exchange_sim.graph.errors import GraphError, bad_request
from exchange_sim.graph.ids import folder_graph_id, store_id_from_rest, user_id
from exchange_sim.graph.values import parse_datetime
from exchange_sim.store import Change, StoreError

if TYPE_CHECKING:
    from exchange_sim.graph.frontend import GraphFrontEnd

log = logging.getLogger("exchange_sim.graph")
CHANGE_TYPES = {"created", "updated", "deleted"}
LIFECYCLE_EVENTS = {"reauthorizationRequired", "missed", "subscriptionRemoved"}
MAX_EXPIRATION = timedelta(minutes=10080)  # Outlook messages, events and contacts
TODO_MAX_EXPIRATION = timedelta(minutes=4230)  # Graph's limit for todoTask
ROLES = {
    "Contact": ("Contacts.Read", "Contacts.ReadWrite"),
    "CalendarItem": ("Calendars.Read", "Calendars.ReadWrite"),
    "Task": ("Tasks.Read.All", "Tasks.ReadWrite.All"),
    "Message": ("Mail.Read", "Mail.ReadWrite"),
}
OP_NAMES = {"created": "created", "modified": "updated", "deleted": "deleted"}


@dataclass
class Subscription:
    id: str
    app: str
    resource: str
    mailbox: str
    kind: str  # Contact | CalendarItem | Task
    folder_id: str | None  # None: every folder of the kind
    change_types: set[str]
    notification_url: str
    lifecycle_url: str | None
    client_state: str | None
    expiration: datetime
    immutable_ids: bool = False
    tls_version: str = "v1_2"
    reauthorization_required: bool = False
    notified: int = 0
    missed: int = 0
    lifecycle_sent: list[str] = field(default_factory=list)

    def json(self, front: GraphFrontEnd) -> dict[str, Any]:
        app = front.directory.apps.get(self.app)
        return {
            "id": self.id,
            "resource": self.resource,
            "applicationId": self.app,
            "changeType": ",".join(t for t in ("created", "updated", "deleted") if t in self.change_types),
            "clientState": self.client_state,
            "notificationUrl": self.notification_url,
            "notificationQueryOptions": None,
            "lifecycleNotificationUrl": self.lifecycle_url,
            "expirationDateTime": _expiry_text(self.expiration),
            "creatorId": app.object_id if app else None,
            "includeResourceData": None,
            "latestSupportedTlsVersion": self.tls_version,
            "encryptionCertificate": None,
            "encryptionCertificateId": None,
            "notificationUrlAppId": None,
        }


def _expiry_text(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond:06d}0Z"


def is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def with_query(url: str, **params: str) -> str:
    parts = urlparse(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunparse(parts._replace(query=urlencode(query)))


@dataclass(order=True)
class _Delivery:
    due: float
    seq: int
    url: str = field(compare=False)
    payload: dict[str, Any] = field(compare=False)
    subscription_ids: list[str] = field(compare=False)
    attempt: int = field(default=0, compare=False)
    lifecycle: bool = field(default=False, compare=False)


class Webhooks:
    def __init__(self, front: GraphFrontEnd) -> None:
        self.front = front
        self.validation_timeout = 10.0
        self.delivery_timeout = 3.0
        self.retry_delays: list[float] = [1.0, 2.0, 4.0]
        self.max_expiration = MAX_EXPIRATION
        self._subs: dict[str, Subscription] = {}
        self._lock = threading.Lock()
        self._cond = threading.Condition()
        self._changes: deque[Change] = deque()
        self._deliveries: list[_Delivery] = []
        self._seq = 0
        self._busy = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        front.sim.store.add_listener(self._on_change)

    # ---- lifecycle of the dispatcher ---------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="exchange_sim-webhooks", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every change so far was notified (retries still scheduled count as pending)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._changes or self._deliveries or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.05))
        return True

    # ---- subscriptions -----------------------------------------------------------------------------
    def all(self) -> list[Subscription]:
        self._expire()
        with self._lock:
            return list(self._subs.values())

    def get(self, subscription_id: str, app: str | None = None) -> Subscription:
        self._expire()
        with self._lock:
            sub = self._subs.get(subscription_id)
        if sub is None or (app is not None and sub.app != app):
            raise GraphError(404, "ResourceNotFound", f"The object was not found. Subscription '{subscription_id}' does not exist.")
        return sub

    def _expire(self) -> None:
        now = self.front.sim.clock.now()
        with self._lock:
            for sub_id in [s.id for s in self._subs.values() if s.expiration <= now]:
                del self._subs[sub_id]

    def lifecycle(self, subscription_id: str, event: str) -> bool:
        """Send a lifecycle notification now; False when the subscription has no lifecycleNotificationUrl."""
        if event not in LIFECYCLE_EVENTS:
            raise ValueError(f"Unknown lifecycle event {event}; known: {', '.join(sorted(LIFECYCLE_EVENTS))}")
        sub = self.get(subscription_id)
        if event == "reauthorizationRequired":
            sub.reauthorization_required = True
        if event == "subscriptionRemoved":
            with self._lock:
                self._subs.pop(sub.id, None)
        return self._send_lifecycle(sub, event)

    def _send_lifecycle(self, sub: Subscription, event: str) -> bool:
        if not sub.lifecycle_url:
            return False
        sub.lifecycle_sent.append(event)
        entry = {
            "subscriptionId": sub.id,
            "subscriptionExpirationDateTime": _expiry_text(sub.expiration),
            "tenantId": self.front.tenant_id,
            "clientState": sub.client_state,
            "lifecycleEvent": event,
        }
        self._schedule(sub.lifecycle_url, {"value": [entry]}, [sub.id], lifecycle=True)
        return True

    # ---- the store's changes -> notifications --------------------------------------------------------
    def _on_change(self, change: Change) -> None:
        if change.is_folder or not self._subs:
            return
        with self._cond:
            self._changes.append(change)
            self._cond.notify_all()

    def _folders_of(self, sub: Subscription) -> set[str]:
        store = self.front.sim.store
        if sub.folder_id is not None:
            return {sub.folder_id}
        if sub.kind == "CalendarItem":
            root = store.distinguished_folder(sub.mailbox, "calendar")
            return {root.id} | {f.id for f in store.child_folders(root.id, deep=True) if f.folder_class == "IPF.Appointment"}
        if sub.kind == "Message":  # users/{id}/messages: every mail folder of the mailbox
            root = store.distinguished_folder(sub.mailbox, "msgfolderroot")
            return {f.id for f in store.child_folders(root.id, deep=True) if (f.folder_class or "").startswith("IPF.Note")}
        root = store.distinguished_folder(sub.mailbox, "msgfolderroot")
        deleted = {store.distinguished_folder(sub.mailbox, "deleteditems").id}
        return {f.id for f in store.child_folders(root.id, deep=True) if f.folder_class == "IPF.Contact" and f.id not in deleted}

    def _notifications(self, change: Change) -> list[tuple[Subscription, dict[str, Any]]]:
        now = self.front.sim.clock.now()
        out = []
        for sub in self.all():
            if sub.mailbox.lower() != change.mailbox.lower() or sub.expiration <= now:
                continue
            change_type = OP_NAMES[change.op]
            if change_type not in sub.change_types:
                continue
            try:
                if change.folder_id not in self._folders_of(sub):
                    continue
            except StoreError:
                continue
            out.append((sub, self._notification(sub, change, change_type)))
        return out

    def _notification(self, sub: Subscription, change: Change, change_type: str) -> dict[str, Any]:
        store = self.front.sim.store
        graph_id = self.front.ids.graph_id(change.id, sub.immutable_ids)
        if sub.kind == "Task":
            resource = f"Users/{user_id(sub.mailbox)}/todo/lists/{folder_graph_id(change.folder_id or '')}/tasks/{graph_id}"
            type_name = "todoTask"
        elif sub.kind == "Message":
            resource, type_name = f"Users/{user_id(sub.mailbox)}/Messages/{graph_id}", "Message"
        else:
            segment = "Contacts" if sub.kind == "Contact" else "Events"
            resource, type_name = f"Users/{user_id(sub.mailbox)}/{segment}/{graph_id}", segment[:-1]
        data: dict[str, Any] = {"@odata.type": f"#Microsoft.Graph.{type_name}", "@odata.id": resource, "id": graph_id}
        if change_type != "deleted":
            with contextlib.suppress(StoreError):
                data["@odata.etag"] = f'W/"{store.item(change.id).changekey}"'
        return {
            "subscriptionId": sub.id,
            "subscriptionExpirationDateTime": _expiry_text(sub.expiration),
            "changeType": change_type,
            "resource": resource,
            "resourceData": data,
            "clientState": sub.client_state,
            "tenantId": self.front.tenant_id,
        }

    # ---- delivery --------------------------------------------------------------------------------
    def _schedule(self, url: str, payload: dict[str, Any], sub_ids: list[str], *, lifecycle: bool = False, delay: float = 0.0, attempt: int = 0) -> None:
        with self._cond:
            self._seq += 1
            self._deliveries.append(_Delivery(time.monotonic() + delay, self._seq, url, payload, sub_ids, attempt, lifecycle))
            self._deliveries.sort()
            self._cond.notify_all()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                changes = list(self._changes)
                self._changes.clear()
                due = [d for d in self._deliveries if d.due <= time.monotonic()]
                self._deliveries = [d for d in self._deliveries if d not in due]
                self._busy += 1
            try:
                self._batch(changes)
                for delivery in due:
                    self._deliver(delivery)
            except Exception:  # never let the dispatcher die; a simulator bug fails the test at teardown
                log.exception("webhook dispatcher")
                self.front.sim.internal_errors.append("webhook dispatcher raised (see log)")
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()
                    if not self._changes and not any(d.due <= time.monotonic() for d in self._deliveries):
                        wait = min((d.due - time.monotonic() for d in self._deliveries), default=0.5)
                        self._cond.wait(max(0.01, min(wait, 0.5)))

    def _batch(self, changes: list[Change]) -> None:
        by_url: dict[str, tuple[list[dict[str, Any]], list[str]]] = {}
        for change in changes:
            for sub, entry in self._notifications(change):
                entries, ids = by_url.setdefault(sub.notification_url, ([], []))
                entries.append(entry)
                ids.append(sub.id)
        for url, (entries, ids) in by_url.items():
            for start in range(0, len(entries), 50):
                self._deliver(_Delivery(0, 0, url, {"value": entries[start : start + 50]}, ids[start : start + 50]))

    def _deliver(self, delivery: _Delivery) -> None:
        try:
            with httpx.Client(verify=not is_loopback(delivery.url), timeout=self.delivery_timeout) as client:
                answer = client.post(delivery.url, json=delivery.payload)
            delivered = 200 <= answer.status_code < 300
        except httpx.HTTPError:
            delivered = False
        subs = {i: self._subs.get(i) for i in delivery.subscription_ids}
        if delivered:
            for sub in subs.values():
                if sub is not None and not delivery.lifecycle:
                    sub.notified += 1
            return
        if delivery.attempt < len(self.retry_delays):
            delay = self.retry_delays[delivery.attempt]
            self._schedule(delivery.url, delivery.payload, delivery.subscription_ids, lifecycle=delivery.lifecycle, delay=delay, attempt=delivery.attempt + 1)
            return
        if delivery.lifecycle:
            return
        for sub in {s.id: s for s in subs.values() if s is not None}.values():
            sub.missed += 1
            self._send_lifecycle(sub, "missed")

    # ---- validation handshake --------------------------------------------------------------------
    def validate_url(self, url: str) -> None:
        token = f"Validation: Testing client application reachability for subscription Request-Id: {uuid.uuid4()}"
        failure = "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request."
        try:
            with httpx.Client(verify=not is_loopback(url), timeout=self.validation_timeout) as client:
                answer = client.post(with_query(url, validationToken=token), headers={"Content-Type": "text/plain; charset=utf-8"}, content=b"")
        except httpx.HTTPError:
            raise GraphError(400, "ValidationError", failure) from None
        if answer.status_code != 200:
            raise GraphError(400, "ValidationError", failure)
        if not answer.headers.get("content-type", "").lower().startswith("text/plain"):
            raise GraphError(400, "ValidationError", "Subscription validation request failed. Response must be of content type 'text/plain'.")
        if answer.text != token:
            raise GraphError(400, "ValidationError", "Subscription validation request failed. Response must exactly match validationToken query parameter.")

    # ---- control API -----------------------------------------------------------------------------
    def control(self, method: str, parts: list[str], data: dict[str, Any]) -> tuple[int, Any]:
        if not parts and method == "GET":
            return 200, [s.json(self.front) | {"mailbox": s.mailbox, "notified": s.notified, "missed": s.missed} for s in self.all()]
        if len(parts) == 2 and parts[1] == "lifecycle" and method == "POST":
            try:
                sent = self.lifecycle(parts[0], data.get("event", ""))
            except GraphError as err:
                return err.status, {"error": err.code, "message": err.message}
            return 200, {"sent": sent}
        return 404, {"error": "not found"}


# ---- parsing a subscription request ------------------------------------------------------------------
def parse_resource(request: GraphRequest, resource: Any) -> tuple[str, str, str | None]:
    """(mailbox, kind, folder store id or None) of a subscription resource."""
    if not isinstance(resource, str) or not resource.strip():
        raise bad_request("The resource of a subscription is required.", "InvalidRequest")
    text = resource.strip().replace("('", "/").replace("')", "")
    segments = [s for s in split_path(text)]
    lowered = [s.lower() for s in segments]
    if lowered and lowered[0] == "me":
        raise bad_request("/me request is only valid with delegated authentication flow.")
    unsupported = bad_request(f"Resource '{resource}' is not supported by the simulator: subscribe to contacts, events, To Do tasks or messages.", "InvalidRequest")
    if len(segments) < 3 or lowered[0] != "users":
        raise unsupported
    front = request.front
    mailbox = front.resolve_user(segments[1])
    rest = lowered[2:]
    store = front.sim.store
    with store.lock:
        if rest == ["contacts"]:
            return mailbox, "Contact", None
        if len(rest) == 3 and rest[0] == "contactfolders" and rest[2] == "contacts":
            return mailbox, "Contact", _folder(store, mailbox, segments[3], "contacts", "IPF.Contact")
        if rest == ["events"]:
            return mailbox, "CalendarItem", None
        if rest == ["calendar", "events"]:
            return mailbox, "CalendarItem", store.distinguished_folder(mailbox, "calendar").id
        if len(rest) == 3 and rest[0] == "calendars" and rest[2] == "events":
            return mailbox, "CalendarItem", _folder(store, mailbox, segments[3], "calendar", "IPF.Appointment")
        if len(rest) == 4 and rest[:2] == ["todo", "lists"] and rest[3] == "tasks":
            return mailbox, "Task", _folder(store, mailbox, segments[4], "tasks", "IPF.Task")
        if rest == ["messages"]:
            return mailbox, "Message", None
        if len(rest) == 3 and rest[0] == "mailfolders" and rest[2] == "messages":
            well_known = segments[3].lower() if segments[3].lower() in ("inbox", "sentitems", "drafts") else "inbox"
            return mailbox, "Message", _folder(store, mailbox, segments[3], well_known, "IPF.Note")
    raise unsupported


def _folder(store: Any, mailbox: str, ref: str, well_known: str, folder_class: str) -> str:
    if ref.lower() == well_known:
        return store.distinguished_folder(mailbox, well_known).id
    try:
        folder = store.folder(store_id_from_rest(ref))
    except StoreError:
        raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.") from None
    if folder.mailbox.lower() != mailbox.lower() or folder.folder_class != folder_class:
        raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
    return folder.id


def _expiration(request: GraphRequest, value: Any, operation: str, kind: str | None = None) -> datetime:
    if value is None:
        raise bad_request("expirationDateTime is required.", "InvalidRequest")
    when = parse_datetime(value, "expirationDateTime")
    now = request.front.sim.clock.now()
    limit = request.front.subscriptions.max_expiration
    if kind == "Task":
        limit = min(limit, TODO_MAX_EXPIRATION)
    if when <= now:
        raise bad_request(f"Operation: {operation}; Exception: [Status Code: BadRequest; Reason: Subscription expiration must be in the future.]", "ExtensionError")
    if when > now + limit + timedelta(minutes=1):
        minutes = int(limit.total_seconds() // 60)
        raise bad_request(
            f"Operation: {operation}; Exception: [Status Code: BadRequest; Reason: Subscription expiration can only be {minutes} minutes in the future.]",
            "ExtensionError",
        )
    return when


def _check_url(url: Any, name: str) -> str:
    if not isinstance(url, str) or not url:
        raise bad_request(f"{name} is required.", "InvalidRequest")
    scheme = urlparse(url).scheme.lower()
    if scheme != "https" and not (scheme == "http" and is_loopback(url)):
        raise bad_request(f"Subscription validation request failed. {name} must be an https URL.", "ValidationError")
    return url


KNOWN_FIELDS = {
    "changeType", "notificationUrl", "lifecycleNotificationUrl", "resource", "expirationDateTime", "clientState",
    "latestSupportedTlsVersion", "includeResourceData", "encryptionCertificate", "encryptionCertificateId",
    "notificationQueryOptions", "notificationUrlAppId", "@odata.type",
}  # fmt: skip


@route("POST", "subscriptions", "graph.subscriptions.create", locked=False)
def create_subscription(request: GraphRequest) -> GraphResponse:
    front = request.front
    app = request.app
    assert app is not None
    data = request.json()
    unknown = set(data) - KNOWN_FIELDS
    if unknown:
        raise GraphError(400, "RequestBodyRead", f"The property '{sorted(unknown)[0]}' does not exist on type 'microsoft.graph.subscription'.")
    if data.get("includeResourceData"):
        raise bad_request("includeResourceData (rich notifications) is not supported by the simulator.", "InvalidRequest")
    types = {t.strip() for t in str(data.get("changeType") or "").split(",") if t.strip()}
    if not types or types - CHANGE_TYPES:
        raise bad_request(f"Invalid changeType '{data.get('changeType')}': use created, updated and/or deleted.", "InvalidRequest")
    client_state = data.get("clientState")
    if client_state is not None and (not isinstance(client_state, str) or len(client_state) > 128):
        raise bad_request("clientState must be a string of at most 128 characters.", "InvalidRequest")
    mailbox, kind, folder_id = parse_resource(request, data.get("resource"))
    request.mailbox = mailbox
    if not app.may_access(mailbox):
        raise GraphError(403, "ErrorAccessDenied", ACCESS_POLICY_TEXT)
    front.directory.role_check(app, *ROLES[kind])
    expiration = _expiration(request, data.get("expirationDateTime"), "Create", kind)
    url = _check_url(data.get("notificationUrl"), "notificationUrl")
    lifecycle_url = _check_url(data["lifecycleNotificationUrl"], "lifecycleNotificationUrl") if data.get("lifecycleNotificationUrl") else None
    webhooks = front.subscriptions
    webhooks.validate_url(url)
    if lifecycle_url:
        webhooks.validate_url(lifecycle_url)
    sub = Subscription(
        id=str(uuid.uuid4()),
        app=app.client_id,
        resource=data["resource"],
        mailbox=mailbox,
        kind=kind,
        folder_id=folder_id,
        change_types=types,
        notification_url=url,
        lifecycle_url=lifecycle_url,
        client_state=client_state,
        expiration=expiration,
        immutable_ids=request.prefer.immutable_ids,
        tls_version=str(data.get("latestSupportedTlsVersion") or "v1_2"),
    )
    with webhooks._lock:
        webhooks._subs[sub.id] = sub
    body = {"@odata.context": f"{request.base_url}/$metadata#subscriptions/$entity", **sub.json(front)}
    return ok(request, body, 201)


@route("GET", "subscriptions", "graph.subscriptions.list", locked=False)
def list_subscriptions(request: GraphRequest) -> GraphResponse:
    assert request.app is not None
    subs = [s.json(request.front) for s in request.front.subscriptions.all() if s.app == request.app.client_id]
    return collection(request, subs, "subscriptions", page_size=100)


@route("GET", "subscriptions/{id}", "graph.subscriptions.get", locked=False)
def get_subscription(request: GraphRequest) -> GraphResponse:
    assert request.app is not None
    sub = request.front.subscriptions.get(request.params["id"], request.app.client_id)
    return ok(request, {"@odata.context": f"{request.base_url}/$metadata#subscriptions/$entity", **sub.json(request.front)})


@route("PATCH", "subscriptions/{id}", "graph.subscriptions.update", locked=False)
def update_subscription(request: GraphRequest) -> GraphResponse:
    assert request.app is not None
    webhooks = request.front.subscriptions
    sub = webhooks.get(request.params["id"], request.app.client_id)
    request.mailbox = sub.mailbox
    data = request.json()
    unknown = set(data) - {"expirationDateTime", "notificationUrl", "lifecycleNotificationUrl", "@odata.type"}
    if unknown:
        raise bad_request(f"Only expirationDateTime and notificationUrl can be changed, not '{sorted(unknown)[0]}'.", "InvalidRequest")
    expiration = _expiration(request, data["expirationDateTime"], "Update", sub.kind) if "expirationDateTime" in data else sub.expiration
    url = sub.notification_url
    if data.get("notificationUrl") and data["notificationUrl"] != url:
        url = _check_url(data["notificationUrl"], "notificationUrl")
        webhooks.validate_url(url)
    sub.expiration, sub.notification_url = expiration, url
    sub.reauthorization_required = False
    return ok(request, {"@odata.context": f"{request.base_url}/$metadata#subscriptions/$entity", **sub.json(request.front)})


@route("DELETE", "subscriptions/{id}", "graph.subscriptions.delete", locked=False)
def delete_subscription(request: GraphRequest) -> GraphResponse:
    assert request.app is not None
    webhooks = request.front.subscriptions
    sub = webhooks.get(request.params["id"], request.app.client_id)
    with webhooks._lock:
        webhooks._subs.pop(sub.id, None)
    return no_content()


@route("POST", "subscriptions/{id}/reauthorize", "graph.subscriptions.reauthorize", locked=False)
def reauthorize_subscription(request: GraphRequest) -> GraphResponse:
    assert request.app is not None
    sub = request.front.subscriptions.get(request.params["id"], request.app.client_id)
    sub.reauthorization_required = False
    return no_content()
