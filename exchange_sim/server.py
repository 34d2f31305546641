"""HTTP/1.1 front door: keep-alive connections, auth, faults, SOAP envelopes, and the /_sim/ control API.

One `EwsRequestHandler` instance serves one TCP connection (http.server calls handle_one_request in a
loop), which is where per-connection NTLM state lives.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from lxml import etree

from exchange_sim.ews.operations import OPERATIONS, RequestContext, Responder, SoapFault
from exchange_sim.ews.xmlutil import NSMAP, REQUEST_ZONE, SOAP, E, T, local, m, t
from exchange_sim.faults import LoggedRequest
from exchange_sim.store import StoreError

if TYPE_CHECKING:
    from exchange_sim.simulator import Simulator

log = logging.getLogger("exchange_sim")
EWS_PATH = "/EWS/Exchange.asmx"
SERVER_VERSION = {"MajorVersion": "15", "MinorVersion": "1", "MajorBuildNumber": "2507", "MinorBuildNumber": "6"}
SERVER_API_VERSION = "V2017_07_11"  # what Exchange 2016 CU23 reports
FAULT_TEXT = {
    "ErrorServerBusy": "The server cannot service this request right now. Try again later.",
    "ErrorExceededConnectionCount": "You have exceeded the available concurrent connections for your account.",
    "ErrorMailboxMoveInProgress": "The mailbox is being moved. Try again later.",
}


class _Dropped(Exception):
    """The connection is closed without an answer (fault drop_connection)."""


class EwsHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], simulator: Simulator) -> None:
        self.simulator = simulator
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, EwsRequestHandler)

    def track(self, sock: socket.socket, is_open: bool) -> None:
        with self._open_lock:
            (self._open.add if is_open else self._open.discard)(sock)

    def close_connections(self) -> None:
        """Hang up idle keep-alive connections, so a stopped simulator really stops answering."""
        with self._open_lock:
            sockets, self._open = list(self._open), set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class EwsRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK add ~40 ms to every answer on loopback
    disable_nagle_algorithm = True
    server: EwsHTTPServer
    ntlm_context: Any = None
    ntlm_user: str | None = None

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    @property
    def sim(self) -> Simulator:
        return self.server.simulator

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)
        self.server.simulator.counters.connection_opened()

    def finish(self) -> None:
        self.server.track(self.connection, False)
        with contextlib.suppress(OSError):
            super().finish()

    # ---- HTTP plumbing ---------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send_bytes(self, status: int, body: bytes, content_type: str = "text/xml; charset=utf-8", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        buffered = getattr(self, "_headers_buffer", None)
        if buffered is not None and self.request_version != "HTTP/0.9":
            # the header block and the body in one write (end_headers' blank line, then the body):
            # one TLS record and one send instead of two per answer
            buffered.append(b"\r\n")
            buffered.append(body)
            self.flush_headers()
            return
        self.end_headers()
        self.wfile.write(body)

    def drop(self) -> None:
        """Hang up without answering, like a load balancer resetting the connection."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def do_GET(self) -> None:
        if self.path.startswith("/_sim/"):
            self._read_body()
            self.sim.control.handle(self, "GET", b"")
            return
        if self._domino("GET"):
            return
        self.send_bytes(404, b"not found", "text/plain")

    def do_PUT(self) -> None:
        if not self._domino("PUT"):
            self.send_bytes(404, b"not found", "text/plain")

    def do_DELETE(self) -> None:
        if not self._domino("DELETE"):
            self.send_bytes(404, b"not found", "text/plain")

    def _domino(self, method: str, body: bytes | None = None) -> bool:
        """The Domino REST API front end answers under /api (see exchange_sim.domino)."""
        from exchange_sim.domino import DOMINO_PREFIX

        if self.sim.domino is None or not self.path.startswith(DOMINO_PREFIX + "/"):
            return False
        self.sim.domino.handle(self, method, self._read_body() if body is None else body)
        return True

    def do_POST(self) -> None:
        body = self._read_body()
        if self.path.startswith("/_sim/"):
            self.sim.control.handle(self, "POST", body)
            return
        if self._domino("POST", body):
            return
        if self.path.split("?")[0].lower() != EWS_PATH.lower():
            self.send_bytes(404, b"not found", "text/plain")
            return
        try:
            self._handle_ews(body)
        except _Dropped:
            self.drop()

    # ---- EWS -------------------------------------------------------------------------------------
    def _handle_ews(self, body: bytes) -> None:
        sim = self.sim
        try:
            envelope = etree.fromstring(body)
            header = envelope.find(f"{{{SOAP}}}Header")
            request = envelope.find(f"{{{SOAP}}}Body")[0]
            # GetUserOofSettingsRequest & co. name their body element after the request, not the operation
            operation = local(request).removesuffix("Request")
            _tolerate_known_quirks(request)
        except (etree.XMLSyntaxError, TypeError, IndexError):
            self.send_bytes(400, b"Bad SOAP request", "text/plain")
            return
        anchor = self.headers.get("X-AnchorMailbox")
        # Counted: every request that reaches the server, except the legs of an auth handshake.
        if sim.faults.take("drop_connection", operation):
            sim.counters.count(operation, anchor)
            raise _Dropped
        if sim.faults.take("unauthorized", operation):
            sim.counters.count(operation, anchor)
            self.send_bytes(401, b"", "text/plain", {"WWW-Authenticate": 'Basic realm="exchange_sim"'})
            return
        fault = sim.faults.take("http_503", operation)
        if fault:
            sim.counters.count(operation, anchor)
            extra = {"Retry-After": str(fault.params["retry_after"])} if fault.params.get("retry_after") else {}
            self.send_bytes(503, b"Service Unavailable", "text/html", extra)
            return
        user = sim.auth.authenticate(self)
        if user is False:
            return  # the authenticator already answered (401 or an NTLM challenge)
        sim.counters.count(operation, anchor)
        if sim.faults.latency_ms:
            time.sleep(sim.faults.latency_ms / 1000)
        violations = sim.validate(envelope, "request", operation)
        self.response_headers: dict[str, str] = {}
        status, response_root = self._answer(header, request, operation, user, bool(violations))
        if status is None:
            return  # streamed by the notifications layer
        out_envelope = self._envelope(response_root, status == 200 or response_root.tag != f"{{{SOAP}}}Fault")
        sim.validate(out_envelope, "response", operation)
        payload = etree.tostring(out_envelope, xml_declaration=True, encoding="utf-8")
        if sim.request_log.enabled:  # off by default: no text of the whole request and answer for nothing
            sim.request_log.add(LoggedRequest(operation, self.headers.get("X-AnchorMailbox"), status, body.decode("utf-8", "replace"), payload.decode()))
        self.send_bytes(status, payload, headers=self.response_headers)

    def _answer(self, header: Any, request: Any, operation: str, user: Any, invalid: bool) -> tuple[int | None, Any]:
        sim = self.sim
        if invalid:
            return 500, fault_element("ErrorSchemaValidation", "The request failed schema validation.")
        try:
            ctx = self._context(header, user)
            self.response_headers = ctx.response_headers
            account_key = (user.name if user else ctx.target).lower()
            with sim.concurrency.slot(account_key):
                self._raise_armed_faults(operation, ctx.target)
                back_off = sim.faults.spend(account_key)
                if back_off is not None:
                    raise SoapFault("ErrorServerBusy", FAULT_TEXT["ErrorServerBusy"], back_off)
                if operation == "GetStreamingEvents" and sim.streaming is not None:
                    sim.streaming.serve(self, ctx, request)
                    return None, None
                handler = OPERATIONS.get(operation)
                if handler is None:
                    return not_implemented(operation)
                with sim.store.lock:
                    ctx.extras.update(sim.request_extras(ctx, operation))
                    token = REQUEST_ZONE.set(request_zone(header))
                    try:
                        return 200, handler(ctx, request)
                    finally:
                        REQUEST_ZONE.reset(token)
        except SoapFault as exc:
            return 500, fault_element(exc.code, exc.message, exc.back_off_ms)
        except StoreError as exc:
            return 500, fault_element(exc.code, exc.message)
        except Exception as exc:  # a simulator bug: answer like Exchange does, and let the test fail
            log.exception("internal error in %s", operation)
            sim.internal_errors.append(f"{operation}: {type(exc).__name__}: {exc}")
            return 500, fault_element("ErrorInternalServerError", f"An internal server error occurred: {exc}")

    def _raise_armed_faults(self, operation: str, mailbox: str) -> None:
        faults = self.sim.faults
        busy = faults.take("server_busy", operation, mailbox)
        if busy:
            raise SoapFault("ErrorServerBusy", FAULT_TEXT["ErrorServerBusy"], busy.params.get("back_off_ms", 1000))
        if faults.take("mailbox_move", operation, mailbox):
            raise SoapFault("ErrorMailboxMoveInProgress", FAULT_TEXT["ErrorMailboxMoveInProgress"])
        if faults.take("exceeded_connections", operation, mailbox):
            raise SoapFault("ErrorExceededConnectionCount", FAULT_TEXT["ErrorExceededConnectionCount"])

    def _context(self, header: Any, user: Any) -> RequestContext:
        """Who acts on which mailbox: impersonation header, else X-AnchorMailbox, else the caller's own."""
        sim = self.sim
        version = "Exchange2016"
        impersonated = None
        if header is not None:
            rsv = header.find(t("RequestServerVersion"))
            if rsv is not None:
                version = rsv.get("Version", version)
            imp = header.find(t("ExchangeImpersonation"))
            if imp is not None:
                sid = imp.find(t("ConnectingSID"))
                impersonated = next((c.text for c in sid if c.text), None) if sid is not None else None
        is_service = bool(user and user.service_account) or user is None
        if impersonated:
            if user is not None and not user.service_account:
                raise SoapFault("ErrorImpersonateUserDenied", "The account does not have permission to impersonate the requested user.")
            if not sim.store.has_mailbox(impersonated):
                raise SoapFault("ErrorNonExistentMailbox", f"The SMTP address has no mailbox associated with it: {impersonated}")
            target = impersonated
        else:
            target = self.headers.get("X-AnchorMailbox") or (user.mailbox if user else None) or ""
            if target and not sim.store.has_mailbox(target):
                raise SoapFault("ErrorNonExistentMailbox", f"The SMTP address has no mailbox associated with it: {target}")
        return RequestContext(
            store=sim.store,
            target=target,
            user=(user.mailbox or user.name) if user else None,
            is_service_account=is_service,
            version=version,
            simulator=sim,
            headers=self.headers,
        )

    def _envelope(self, content: Any, with_version: bool = True) -> Any:
        envelope = etree.Element(f"{{{SOAP}}}Envelope", nsmap={"s": SOAP})
        if with_version:
            header = etree.SubElement(envelope, f"{{{SOAP}}}Header")
            etree.SubElement(header, t("ServerVersionInfo"), {**SERVER_VERSION, "Version": SERVER_API_VERSION}, nsmap={"h": T})
        body = etree.SubElement(envelope, f"{{{SOAP}}}Body")
        body.append(content)
        return envelope


