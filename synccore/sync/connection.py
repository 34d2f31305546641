"""From an environment's settings to a mailbox backend (the engine's side of the door)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings as django_settings

from synccore.mailbox.base import ConnectionConfig, MailboxBackend, MailboxError
from synccore.models import AccessType, Backend, Environment, SyncSettings, SyncUser
from synccore.sync.readable import GRAPH, Readable, explain


def connection_config(sync_settings: SyncSettings, backend: str = "") -> ConnectionConfig:
    """The connection to one backend (default: the environment's). The settings hold the EWS
    and the Graph connection side by side, so a hybrid environment reaches both (H1)."""
    return ConnectionConfig(
        backend=backend or sync_settings.backend,
        ews_url=sync_settings.ews_url,
        autodiscover_email=sync_settings.autodiscover_email,
        auth_type=sync_settings.auth_type,
        username=sync_settings.service_account,
        password=sync_settings.service_password,
        tenant_id=sync_settings.oauth_tenant_id,
        client_id=sync_settings.oauth_client_id,
        client_secret=sync_settings.oauth_client_secret,
        graph_endpoint=sync_settings.graph_endpoint,
        authority_url=sync_settings.authority_url,
        domino_url=sync_settings.domino_url,
        ca_bundle=sync_settings.ca_bundle,
        impersonation=sync_settings.access_type == AccessType.IMPERSONATION,
        batch_size=sync_settings.batch_size,
        calendar_horizon_days=sync_settings.calendar_horizon_days,
        # The longest retry wait stays well under the task timeout, so a pass ends on its own.
        max_wait_s=min(120.0, django_settings.Q_TIMEOUT / 4),
        # One connection per pass a worker runs at once (PASS_THREADS), never over EWS's 27.
        max_connections=min(27, max(4, int(getattr(django_settings, "PASS_THREADS", 4)))),
    )


def open_backend(sync_settings: SyncSettings, backend: str = "") -> MailboxBackend:
    return backend_for(connection_config(sync_settings, backend))


def open_user_backend(user: SyncUser) -> MailboxBackend:
    """The backend this sync user's mailbox is reached through (its own, else the environment's)."""
    return open_backend(user.environment.settings, user.effective_backend)


def backend_for(config: ConnectionConfig) -> MailboxBackend:
    """The backend a connection config names (tests and benches adjust the config first)."""
    return backend_class(config.backend)(config)


def backend_class(backend: str) -> type[MailboxBackend]:
    """The backend class of a `Backend` choice; its class methods need no connection."""
    # Imported on first use: each backend loads its own client library (exchangelib; msal, httpx).
    if backend == Backend.GRAPH:
        from synccore.mailbox.graph import GraphBackend

        return GraphBackend
    if backend == Backend.DOMINO:
        from synccore.mailbox.domino import DominoBackend

        return DominoBackend
    from synccore.mailbox.ews import EwsBackend

    return EwsBackend


@dataclass
class ConnectionReport:
    """A connection test: the steps that succeeded, and why it failed as one sentence (with a
    code, and the technical detail apart for a "details" disclosure)."""

    ok: bool
    tried: list[str] = field(default_factory=list)
    error: str = ""
    code: str = ""
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def failed(cls, readable: Readable, tried: list[str] | None = None) -> ConnectionReport:
        return cls(ok=False, tried=tried or [], error=readable.sentence, code=readable.code, detail=readable.detail)


def server_name(sync_settings: SyncSettings, backend: str = "") -> str:
    """How a sentence names the server the settings point at (for ``backend``: default the
    environment's)."""
    if (backend or sync_settings.backend) == Backend.GRAPH:
        return GRAPH
    if (backend or sync_settings.backend) == Backend.DOMINO:
        return f"HCL Domino at {sync_settings.domino_url}" if sync_settings.domino_url else "HCL Domino"
    if sync_settings.ews_url:
        return f"Exchange at {sync_settings.ews_url}"
    return "Exchange"


def check_connection(environment: Environment) -> ConnectionReport:
    """Try the connection with the first active sync user's mailbox of each backend in use (a
    hybrid environment reaches some mailboxes over EWS, others over Graph); say what was tried."""
    users = list(
        SyncUser.objects.filter(environment=environment, active=True)
        .select_related("environment__settings")
        .order_by("mailbox_email")
    )
    if not users:
        return ConnectionReport.failed(
            Readable("no_user", "There is no active sync user to test with: add one, then test again.")
        )
    first_per_backend: dict[str, SyncUser] = {}
    for user in users:
        first_per_backend.setdefault(user.effective_backend, user)
    tried: list[str] = []
    for user in first_per_backend.values():
        report = check_user_connection(user)
        tried += report.tried
        if not report.ok:
            report.tried = tried
            return report
    return ConnectionReport(ok=True, tried=tried)


def check_user_connection(user: SyncUser) -> ConnectionReport:
    """Reach one sync user's mailbox over its backend; say what was tried."""
    server = server_name(user.environment.settings, user.effective_backend)
    try:
        backend = open_user_backend(user)
    except MailboxError as exc:
        return ConnectionReport.failed(explain(exc, server=server))
    try:
        return ConnectionReport(ok=True, tried=backend.check(user.mailbox_email))
    except MailboxError as exc:
        # Only the steps that succeeded are listed: the failed one is the sentence.
        return ConnectionReport.failed(explain(exc, mailbox=user.mailbox_email, server=server))
    finally:
        backend.close()


def check_mailbox(user: SyncUser) -> ConnectionReport:
    """Test & enable (O5): can the service account open this one mailbox?"""
    sync_settings = user.environment.settings
    problems = sync_settings.connection_problems()
    if problems:
        return ConnectionReport.failed(Readable("settings", " ".join(problems)))
    server = server_name(sync_settings, user.effective_backend)
    try:
        backend = open_user_backend(user)  # its own backend, else the environment's
    except MailboxError as exc:
        return ConnectionReport.failed(explain(exc, server=server))
    try:
        return ConnectionReport(ok=True, tried=backend.check(user.mailbox_email))
    except MailboxError as exc:
        return ConnectionReport.failed(explain(exc, mailbox=user.mailbox_email, server=server))
    finally:
        backend.close()
