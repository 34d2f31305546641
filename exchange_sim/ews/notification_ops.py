"""EWS Subscribe / Unsubscribe / GetEvents and the chunked GetStreamingEvents response.

Access follows Exchange: a subscription is read by the account that created it, on the Mailbox
server it lives on. One GetStreamingEvents may carry up to 200 subscription ids of that account,
whatever mailboxes they watch; a request reaches a Mailbox server through the affinity cookie
(X-BackEndOverrideCookie with X-PreferServerAffinity: true), else its X-AnchorMailbox.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from http.cookies import CookieError, SimpleCookie
from typing import Any

from lxml import etree

from exchange_sim.ews import operations
from exchange_sim.ews.operations import RequestContext, Responder, operation
from exchange_sim.ews.xmlutil import SOAP, Element, format_datetime, local, m, sub, t
from exchange_sim.notifications import Event, Subscriptions
from exchange_sim.store import StoreError

# Microsoft documents the limit ("the maximum number of SubscriptionId values to include in a
# request is 200") but not the code of the refusal; the simulator answers ErrorInvalidArgument.
MAX_STREAMING_SUBSCRIPTIONS = 200
AFFINITY_COOKIE = "X-BackEndOverrideCookie"


def _subscriptions(ctx: RequestContext) -> Subscriptions:
    return ctx.simulator.subscriptions


def _header(ctx: RequestContext, name: str) -> str:
    return (ctx.headers.get(name) if ctx.headers is not None else None) or ""


def _affinity_cookie(ctx: RequestContext) -> str:
    """The affinity cookie, sent as a cookie (browsers, .NET) or as a header (exchangelib)."""
    cookies = SimpleCookie()
    with contextlib.suppress(CookieError):
        cookies.load(_header(ctx, "Cookie"))
    found = cookies.get(AFFINITY_COOKIE)
    return found.value if found is not None else _header(ctx, AFFINITY_COOKIE)


def routed_server(ctx: RequestContext) -> str:
    """The Mailbox server the front end sends a notification request to."""
    subs = _subscriptions(ctx)
    if _header(ctx, "X-PreferServerAffinity").lower() == "true":
        server = subs.server_from_cookie(_affinity_cookie(ctx))
        if server:
            return server
    return subs.server_of(_header(ctx, "X-AnchorMailbox") or ctx.target)


def _access(ctx: RequestContext) -> dict[str, str]:
    """Who may see which subscriptions: the calling account's, on the server the request reached."""
    return {"owner": (ctx.user or "").lower(), "server": routed_server(ctx)}


def render_event(parent: Element, event: Event) -> None:
    elem = sub(parent, t(event.kind))
    sub(elem, t("Watermark"), event.watermark)
    sub(elem, t("TimeStamp"), format_datetime(event.when) if event.when else None)
    id_tag = "FolderId" if event.is_folder else "ItemId"
    sub(elem, t(id_tag), Id=event.id, ChangeKey=event.changekey or "AAAAAA==")
    sub(elem, t("ParentFolderId"), Id=event.parent_folder_id or "", ChangeKey="AQAAAA==")
    if event.kind == "MovedEvent":
        sub(elem, t(f"Old{id_tag}"), Id=event.old_id or "", ChangeKey="AAAAAA==")
        sub(elem, t("OldParentFolderId"), Id=event.old_parent_folder_id or "", ChangeKey="AQAAAA==")


def render_notification(parent: Element, tag: str, subscription_id: str, previous: str | None, more: bool, events: list[Event], watermark: str) -> None:
    notification = sub(parent, tag)
    sub(notification, t("SubscriptionId"), subscription_id)
    if previous is not None:
        sub(notification, t("PreviousWatermark"), previous)
        sub(notification, t("MoreEvents"), "true" if more else "false")
    for event in events:
        render_event(notification, event)
    if not events:
        status = sub(notification, t("StatusEvent"))
        sub(status, t("Watermark"), watermark)


