"""EWS Subscribe / Unsubscribe / GetEvents and the chunked GetStreamingEvents response."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from lxml import etree

from exchange_sim.ews import operations
from exchange_sim.ews.operations import RequestContext, Responder, operation
from exchange_sim.ews.xmlutil import SOAP, Element, format_datetime, local, m, sub, t
from exchange_sim.notifications import Event, Subscriptions
from exchange_sim.store import StoreError


def _subscriptions(ctx: RequestContext) -> Subscriptions:
    return ctx.simulator.subscriptions


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
        subscription = _subscriptions(ctx).subscribe(
            ctx.target, kind, folders, event_types, watermark, int(timeout) if timeout else None
        )
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
        _subscriptions(ctx).unsubscribe(req.findtext(m("SubscriptionId")) or "", ctx.target)
        out.success()
    except StoreError as err:
        out.error(err)
    return out.root


@operation("GetEvents")
def get_events(ctx: RequestContext, req: Element) -> Element:
    out = Responder("GetEvents")
    try:
        subscription_id = req.findtext(m("SubscriptionId")) or ""
        events, previous, more = _subscriptions(ctx).pull(subscription_id, req.findtext(m("Watermark")), ctx.target)
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
        self._lock = threading.Lock()

    def close_all(self) -> None:
        self._closing.set()

    def serve(self, handler: Any, ctx: RequestContext, req: Element) -> None:
        subs = _subscriptions(ctx)
        ids = [e.text or "" for e in req.find(m("SubscriptionIds"))]
        minutes = int(req.findtext(m("ConnectionTimeout")) or "30")
        try:
            subscriptions = [subs.get(i, ctx.target) for i in ids]
        except StoreError as err:
            out = Responder("GetStreamingEvents")
            msg = out.error(err)
            errors = sub(msg, m("ErrorSubscriptionIds"))
            for i in ids:
                sub(errors, t("SubscriptionId"), i)
            self._start(handler)
            self._send(handler, out.root, ctx)
            self._finish(handler)
            return
        deadline = time.monotonic() + minutes * self.seconds_per_minute
        self._start(handler)
        with self._lock:
            self.open_streams += 1
        try:
            self._send(handler, self._status("OK"), ctx)
            last_beat = time.monotonic()
            while time.monotonic() < deadline and not self._closing.is_set():
                wait = min(0.05, max(deadline - time.monotonic(), 0))
                batches = [(s, subs.wait(s, wait / max(len(subscriptions), 1))) for s in subscriptions]
                batches = [(s, events) for s, events in batches if events]
                if batches:
                    self._send(handler, self._notifications(batches), ctx)
                    last_beat = time.monotonic()
                elif time.monotonic() - last_beat > self.heartbeat:
                    self._send(handler, self._status("OK"), ctx)
                    last_beat = time.monotonic()
            self._send(handler, self._status("Closed"), ctx)
            self._finish(handler)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            handler.close_connection = True  # the client hung up mid-stream; nothing else to do
        finally:
            with self._lock:
                self.open_streams -= 1

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


def install(simulator: Any) -> None:
    simulator.streaming = StreamingServer(simulator)
    assert "Subscribe" in operations.OPERATIONS
