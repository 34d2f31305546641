"""The Simulator: a store served over HTTP, with users, auth, faults, counters and the control API."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exchange_sim.clock import Clock
from exchange_sim.faults import Counters, Faults, RequestLog
from exchange_sim.schema import SchemaValidator, Violation, default_schema_dir
from exchange_sim.server import EWS_PATH, Concurrency, EwsHTTPServer, basic_credentials
from exchange_sim.store import Store
from exchange_sim.user import MailboxUser

if TYPE_CHECKING:
    from exchange_sim.domino import DominoFrontEnd
    from exchange_sim.graph.frontend import GraphFrontEnd

log = logging.getLogger("exchange_sim")

DEMO_SERVICE_ACCOUNT = ("svc@contoso.example", "demo-password")


@dataclass
class UserAccount:
    """Someone who may log in. A service account may act on (and impersonate) every mailbox."""

    name: str
    password: str
    mailbox: str | None = None
    service_account: bool = False


class Auth:
    """none | basic | ntlm. `authenticate` returns the account, None (no auth), or False when it answered."""

    def __init__(self, simulator: Simulator, mode: str) -> None:
        if mode not in {"none", "basic", "ntlm"}:
            raise ValueError(f"Unknown auth mode {mode}")
        self.sim = simulator
        self.mode = mode

    def lookup(self, name: str) -> UserAccount | None:
        key = name.lower()
        short = key.split("\\")[-1]
        for account in self.sim.users.values():
            if key in {account.name.lower(), (account.mailbox or "").lower()} or short == account.name.lower():
                return account
            if short == account.name.lower().split("@")[0] and "\\" in key:
                return account
        return None

    def check_password(self, name: str, password: str) -> UserAccount | None:
        account = self.lookup(name)
        return account if account and account.password == password else None

    def authenticate(self, handler: Any) -> UserAccount | bool | None:
        if self.mode == "none":
            return None
        if self.mode == "ntlm":
            from exchange_sim.ntlm import authenticate_ntlm

            return authenticate_ntlm(self, handler)
        creds = basic_credentials(handler)
        account = self.check_password(*creds) if creds else None
        if account is None:
            handler.send_bytes(401, b"", "text/plain", {"WWW-Authenticate": 'Basic realm="exchange_sim"'})
            return False
        return account


class Simulator:
    """A loopback Exchange. See the package docstring for the API tests use."""

    def __init__(
        self,
        store: Store | None = None,
        *,
        auth: str = "basic",
        service_account: tuple[str, str] | None = DEMO_SERVICE_ACCOUNT,
        host: str = "127.0.0.1",
        port: int = 0,
        schema_dir: Path | str | bool | None = None,
        latency_ms: int = 0,
        state_file: str | None = None,
        graph: bool = True,
        graph_port: int = 0,
        tenant: str = "contoso",
        apps: list[tuple[str, str]] | list[tuple[str, str, list[str] | None]] | None = None,
        tls_dir: str | None = None,
        domino: bool = True,
    ) -> None:
        self.store = store or Store()
        self.host, self.port = host, port
        self.users: dict[str, UserAccount] = {}
        if service_account:
            self.add_user(service_account[0], service_account[1], mailbox=None, service_account=True)
        self.auth = Auth(self, auth)
        self.faults = Faults(now=self.store.clock.now)
        self.faults.latency_ms = latency_ms
        self.counters = Counters()
        self.request_log = RequestLog()
        self.concurrency = Concurrency(self)
        self.schema_violations: list[Violation] = []
        self.internal_errors: list[str] = []  # unexpected exceptions while answering (simulator bugs)
        self.validator = self._make_validator(schema_dir)
        self.state_file = state_file
        self.streaming: Any = None  # notifications.StreamingServer, installed below
        self.meetings: Any = None  # meetings.Meetings
        self.subscriptions: Any = None  # notifications.Subscriptions
        self._extras: list[Callable[[Any, str], dict[str, Any]]] = []
        self._server: EwsHTTPServer | None = None
        self._serving = False
        self._thread: threading.Thread | None = None
        from exchange_sim.control import ControlApi

        self.control = ControlApi(self)
        self._install_features()
        # The Graph front end over the same store, served over TLS (None with graph=False).
        self.graph: GraphFrontEnd | None = None
        if graph:
            from exchange_sim.graph.frontend import GraphFrontEnd

            self.graph = GraphFrontEnd(self, port=graph_port, tenant=tenant, apps=apps, tls_dir=tls_dir)
        # The HCL Domino REST API front end over the same store, under /api on the EWS port.
        self.domino: DominoFrontEnd | None = None
        if domino:
            from exchange_sim.domino import DominoFrontEnd

            self.domino = DominoFrontEnd(self)

    def _install_features(self) -> None:
        """Optional layers (calendar, meetings, notifications) register themselves here."""
        from exchange_sim import features

        features.install(self)

    @staticmethod
    def _make_validator(schema_dir: Path | str | bool | None) -> SchemaValidator | None:
        if schema_dir is False:
            return None
        path = Path(schema_dir) if isinstance(schema_dir, str | Path) else default_schema_dir()
        return SchemaValidator(path) if path else None

    # ---- people ----------------------------------------------------------------------------------
    @property
    def clock(self) -> Clock:
        return self.store.clock

    def add_user(self, name: str, password: str, mailbox: str | None = None, service_account: bool = False) -> UserAccount:
        account = UserAccount(name=name, password=password, mailbox=mailbox, service_account=service_account)
        self.users[name.lower()] = account
        return account

    def load_users(self, path: str) -> None:
        """A users file: JSON list of {"name", "password", "mailbox"?, "service_account"?}."""
        import json

        with open(path, encoding="utf-8") as fh:
            for entry in json.load(fh):
                self.add_user(entry["name"], entry["password"], entry.get("mailbox"), bool(entry.get("service_account")))

    def add_mailbox(self, address: str, display_name: str | None = None, time_zone: str = "UTC", password: str | None = None) -> MailboxUser:
        """A mailbox; with a password its owner can also log in (delegate access to their own mailbox)."""
        self.store.add_mailbox(address, display_name, time_zone)
        if password is not None:
            self.add_user(address, password, mailbox=address)
        return self.user(address)

    def user(self, address: str) -> MailboxUser:
        """Act as the owner of a mailbox in Outlook (see `MailboxUser`)."""
        self.store.mailbox(address)  # fails for an unknown address
        return MailboxUser(self.store, address)

    @property
    def service_account(self) -> UserAccount | None:
        return next((u for u in self.users.values() if u.service_account), None)

    @property
    def credentials(self) -> tuple[str, str]:
        account = self.service_account
        if account is None:
            raise RuntimeError("no service account configured")
        return account.name, account.password

    # ---- serving ---------------------------------------------------------------------------------
    def start(self) -> Simulator:
        """Bind and serve (EWS over HTTP, Graph over HTTPS) in background threads."""
        self.bind()
        if self.graph is not None:
            self.graph.start()
        self._serving = True  # before the thread runs: a stop() right after start() must wait for its loop
        self._thread = threading.Thread(target=self._serve_ews, name="exchange_sim", daemon=True)
        self._thread.start()
        return self

    def bind(self) -> None:
        self._server = EwsHTTPServer((self.host, self.port), self)
        self.port = self._server.server_address[1]
        if self.graph is not None:
            self.graph.bind()

    def serve_forever(self) -> None:
        """Serve until interrupted: Graph in a background thread, EWS in this one (after `bind`)."""
        if self.graph is not None and not self.graph.serving:
            self.graph.start()
        self._serve_ews()

    def _serve_ews(self) -> None:
        assert self._server is not None
        self._serving = True
        self._server.serve_forever(poll_interval=0.1)

    def stop(self) -> None:
        if self.streaming is not None:
            self.streaming.close_all()
        if self.graph is not None:
            self.graph.stop()
        if self._server is not None:
            if self._serving:  # shutdown() waits for a serve loop, which an early Ctrl-C may have prevented
                self._server.shutdown()
            self._serving = False
            self._server.server_close()
            self._server.close_connections()
            self._server = None
        if self.meetings is not None:
            self.meetings.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self.state_file:
            self.store.save(self.state_file)

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The EWS endpoint, e.g. http://127.0.0.1:8765/EWS/Exchange.asmx."""
        return f"{self.base_url}{EWS_PATH}"

    endpoint = url

    @property
    def domino_url(self) -> str:
        """The Domino REST API base, e.g. http://127.0.0.1:8765/api (``/v1/auth``, ``/pim-v1/...``)."""
        if self.domino is None:
            raise RuntimeError("this simulator serves no Domino (domino=False)")
        return self.domino.url

    # ---- Graph -------------------------------------------------------------------------------------
    def _graph(self) -> GraphFrontEnd:
        if self.graph is None:
            raise RuntimeError("this simulator serves no Graph (graph=False)")
        return self.graph

    @property
    def graph_url(self) -> str:
        """https://127.0.0.1:PORT/v1.0"""
        return self._graph().url

    @property
    def token_url(self) -> str:
        """https://127.0.0.1:PORT/contoso/oauth2/v2.0/token"""
        return self._graph().token_url

    @property
    def authority(self) -> str:
        """The token URL without /oauth2/v2.0/token: what msal takes as authority."""
        return self._graph().authority

    @property
    def ca_bundle(self) -> str:
        """Path of the PEM file with the test CA that signed the TLS certificate."""
        return self._graph().ca_bundle

    @property
    def tenant(self) -> str:
        return self._graph().tenant

    @property
    def graph_app(self) -> tuple[str, str]:
        """(client id, secret) of the first registered app: the demo app unless --app was given."""
        app = next(iter(self._graph().directory.apps.values()))
        return app.client_id, app.secret

    # ---- hooks for the request path ---------------------------------------------------------------
    def add_request_extras(self, provider: Callable[[Any, str], dict[str, Any]]) -> None:
        self._extras.append(provider)

    def request_extras(self, ctx: Any, operation: str) -> dict[str, Any]:
        extras: dict[str, Any] = {}
        if operation == "SyncFolderItems" and self.faults.take("invalid_sync_state", operation, ctx.target):
            extras["fault_invalid_sync_state"] = True
        for provider in self._extras:
            extras.update(provider(ctx, operation))
        return extras

    def validate(self, envelope: Any, direction: str, operation: str) -> list[Violation]:
        if self.validator is None:
            return []
        found = self.validator.validate(envelope, direction, operation)
        if found:
            for violation in found:
                log.error("schema violation: %s", violation)
            self.schema_violations.extend(found)
        return found

    def mailboxes(self) -> Iterable[str]:
        return [m.address for m in self.store.mailboxes()]
