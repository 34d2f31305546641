"""`GraphFrontEnd` (``sim.graph``): the Graph side of a Simulator and the knobs tests turn.

    sim.graph.add_app("crm-sync", "s3cret", mailboxes=["alice@contoso.example"])   # restricted app
    sim.graph.expire_tokens()                  # every issued token answers 401 from now on
    sim.graph.throttling.concurrency = 4; sim.graph.throttling.budget(100, per_seconds=600)
    sim.graph.invalidate_delta_tokens()        # every delta/skip token answers 410 Gone (SyncStateNotFound)
    sim.graph.subscriptions                    # change-notification subscriptions (webhooks)
    sim.graph.page_size = 10                   # default page of lists and deltas (Prefer odata.maxpagesize wins)
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from exchange_sim.graph.auth import DEMO_APP, DEMO_TENANT, App, Directory
from exchange_sim.graph.errors import GraphError
from exchange_sim.graph.ids import IdMap, user_id
from exchange_sim.graph.throttle import Throttling
from exchange_sim.graph.tls import CertificateAuthority, certificate_hosts, persistent_ca, process_ca

if TYPE_CHECKING:
    from exchange_sim.graph.server import GraphHTTPServer
    from exchange_sim.simulator import Simulator

GRAPH_VERSION_PATH = "/v1.0"


class GraphFrontEnd:
    def __init__(
        self,
        simulator: Simulator,
        *,
        port: int = 0,
        tenant: str = DEMO_TENANT,
        apps: list[tuple[str, str]] | list[tuple[str, str, list[str] | None]] | None = None,
        tls_dir: str | None = None,
    ) -> None:
        from exchange_sim.graph import (  # noqa: F401  (routes)
            calendar_delta,
            contacts,
            delta,
            events,
            mail,
            subscriptions,
            todo,
            translate,
        )

        self.sim = simulator
        self.port = port
        self.directory = Directory(simulator.clock.now, tenant)
        for spec in apps if apps is not None else [DEMO_APP]:
            self.directory.add_app(spec[0], spec[1], spec[2] if len(spec) > 2 else None)  # type: ignore[misc]
        self.ids = IdMap.for_store(simulator.store)
        self.throttling = Throttling(simulator.clock.now)
        self.deltas = delta.DeltaTokens(self)
        self.subscriptions = subscriptions.Webhooks(self)
        self.page_size = 10
        self._tls_dir = tls_dir
        self._ca: CertificateAuthority | None = None
        self._server: GraphHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- directory -------------------------------------------------------------------------------
    @property
    def tenant(self) -> str:
        return self.directory.tenant.name

    @property
    def tenant_id(self) -> str:
        return self.directory.tenant.id

    def add_app(self, client_id: str, secret: str, mailboxes: list[str] | None = None, roles: tuple[str, ...] | None = None) -> App:
        """Register an app (roles default: Contacts.ReadWrite, Calendars.ReadWrite, Tasks.ReadWrite.All, Mail.ReadWrite, Mail.Send); mailboxes restricts it."""
        if roles is None:
            return self.directory.add_app(client_id, secret, mailboxes)
        return self.directory.add_app(client_id, secret, mailboxes, roles)

    def expire_tokens(self) -> None:
        self.directory.expire_tokens()

    def invalidate_delta_tokens(self) -> None:
        self.deltas.invalidate()

    def resolve_user(self, ref: str) -> str:
        """A mailbox address from a user id (GUID) or address; 404 ErrorInvalidUser otherwise."""
        store = self.sim.store
        if store.has_mailbox(ref):
            return store.live_mailbox(ref).address
        for mailbox in store.mailboxes():
            if user_id(mailbox.address) == ref.lower():
                return mailbox.address
        raise GraphError(404, "ErrorInvalidUser", f"The requested user '{ref}' is invalid.")

    # ---- TLS listener ----------------------------------------------------------------------------
    @property
    def ca(self) -> CertificateAuthority:
        if self._ca is None:
            self._ca = persistent_ca(self._tls_dir) if self._tls_dir else process_ca()
        return self._ca

    def bind(self) -> None:
        from exchange_sim.graph.server import GraphHTTPServer

        context = self.ca.server_context(certificate_hosts(self.sim.host))
        self._server = GraphHTTPServer((self.sim.host, self.port), self.sim, context)
        self.port = self._server.server_address[1]

    def start(self) -> None:
        if self._server is None:
            self.bind()
        assert self._server is not None
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="exchange_sim-graph", daemon=True)
        self._thread.start()
        self.subscriptions.start()

    def stop(self) -> None:
        self.subscriptions.stop()
        if self._server is not None:
            if self._thread is not None:
                self._server.shutdown()
            self._server.server_close()
            self._server.close_connections()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def serving(self) -> bool:
        return self._thread is not None

    @property
    def base_url(self) -> str:
        host = self.sim.host if self.sim.host not in {"", "0.0.0.0", "::"} else "127.0.0.1"
        return f"https://{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base_url}{GRAPH_VERSION_PATH}"

    @property
    def authority(self) -> str:
        return f"{self.base_url}/{self.tenant}"

    @property
    def token_url(self) -> str:
        return f"{self.authority}/oauth2/v2.0/token"

    @property
    def ca_bundle(self) -> str:
        return str(self.ca.bundle_path)

    # ---- control API (/_sim/graph/...) -------------------------------------------------------------
    def control(self, method: str, parts: list[str], data: dict[str, Any]) -> tuple[int, Any]:
        head = parts[0] if parts else ""
        if head == "" and method == "GET":
            return 200, self.describe()
        if head == "expire_tokens" and method == "POST":
            self.expire_tokens()
            return 200, {"expired": True}
        if head == "invalidate_delta_tokens" and method == "POST":
            self.invalidate_delta_tokens()
            return 200, {"invalidated": True}
        if head == "apps" and method == "POST":
            app = self.add_app(data["client_id"], data["secret"], data.get("mailboxes"), tuple(data["roles"]) if data.get("roles") else None)
            return 201, {"client_id": app.client_id, "roles": list(app.roles)}
        if head == "throttling" and method == "POST":
            if "concurrency" in data:
                self.throttling.concurrency = data["concurrency"]
            if "retry_after" in data:
                self.throttling.retry_after = int(data["retry_after"])
            if "requests" in data:
                self.throttling.budget(data["requests"], float(data.get("per_seconds", 600)))
            return 200, self.throttling.describe()
        if head == "subscriptions":
            return self.subscriptions.control(method, parts[1:], data)
        return 404, {"error": "not found"}

    def describe(self) -> dict[str, Any]:
        return {
            "graph_endpoint": self.url,
            "token_endpoint": self.token_url,
            "ca_bundle": self.ca_bundle,
            "tenant": self.tenant,
            "tenant_id": self.tenant_id,
            "apps": [
                {"client_id": a.client_id, "mailboxes": sorted(a.mailboxes) if a.mailboxes is not None else None, "roles": list(a.roles)}
                for a in self.directory.apps.values()
            ],
            "throttling": self.throttling.describe(),
        }
