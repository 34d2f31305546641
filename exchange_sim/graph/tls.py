"""The test CA and server certificates: generated once per process (cheap to start TLS in every test).

``python -m exchange_sim --tls-dir DIR`` keeps the CA in DIR (``ca.pem``, ``ca-key.pem``) so a client
configured with the CA bundle keeps trusting restarted simulators.
"""

from __future__ import annotations

import atexit
import os
import shutil
import ssl
import tempfile
import threading
from pathlib import Path

import trustme

_lock = threading.Lock()
_process_ca: CertificateAuthority | None = None


class CertificateAuthority:
    """A trustme CA, its PEM written to ``bundle_path``, and server contexts per host set."""

    def __init__(self, ca: trustme.CA, bundle_path: Path) -> None:
        self.ca = ca
        self.bundle_path = bundle_path
        self._contexts: dict[tuple[str, ...], ssl.SSLContext] = {}
        self._lock = threading.Lock()

    def server_context(self, hosts: tuple[str, ...]) -> ssl.SSLContext:
        """An SSLContext serving a certificate for these host names / IP addresses (HTTP/1.1 by ALPN)."""
        key = tuple(sorted(set(hosts)))
        with self._lock:
            context = self._contexts.get(key)
            if context is None:
                context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                self.ca.issue_cert(*key).configure_cert(context)
                context.set_alpn_protocols(["http/1.1"])
                self._contexts[key] = context
            return context


def process_ca() -> CertificateAuthority:
    """The CA every simulator of this process uses (its bundle removed at exit)."""
    global _process_ca
    with _lock:
        if _process_ca is None:
            directory = Path(tempfile.mkdtemp(prefix="exchange_sim-tls-"))
            atexit.register(shutil.rmtree, directory, True)
            ca = trustme.CA(organization_name="exchange_sim test CA")
            bundle = directory / "ca.pem"
            bundle.write_bytes(ca.cert_pem.bytes())
            _process_ca = CertificateAuthority(ca, bundle)
        return _process_ca


def persistent_ca(directory: str | os.PathLike[str]) -> CertificateAuthority:
    """A CA kept in a directory: loaded when present, created (and saved) otherwise."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "ca.pem", folder / "ca-key.pem"
    if cert.exists() and key.exists():
        ca = trustme.CA.from_pem(cert.read_bytes(), key.read_bytes())
    else:
        ca = trustme.CA(organization_name="exchange_sim test CA")
        key.write_bytes(ca.private_key_pem.bytes())
        key.chmod(0o600)
        cert.write_bytes(ca.cert_pem.bytes())
    return CertificateAuthority(ca, cert)


def certificate_hosts(host: str) -> tuple[str, ...]:
    hosts = {"127.0.0.1", "localhost", "::1"}
    if host not in {"", "0.0.0.0", "::"}:
        hosts.add(host)
    else:
        import socket

        hosts.add(socket.gethostname())
    return tuple(sorted(hosts))