def request_zone(header: Any) -> Any:
    """The zone named by TimeZoneContext (Windows or IANA id), else UTC."""
    from exchange_sim.calendar import zone_for

    if header is None:
        return zone_for(None)
    definition = header.find(f"{t('TimeZoneContext')}/{t('TimeZoneDefinition')}")
    return zone_for(definition.get("Id") if definition is not None else None)


def fault_element(code: str, message: str, back_off_ms: int | None = None) -> Any:
    """A SOAP Fault the way Exchange writes one; exchangelib raises the error class named by ResponseCode."""
    fault = etree.Element(f"{{{SOAP}}}Fault", nsmap={"s": SOAP})
    code_elem = etree.SubElement(fault, "faultcode", nsmap={"a": E})
    code_elem.text = f"a:{code}"
    etree.SubElement(fault, "faultstring").text = message
    detail = etree.SubElement(fault, "detail")
    etree.SubElement(detail, f"{{{E}}}ResponseCode", nsmap={"e": E}).text = code
    etree.SubElement(detail, f"{{{E}}}Message", nsmap={"e": E}).text = message
    if back_off_ms is not None:
        xml = etree.SubElement(detail, t("MessageXml"), nsmap={"t": T})
        etree.SubElement(xml, t("Value"), Name="BackOffMilliseconds").text = str(back_off_ms)
    return fault


