"""Entra ID (Azure AD) as far as a daemon app sees it: tenant, app registrations, client-credentials tokens.

* ``POST /{tenant}/oauth2/v2.0/token`` (form: grant_type=client_credentials, client_id, client_secret,
  scope=https://graph.microsoft.com/.default) answers ``{"token_type": "Bearer", "expires_in", "access_token"}``
  or the AADSTS error bodies Entra ID uses.
* ``GET /{tenant}/v2.0/.well-known/openid-configuration`` is what msal reads for an authority it does not
  know (``instance_discovery=False`` / ``validate_authority=False``); only https authorities are accepted
  by msal, hence the TLS listener.
* Access tokens are JWT-shaped (HS256, signed with a per-simulator secret) and expire on the simulator
  clock: ``sim.clock.advance(timedelta(hours=2))`` expires every token issued before; ``expire_tokens()``
  expires them at once.

The tenant is ``contoso`` (also reachable by its GUID and domain names). An app may be restricted to some
mailboxes (an Exchange application access policy): others answer 403 ErrorAccessDenied.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from exchange_sim.graph.errors import GraphError

GRAPH_RESOURCE = "https://graph.microsoft.com"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
GRAPH_SCOPES = {f"{GRAPH_RESOURCE}/.default", f"{GRAPH_APP_ID}/.default"}
DEMO_APP = ("demo-client", "demo-secret")
DEMO_TENANT = "contoso"
DEFAULT_ROLES = ("Contacts.ReadWrite", "Calendars.ReadWrite", "Tasks.ReadWrite.All", "Mail.ReadWrite", "Mail.Send")
TOKEN_LIFETIME = timedelta(seconds=3599)
WWW_AUTHENTICATE = (
    'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", '
    f'client_id="{GRAPH_APP_ID}"'
)
NAMESPACE = uuid.UUID("5b1c7e5e-8f0f-4c7a-9d0e-2a7c1d6f3b90")


@dataclass
class Tenant:
    name: str
    id: str
    domains: tuple[str, ...]

    def matches(self, ref: str) -> bool:
        ref = ref.lower()
        return ref in {self.name.lower(), self.id.lower(), *(d.lower() for d in self.domains)}


@dataclass
class App:
    """An app registration with application permissions (roles) and an optional mailbox restriction."""

    client_id: str
    secret: str
    tenant: Tenant
    mailboxes: frozenset[str] | None = None  # None: every mailbox (no application access policy)
    roles: tuple[str, ...] = DEFAULT_ROLES
    object_id: str = ""

    def may_access(self, address: str) -> bool:
        return self.mailboxes is None or address.lower() in self.mailboxes

    def has_role(self, *roles: str) -> bool:
        return any(role in self.roles for role in roles)


@dataclass
class Token:
    app: App
    serial: int
    issued: datetime
    expires: datetime
    claims: dict[str, Any] = field(default_factory=dict)


class AuthError(Exception):
    """An Entra ID error answer of the token endpoint."""

    def __init__(self, status: int, error: str, code: int, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.code, self.description = status, error, code, description

    def body(self) -> dict[str, Any]:
        trace = str(uuid.uuid4())
        return {
            "error": self.error,
            "error_description": f"AADSTS{self.code}: {self.description} Trace ID: {trace} Correlation ID: {trace}",
            "error_codes": [self.code],
            "timestamp": datetime.now().strftime("%Y-%m-%d %H:%M:%SZ"),
            "trace_id": trace,
            "correlation_id": trace,
            "error_uri": f"https://login.microsoftonline.com/error?code={self.code}",
        }


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Directory:
    """The tenant, its app registrations and the tokens they were given (``sim.graph.directory``)."""

    def __init__(self, now: Any, tenant: str = DEMO_TENANT) -> None:
        self._now = now
        self._lock = threading.Lock()
        self._secret = uuid.uuid4().bytes
        self._serial = 0
        self._expired_below = 0  # tokens with a serial below this are expired (expire_tokens)
        self.token_lifetime = TOKEN_LIFETIME
        self.tenant = Tenant(
            name=tenant,
            id=str(uuid.uuid5(NAMESPACE, tenant.lower())),
            domains=(f"{tenant}.onmicrosoft.com", f"{tenant}.example"),
        )
        self.apps: dict[str, App] = {}

    # ---- registrations ---------------------------------------------------------------------------
    def add_app(
        self,
        client_id: str,
        secret: str,
        mailboxes: list[str] | set[str] | tuple[str, ...] | None = None,
        roles: tuple[str, ...] | list[str] = DEFAULT_ROLES,
    ) -> App:
        app = App(
            client_id=client_id,
            secret=secret,
            tenant=self.tenant,
            mailboxes=frozenset(m.lower() for m in mailboxes) if mailboxes is not None else None,
            roles=tuple(roles),
            object_id=str(uuid.uuid5(NAMESPACE, f"sp:{client_id}")),
        )
        with self._lock:
            self.apps[client_id] = app
        return app

    def remove_app(self, client_id: str) -> None:
        with self._lock:
            self.apps.pop(client_id, None)

    def expire_tokens(self) -> None:
        """Every token issued so far is expired from now on (clients must fetch a new one)."""
        with self._lock:
            self._expired_below = self._serial + 1

    # ---- token endpoint --------------------------------------------------------------------------
    def check_tenant(self, ref: str) -> None:
        if not self.tenant.matches(ref):
            raise AuthError(
                400,
                "invalid_request",
                90002,
                f"Tenant '{ref}' not found. Check to make sure you have the correct tenant ID and are signing "
                "into the correct cloud.",
            )

    def issue(self, tenant_ref: str, body: bytes, authorization: str | None) -> dict[str, Any]:
        """The client-credentials grant: a token answer, or AuthError."""
        self.check_tenant(tenant_ref)
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if authorization and authorization.lower().startswith("basic "):  # client_secret_basic
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                client_id, _, secret = base64.b64decode(authorization[6:]).decode().partition(":")
        if form.get("grant_type") != "client_credentials":
            raise AuthError(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
        if not client_id:
            raise AuthError(400, "invalid_request", 900144, "The request body must contain the following parameter: 'client_id'.")
        app = self.apps.get(client_id)
        if app is None:
            raise AuthError(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory '{self.tenant.name}'.",
            )
        if not secret:
            raise AuthError(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            )
        if not hmac.compare_digest(secret, app.secret):
            raise AuthError(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret "
                f"value, not the client secret ID, for a secret added to app '{client_id}'.",
            )
        scope = form.get("scope", "")
        if scope not in GRAPH_SCOPES:
            if scope.endswith("/.default"):
                raise AuthError(
                    400,
                    "invalid_resource",
                    500011,
                    f"The resource principal named {scope.removesuffix('/.default')} was not found in the tenant "
                    f"named {self.tenant.name}.",
                )
            raise AuthError(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. Client credential flows must have a scope value "
                "with /.default suffixed to the resource identifier (application ID URI).",
            )
        token = self._sign(app)
        seconds = int(self.token_lifetime.total_seconds())
        return {"token_type": "Bearer", "expires_in": seconds, "ext_expires_in": seconds, "access_token": token}

    def sign_delegated(self, client_id: str, address: str, scopes: tuple[str, ...] = ("User.ReadBasic.All",)) -> str:
        """A delegated access token of ``address`` signed in to the app (what an interactive or
        on-behalf-of sign-in gives an app): for tests of the few APIs that take delegated tokens
        only (``translateExchangeIds``). The token endpoint itself issues application tokens."""
        app = self.apps[client_id]
        return self._sign(app, user=address.lower(), scopes=scopes)

    def claims(self, authorization: str | None) -> dict[str, Any]:
        """The claims of a valid Bearer token (401 GraphError otherwise)."""
        self.authenticate(authorization)
        assert authorization is not None
        return json.loads(_unb64(authorization[7:].strip().split(".")[1]))

    def _sign(self, app: App, *, user: str = "", scopes: tuple[str, ...] = ()) -> str:
        now = self._now()
        with self._lock:
            self._serial += 1
            serial = self._serial
        iat = int(now.timestamp())
        claims = {
            "aud": GRAPH_RESOURCE,
            "iss": f"https://sts.windows.net/{self.tenant.id}/",
            "iat": iat,
            "nbf": iat,
            "exp": iat + int(self.token_lifetime.total_seconds()),
            "app_displayname": app.client_id,
            "appid": app.client_id,
            "appidacr": "1",
            "idtyp": "app",
            "oid": app.object_id,
            "roles": list(app.roles),
            "sub": app.object_id,
            "tid": self.tenant.id,
            "ver": "1.0",
            "jti": f"{serial}.{uuid.uuid4().hex}",
        }
        if user:  # delegated: the user's identity and scopes instead of the app's roles
            user_oid = str(uuid.uuid5(NAMESPACE, f"user:{user}"))
            claims.update(idtyp="user", oid=user_oid, sub=user_oid, upn=user, unique_name=user, scp=" ".join(scopes))
            claims.pop("roles")
            claims.pop("appidacr")
        header = _b64(json.dumps({"typ": "JWT", "alg": "HS256"}).encode())
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        signature = _b64(hmac.new(self._secret, f"{header}.{payload}".encode(), hashlib.sha256).digest())
        return f"{header}.{payload}.{signature}"

    # ---- bearer tokens on /v1.0 ------------------------------------------------------------------
    def authenticate(self, authorization: str | None) -> App:
        """The app behind a Bearer token, or a 401 GraphError as Graph words it."""
        if not authorization or not authorization.lower().startswith("bearer ") or not authorization[7:].strip():
            raise self._unauthorized("Access token is empty.")
        token = authorization[7:].strip()
        parts = token.split(".")
        if len(parts) != 3:
            raise self._unauthorized("IDX14100: JWT is not well formed, there are no dots (.).")
        expected = _b64(hmac.new(self._secret, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest())
        try:
            claims = json.loads(_unb64(parts[1]))
        except ValueError:
            raise self._unauthorized("Access token validation failure. Invalid token.") from None
        if not hmac.compare_digest(expected, parts[2]) or claims.get("aud") != GRAPH_RESOURCE:
            raise self._unauthorized("Access token validation failure. Invalid audience.")
        serial = int(str(claims.get("jti", "0")).split(".")[0])
        if claims["exp"] <= self._now().timestamp() or serial < self._expired_below:
            raise self._unauthorized("Lifetime validation failed, the token is expired.")
        app = self.apps.get(claims.get("appid", ""))
        if app is None:
            raise self._unauthorized("Access token validation failure. Invalid token.")
        return app

    @staticmethod
    def _unauthorized(message: str) -> GraphError:
        return GraphError(401, "InvalidAuthenticationToken", message, {"WWW-Authenticate": WWW_AUTHENTICATE})

    # ---- discovery -------------------------------------------------------------------------------
    def openid_configuration(self, tenant_ref: str, base_url: str) -> dict[str, Any]:
        self.check_tenant(tenant_ref)
        root = f"{base_url}/{self.tenant.id}"
        return {
            "token_endpoint": f"{root}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{base_url}/{self.tenant.id}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{root}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{base_url}/oidc/userinfo",
            "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{root}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "acr", "nonce", "tid", "ver", "oid"],
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        }

    def role_check(self, app: App, *roles: str) -> None:
        """403 when the app has none of these application permissions (directory reads word it differently)."""
        if app.has_role(*roles):
            return
        if any(role.startswith(("User.", "Directory.")) for role in roles):
            raise GraphError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
        raise GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")


ACCESS_POLICY_TEXT = "Access to OData is disabled: [RAOP] : Blocked by tenant configured AppOnly AccessPolicy settings."
