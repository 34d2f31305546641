"""Server-side NTLM with pyspnego, one handshake per TCP connection (as IIS does).

pyspnego's NTLM acceptor reads credentials from the file named by NTLM_USER_FILE, so the simulator
keeps one such file for the process with every NTLM user of every running simulator. Each user is
listed as UPN (``svc@contoso.example``) and as ``CONTOSO\\svc``.
"""

from __future__ import annotations

import atexit
import base64
import os
import tempfile
import threading
from typing import Any

import spnego
from spnego.exceptions import SpnegoError

_FILE_LOCK = threading.Lock()
_LINES: set[str] = set()
_FILE: str | None = None


def _domain_forms(name: str) -> list[tuple[str, str]]:
    forms = [("", name)]
    if "@" in name:
        local, _, domain = name.partition("@")
        forms.append((domain.split(".")[0].upper(), local))
    return forms


def register_users(accounts: list[Any]) -> None:
    """Make these accounts known to the process-wide NTLM credential file."""
    global _FILE
    with _FILE_LOCK:
        for account in accounts:
            for domain, user in _domain_forms(account.name):
                _LINES.add(f"{domain}:{user}:{account.password}")
        if _FILE is None:
            handle, _FILE = tempfile.mkstemp(prefix="exchange_sim_ntlm_", suffix=".txt")
            os.close(handle)
            atexit.register(lambda: os.path.exists(_FILE or "") and os.unlink(_FILE or ""))
        with open(_FILE, "w", encoding="utf-8") as fh:
            fh.write("\n".join(sorted(_LINES)) + "\n")
        os.environ["NTLM_USER_FILE"] = _FILE


def _challenge(handler: Any, token: bytes | None = None) -> None:
    value = "NTLM" + (f" {base64.b64encode(token).decode()}" if token else "")
    handler.send_bytes(401, b"", "text/plain", {"WWW-Authenticate": value})


def authenticate_ntlm(auth: Any, handler: Any) -> Any:
    """The account of this connection, or False after answering 401 (challenge or refusal)."""
    header = handler.headers.get("Authorization", "")
    if not header.lower().startswith("ntlm "):
        if handler.ntlm_user is not None:
            return handler.ntlm_user  # the connection is already authenticated
        _challenge(handler)
        return False
    token = base64.b64decode(header[5:].strip())
    if handler.ntlm_context is None or handler.ntlm_context.complete:
        register_users(list(auth.sim.users.values()))
        handler.ntlm_context = spnego.server(protocol="ntlm")
        handler.ntlm_user = None
    try:
        out = handler.ntlm_context.step(token)
    except SpnegoError:
        handler.ntlm_context = None
        _challenge(handler)
        return False
    if not handler.ntlm_context.complete:
        _challenge(handler, out)
        return False
    principal = handler.ntlm_context.client_principal or ""
    account = auth.lookup(principal)
    if account is None:
        _challenge(handler)
        return False
    handler.ntlm_user = account
    return account
