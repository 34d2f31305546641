"""From an environment's settings to a mailbox backend (the engine's side of the door)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings as django_settings

from synccore.mailbox.base import ConnectionConfig, MailboxBackend, MailboxError
from synccore.models import AccessType, Backend, Environment, SyncSettings, SyncUser


@dataclass
class ConnectionReport:
    """What a connection test tried, and why it failed (for people)."""

    ok: bool
    tried: list[str] = field(default_factory=list)
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def connection_config(sync_settings: SyncSettings) -> ConnectionConfig:
    return ConnectionConfig(
        backend=sync_settings.backend,
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
        ca_bundle=sync_settings.ca_bundle,
        impersonation=sync_settings.access_type == AccessType.IMPERSONATION,
        batch_size=sync_settings.batch_size,
        calendar_horizon_days=sync_settings.calendar_horizon_days,
        # The longest retry wait stays well under the task timeout, so a pass ends on its own.
        max_wait_s=min(120.0, django_settings.Q_TIMEOUT / 4),
    )


def open_backend(sync_settings: SyncSettings) -> MailboxBackend:
    return backend_for(connection_config(sync_settings))


def backend_for(config: ConnectionConfig) -> MailboxBackend:
    """The backend a connection config names (tests and benches adjust the config first)."""
    return backend_class(config.backend)(config)


def backend_class(backend: str) -> type[MailboxBackend]:
    """The backend class of a `Backend` choice; its class methods need no connection."""
    # Imported on first use: each backend loads its own client library (exchangelib; msal, httpx).
    if backend == Backend.GRAPH:
        from synccore.mailbox.graph import GraphBackend

        return GraphBackend
    from synccore.mailbox.ews import EwsBackend

    return EwsBackend


def check_connection(environment: Environment) -> ConnectionReport:
    """Try the connection with the first active sync user's mailbox; say what was tried."""
    sync_settings = environment.settings
    user = SyncUser.objects.filter(environment=environment, active=True).order_by("mailbox_email").first()
    if user is None:
        return ConnectionReport(
            ok=False, tried=["Looked for an active sync user"], error="There is no active sync user."
        )
    try:
        backend = open_backend(sync_settings)
    except MailboxError as exc:
        return ConnectionReport(ok=False, tried=["Read the connection settings"], error=str(exc))
    try:
        tried = backend.check(user.mailbox_email)
        return ConnectionReport(ok=True, tried=tried)
    except MailboxError as exc:
        target = sync_settings.ews_url if sync_settings.backend == Backend.EWS else "Microsoft Graph"
        return ConnectionReport(
            ok=False, tried=[f"Connected to {target} for {user.mailbox_email}"], error=str(exc)
        )
    finally:
        backend.close()