@operation("Subscribe")
def subscribe(ctx: RequestContext, req: Element) -> Element:
    out = Responder("Subscribe")
    try:
        request = req[0]
        kind = {"PullSubscriptionRequest": "pull", "StreamingSubscriptionRequest": "streaming"}.get(local(request))
        if kind is None:
            raise StoreError("ErrorInvalidOperation", "Push subscriptions are not offered by the simulator.")
        ctx.check_mailbox(ctx.target)
        folders = None
        if request.get("SubscribeToAllFolders", "false").lower() != "true":
            folder_ids = request.find(t("FolderIds"))
            folders = {ctx.folder(ref).id for ref in folder_ids} if folder_ids is not None else set()
        event_types = [e.text or "" for e in request.find(t("EventTypes"))]
        watermark = request.findtext(t("Watermark"))
        timeout = request.findtext(t("Timeout"))
        server = routed_server(ctx)
        subscription = _subscriptions(ctx).subscribe(
            ctx.target,
            kind,
            folders,
            event_types,
            watermark,
            int(timeout) if timeout else None,
            owner=ctx.user or "",
            server=server,
        )
        if _header(ctx, "X-PreferServerAffinity").lower() == "true":
            # Exchange hands out the cookie that brings the group's later requests to this server.
            cookie = _subscriptions(ctx).affinity_cookie(server)
            ctx.response_headers["Set-Cookie"] = f"{AFFINITY_COOKIE}={cookie}; path=/; HttpOnly"
        msg = out.success()
        sub(msg, m("SubscriptionId"), subscription.id)
        if kind == "pull":
            sub(msg, m("Watermark"), _subscriptions(ctx).current_watermark())
    except StoreError as err:
        out.error(err)
    return out.root


@operation("Unsubscribe")
def unsubscribe(ctx: RequestContext, req: Element) -> Element:
    out = Responder("Unsubscribe")
    try:
        _subscriptions(ctx).unsubscribe(req.findtext(m("SubscriptionId")) or "", **_access(ctx))
        out.success()
    except StoreError as err:
        out.error(err)
    return out.root


@operation("GetEvents")
def get_events(ctx: RequestContext, req: Element) -> Element:
    out = Responder("GetEvents")
    try:
        subscription_id = req.findtext(m("SubscriptionId")) or ""
        events, previous, more = _subscriptions(ctx).pull(
            subscription_id, req.findtext(m("Watermark")), **_access(ctx)
        )
        watermark = events[-1].watermark if events else previous
        render_notification(out.success(), m("Notification"), subscription_id, previous, more, events, watermark)
    except StoreError as err:
        out.error(err)
    return out.root