# Operations whose answer is one response message rather than a list (from messages.xsd, Exchange 2016).
SINGLE_MESSAGE_OPERATIONS = frozenset(
    ["AddDelegate", "AddDistributionGroupToImList", "AddImContactToGroup", "AddImGroup", "AddNewImContactToGroup", "AddNewTelUriContactToGroup", "AddTag", "CreateMeetingInstance", "DeleteMeetingInstance", "DeleteSearchSuggestion", "DisableApp", "DisconnectPhoneCall", "EndSearchSession", "ExecuteSearch", "FindAvailableMeetingTimes", "FindConversation", "FindMeetingTimeCandidates", "FindMessageTrackingReport", "FindPeople", "FindTags", "GetAppManifests", "GetAppMarketplaceUrl", "GetDelegate", "GetDiscoverySearchConfiguration", "GetHoldOnMailboxes", "GetImItemList", "GetImItems", "GetInboxRules", "GetLastPrivateCatalogUpdate", "GetMailTips", "GetMeetingInstance", "GetMessageTrackingReport", "GetNonIndexableItemDetails", "GetNonIndexableItemStatistics", "GetOMEConfiguration", "GetOMEMessageStatus", "GetPasswordExpirationDate", "GetPhoneCallInformation", "GetPrivateCatalogAddIns", "GetReminders", "GetRoomLists", "GetRooms", "GetSearchSuggestions", "GetSearchableMailboxes", "GetServiceConfiguration", "GetSharingFolder", "GetSharingMetadata", "GetUserPhoto", "GetUserRetentionPolicyTags", "HideTag", "InstallApp", "PerformInstantSearch", "PerformReminderAction", "PlayOnPhone", "RefreshSharingFolder", "RegisterConsent", "RemoveContactFromImList", "RemoveDelegate", "RemoveDistributionGroupFromImList", "RemoveImContactFromGroup", "RemoveImGroup", "SetHoldOnMailboxes", "SetImGroup", "SetImListMigrationCompleted", "SetOMEConfiguration", "SetOMEMessageStatus", "SetTeamMailbox", "StartSearchSession", "UninstallApp", "UnpinTeamMailbox", "UpdateDelegate", "UpdateExtensionUsage", "UpdateInboxRules", "UpdateMeetingInstance"]
)
# Answers with their own shapes: for these the refusal is a SOAP fault carrying the same code.
FAULT_ONLY_OPERATIONS = frozenset({"GetUserAvailability", "GetUserOofSettings", "SetUserOofSettings"})


