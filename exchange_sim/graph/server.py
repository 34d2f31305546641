"""The TLS listener: Graph under /v1.0, Entra ID's token and discovery endpoints, and /_sim/.

HTTP/1.1 with keep-alive (ALPN offers http/1.1 only, so an HTTP/2-capable client falls back). The TLS
handshake runs in the connection's thread, not in the accept loop.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from exchange_sim.faults import LoggedRequest
from exchange_sim.graph import api
from exchange_sim.graph.api import JSON_TYPE, GraphResponse, Headers, error_response
from exchange_sim.graph.auth import AuthError
from exchange_sim.graph.errors import GraphError
from exchange_sim.server import EwsHTTPServer, EwsRequestHandler, _Dropped

if TYPE_CHECKING:
    from exchange_sim.graph.frontend import GraphFrontEnd
    from exchange_sim.simulator import Simulator

TOKEN_PATH = re.compile(r"^/([^/]+)/oauth2/v2\.0/token$", re.IGNORECASE)
OPENID_PATH = re.compile(r"^/([^/]+)/v2\.0/\.well-known/openid-configuration$", re.IGNORECASE)
KEYS_PATH = re.compile(r"^/([^/]+)/discovery/v2\.0/keys$", re.IGNORECASE)
VERSION_PREFIX = "/v1.0"


class GraphHTTPServer(EwsHTTPServer):
    def __init__(self, address: tuple[str, int], simulator: Simulator, context: ssl.SSLContext) -> None:
        self.context = context
        super().__init__(address, simulator)
        self.RequestHandlerClass = GraphRequestHandler

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = self.socket.accept()
        # the handshake happens on first read, in the connection's own thread
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address


class GraphRequestHandler(EwsRequestHandler):
    server: GraphHTTPServer  # type: ignore[assignment]

    @property
    def front(self) -> GraphFrontEnd:
        return self.sim.graph

    def setup(self) -> None:
        super().setup()
        try:
            self.connection.do_handshake()  # type: ignore[attr-defined]
        except (ssl.SSLError, OSError):
            self.close_connection = True

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (ssl.SSLError, ConnectionError):
            self.close_connection = True

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    # ---- dispatch --------------------------------------------------------------------------------
    def _serve(self, method: str) -> None:
        body = self._read_body()
        path = self.path.split("?")[0]
        if path.startswith("/_sim/"):
            self.sim.control.handle(self, method, body)
            return
        try:
            if path == VERSION_PREFIX or path.startswith(VERSION_PREFIX + "/"):
                self._api(method, body)
            elif TOKEN_PATH.match(path) and method == "POST":
                self._token(TOKEN_PATH.match(path).group(1), body)  # type: ignore[union-attr]
            elif OPENID_PATH.match(path) and method == "GET":
                self._openid(OPENID_PATH.match(path).group(1))  # type: ignore[union-attr]
            elif KEYS_PATH.match(path) and method == "GET":
                self._json(200, {"keys": []})
            else:
                self.send_bytes(404, b"Not Found", "text/plain")
        except _Dropped:
            self.drop()

    @property
    def origin(self) -> str:
        host = self.headers.get("Host") or f"{self.server.server_address[0]}:{self.server.server_address[1]}"
        return f"https://{host}"

    def _json(self, status: int, data: Any, headers: dict[str, str] | None = None, content_type: str = "application/json; charset=utf-8") -> None:
        payload = b"" if data is None else json.dumps(data, separators=(",", ":")).encode()
        self.send_bytes(status, payload, content_type, headers)

    def _token(self, tenant: str, body: bytes) -> None:
        sim = self.sim
        sim.counters.count("graph.token")
        if sim.faults.take("drop_connection", "graph.token", exact=True):
            raise _Dropped
        if sim.faults.take("http_503", "graph.token", exact=True):
            self._json(503, {"error": "temporarily_unavailable", "error_description": "AADSTS50196: The server is busy."})
            return
        try:
            answer = self.front.directory.issue(tenant, body, self.headers.get("Authorization"))
            status: int = 200
        except AuthError as err:
            answer, status = err.body(), err.status
        self._log("graph.token", None, status, f"POST {self.path}\n\n(credentials not logged)", answer if status != 200 else {"token_type": "Bearer"})
        self._json(status, answer, {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"})

    def _openid(self, tenant: str) -> None:
        self.sim.counters.count("graph.openid")
        try:
            self._json(200, self.front.directory.openid_configuration(tenant, self.origin))
        except AuthError as err:
            self._json(err.status, err.body())

    def _api(self, method: str, body: bytes) -> None:
        from exchange_sim.graph import batch

        sim = self.sim
        front = self.front
        headers = Headers(self.headers.items())
        target = self.path[len(VERSION_PREFIX) :] or "/"
        base_url = self.origin + VERSION_PREFIX
        request_id = str(uuid.uuid4())
        client_request_id = headers.get("client-request-id")
        is_batch = target.split("?")[0].rstrip("/").lower() == "/$batch"
        request = None
        candidate = None
        operation = "graph.$batch" if is_batch else "graph.unknown"
        mailbox = None
        try:
            if not is_batch:
                request, candidate = api.prepare(front, method, target, headers, body, base_url)
                request.request_id = request_id
                operation, mailbox = request.operation, request.mailbox
            elif method != "POST":
                raise GraphError(405, "Request_BadRequest", "Specified HTTP method is not allowed for the request target.")
            if not is_batch:
                sim.counters.count(operation, mailbox)
            self._http_faults(operation, mailbox)
            app = front.directory.authenticate(headers.get("authorization"))
            api.latency(front)
            if is_batch:
                response, mailboxes = batch.run_batch(front, app, body, headers, base_url)
                sim.counters.count_request("graph.$batch", mailboxes)
            else:
                assert request is not None and candidate is not None
                request.app = app
                response = api.run(request, candidate)
        except GraphError as err:
            if is_batch:
                sim.counters.count_request("graph.$batch", [])
            elif request is None:
                sim.counters.count(operation, mailbox)
            response = error_response(err, request_id, client_request_id)
        self._send(response, request_id, client_request_id)
        self._log(operation, mailbox, response.status, f"{method} {self.path}\n\n{body.decode('utf-8', 'replace')}", response.body)

    def _http_faults(self, operation: str, mailbox: str | None) -> None:
        faults = self.sim.faults
        if faults.take("drop_connection", operation, mailbox):
            raise _Dropped
        if faults.take("unauthorized", operation, mailbox):
            raise GraphError(401, "InvalidAuthenticationToken", "Access token validation failure.", {"WWW-Authenticate": "Bearer"})
        unavailable = faults.take("http_503", operation, mailbox)
        if unavailable is not None:
            retry = unavailable.params.get("retry_after")
            raise GraphError(503, "ServiceUnavailable", "The service is temporarily unavailable.", {"Retry-After": str(retry)} if retry else {})

    def _send(self, response: GraphResponse, request_id: str, client_request_id: str | None) -> None:
        headers = {
            "request-id": request_id,
            "client-request-id": client_request_id or request_id,
            "Date": datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT"),
            "Cache-Control": "no-cache",
            **response.headers,
        }
        if response.body is not None:
            headers["OData-Version"] = "4.0"
        payload = response.payload()
        self.send_bytes(response.status, payload, JSON_TYPE if response.body is not None else "text/plain", headers)

    def _log(self, operation: str, mailbox: str | None, status: int, request: str, body: Any) -> None:
        log = self.sim.request_log
        if log.enabled:
            log.add(LoggedRequest(operation, mailbox, status, request, json.dumps(body) if body is not None else "", protocol="graph"))