class StreamingServer:
    """Writes GetStreamingEvents answers: HTTP chunked, one SOAP envelope per chunk.

    ``seconds_per_minute`` scales ConnectionTimeout (minutes) so tests need not wait a minute;
    ``heartbeat`` is how often an OK status is sent while nothing happens.
    """

    def __init__(self, simulator: Any) -> None:
        self.sim = simulator
        self.seconds_per_minute = 60.0
        self.heartbeat = 30.0
        self._closing = threading.Event()
        self.open_streams = 0
        self.streams_served = 0  # GetStreamingEvents requests that opened a stream
        self._lock = threading.Lock()
        self._open: dict[Any, tuple[threading.Event, threading.Event, int]] = {}

    def close_all(self) -> None:
        self._closing.set()

    def drop_all(self) -> int:
        """Hang up every open stream without a final chunk (a network failure); returns how many."""
        with self._lock:
            streams = list(self._open.items())
        for handler, (wake, dropped, _) in streams:
            dropped.set()
            wake.set()
            handler.drop()
        return len(streams)

    def serve(self, handler: Any, ctx: RequestContext, req: Element) -> None:
        subs = _subscriptions(ctx)
        ids = [e.text or "" for e in req.find(m("SubscriptionIds"))]
        minutes = int(req.findtext(m("ConnectionTimeout")) or "30")
        subscriptions, refused = self._resolve(ctx, ids)
        if refused is not None:
            self._start(handler)
            self._send(handler, refused, ctx)
            self._finish(handler)
            return
        deadline = time.monotonic() + minutes * self.seconds_per_minute
        wake, dropped = threading.Event(), threading.Event()
        subs.watch(subscriptions, wake)
        self._start(handler)
        with self._lock:
            self.open_streams += 1
            self.streams_served += 1
            self._open[handler] = (wake, dropped, len(subscriptions))
        try:
            self._send(handler, self._status("OK"), ctx)
            last_beat = time.monotonic()
            while time.monotonic() < deadline and not self._closing.is_set():
                # Woken by any of the subscriptions; a short cap notices close_all() and the deadline.
                wake.wait(min(0.25, max(deadline - time.monotonic(), 0)))
                wake.clear()
                if dropped.is_set():
                    return  # hung up by drop_all(): no final chunk, as when the network fails
                if _peer_closed(handler):
                    # The client walked away from this stream (exchangelib does after the notifications
                    # it wanted): leave the events with the subscription for its next connection.
                    handler.close_connection = True
                    return
                batches = [(s, events) for s in subscriptions if (events := subs.take(s))]
                if batches:
                    try:
                        self._send(handler, self._notifications(batches), ctx)
                    except OSError:
                        for subscription, events in batches:
                            subs.put_back(subscription, events)
                        raise
                    last_beat = time.monotonic()
                elif time.monotonic() - last_beat > self.heartbeat:
                    self._send(handler, self._status("OK"), ctx)
                    last_beat = time.monotonic()
            self._send(handler, self._status("Closed"), ctx)
            self._finish(handler)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            handler.close_connection = True  # the client hung up mid-stream; nothing else to do
        finally:
            subs.watch(subscriptions, wake, on=False)
            with self._lock:
                self.open_streams -= 1
                self._open.pop(handler, None)

    def open_stream_sizes(self) -> list[int]:
        """How many subscriptions each open stream reads."""
        with self._lock:
            return sorted(size for _, _, size in self._open.values())

    def _resolve(self, ctx: RequestContext, ids: list[str]) -> tuple[list[Any], Element | None]:
        """The subscriptions a stream may read, or the error answer (with the ids that failed)."""
        subs = _subscriptions(ctx)
        if len(ids) > MAX_STREAMING_SUBSCRIPTIONS:
            out = Responder("GetStreamingEvents")
            out.error(
                StoreError(
                    "ErrorInvalidArgument",
                    f"A GetStreamingEvents request may name at most {MAX_STREAMING_SUBSCRIPTIONS} subscriptions "
                    f"({len(ids)} given).",
                )
            )
            return [], out.root
        access = _access(ctx)
        found, failed, first_error = [], [], None
        for subscription_id in ids:
            try:
                found.append(subs.get(subscription_id, **access))
            except StoreError as err:
                failed.append(subscription_id)
                first_error = first_error or err
        if first_error is None:
            return found, None
        # Exchange answers an error for the whole request, naming the subscriptions that failed.
        out = Responder("GetStreamingEvents")
        errors = sub(out.error(first_error), m("ErrorSubscriptionIds"))
        for subscription_id in failed:
            sub(errors, t("SubscriptionId"), subscription_id)
        return [], out.root

    def _start(self, handler: Any) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/xml; charset=utf-8")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()

    def _send(self, handler: Any, content: Element, ctx: RequestContext) -> None:
        envelope = etree.Element(f"{{{SOAP}}}Envelope", nsmap={"s": SOAP})
        body = etree.SubElement(envelope, f"{{{SOAP}}}Body")
        body.append(content)
        self.sim.validate(envelope, "response", "GetStreamingEvents")
        data = etree.tostring(envelope, encoding="utf-8")
        handler.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")
        handler.wfile.flush()

    def _finish(self, handler: Any) -> None:
        with contextlib.suppress(OSError):
            handler.wfile.write(b"0\r\n\r\n")
            handler.wfile.flush()

    def _status(self, status: str) -> Element:
        out = Responder("GetStreamingEvents")
        sub(out.success(), m("ConnectionStatus"), status)
        return out.root

    def _notifications(self, batches: list[tuple[Any, list[Event]]]) -> Element:
        out = Responder("GetStreamingEvents")
        container = sub(out.success(), m("Notifications"))
        for subscription, events in batches:
            render_notification(container, t("Notification"), subscription.id, None, False, events, events[-1].watermark)
        return out.root


def _peer_closed(handler: Any) -> bool:
    """True once the client has closed its end of a stream (readable, and reading would give EOF)."""
    connection = getattr(handler, "connection", None)
    if connection is None:
        return False
    try:
        readable, _, _ = select.select([connection], [], [], 0)
        return bool(readable) and connection.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


def install(simulator: Any) -> None:
    simulator.streaming = StreamingServer(simulator)
    assert "Subscribe" in operations.OPERATIONS