def not_implemented(operation: str) -> tuple[int, Any]:
    """Unimplemented operations answer ErrorInvalidOperation (a version error would make clients retry)."""
    text = f"The simulator does not implement {operation}."
    if operation in FAULT_ONLY_OPERATIONS:
        return 500, fault_element("ErrorInvalidOperation", text)
    if operation in SINGLE_MESSAGE_OPERATIONS:
        root = etree.Element(m(f"{operation}Response"), {"ResponseClass": "Error"}, nsmap={"m": NSMAP["m"], "t": NSMAP["t"]})
        etree.SubElement(root, m("MessageText")).text = text
        etree.SubElement(root, m("ResponseCode")).text = "ErrorInvalidOperation"
        etree.SubElement(root, m("DescriptiveLinkKey")).text = "0"
        return 200, root
    out = Responder(operation)
    out.error(StoreError("ErrorInvalidOperation", text))
    return 200, out.root


class Concurrency:
    """Counts requests in flight per account, for the ErrorExceededConnectionCount limit."""

    def __init__(self, simulator: Simulator) -> None:
        self._sim = simulator
        self._lock = threading.Lock()
        self._in_flight: dict[str, int] = {}

    def slot(self, account: str) -> _Slot:
        return _Slot(self, account)

    def enter(self, account: str) -> None:
        limit = self._sim.faults.max_connections_per_account
        with self._lock:
            current = self._in_flight.get(account, 0)
            if limit is not None and current >= limit:
                raise SoapFault("ErrorExceededConnectionCount", FAULT_TEXT["ErrorExceededConnectionCount"])
            self._in_flight[account] = current + 1

    def leave(self, account: str) -> None:
        with self._lock:
            self._in_flight[account] -= 1


class _Slot:
    def __init__(self, owner: Concurrency, account: str) -> None:
        self.owner, self.account = owner, account

    def __enter__(self) -> None:
        self.owner.enter(self.account)

    def __exit__(self, *exc: object) -> None:
        self.owner.leave(self.account)


def basic_credentials(handler: BaseHTTPRequestHandler) -> tuple[str, str] | None:
    header = handler.headers.get("Authorization", "")
    if not header.lower().startswith("basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:]).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return user, password


def json_response(handler: BaseHTTPRequestHandler, status: int, data: Any) -> None:
    body = json.dumps(data, default=str, indent=1).encode()
    assert isinstance(handler, EwsRequestHandler)
    handler.send_bytes(status, body, "application/json")


__all__ = ["EWS_PATH", "EwsHTTPServer", "basic_credentials", "fault_element", "json_response"]


def _tolerate_known_quirks(request: Any) -> None:
    """Exchange does not validate requests strictly against its XSD: exchangelib sends a pull
    subscription's Watermark in the messages namespace (the XSD has it in types) and Exchange takes
    it. Such known spellings are put right before the simulator validates the request."""
    for kind in ("PullSubscriptionRequest", "StreamingSubscriptionRequest"):
        for parent in request.iter(m(kind)):
            for child in parent.findall(m("Watermark")):
                child.tag = t("Watermark")
