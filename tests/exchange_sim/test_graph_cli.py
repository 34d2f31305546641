"""`python -m exchange_sim` also serves Graph over TLS and prints its endpoints (pinned lines)."""

from __future__ import annotations

import re
import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.conftest import PROJECT_DIR


@contextmanager
def running(*args: str) -> Iterator[dict[str, str]]:
    proc = subprocess.Popen([sys.executable, "-m", "exchange_sim", "--port", "0", *args], cwd=PROJECT_DIR, stdout=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline().strip() for _ in range(4)]
        yield dict(line.split(": ", 1) for line in lines)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def token(endpoints: dict[str, str], client_id: str = "demo-client", secret: str = "demo-secret") -> httpx.Response:
    return httpx.post(
        endpoints["Token endpoint"],
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret, "scope": "https://graph.microsoft.com/.default"},
        verify=ssl.create_default_context(cafile=endpoints["CA bundle"]),
    )


def test_it_prints_the_graph_token_and_ca_lines_and_serves_the_demo_app():
    with running() as endpoints:
        assert list(endpoints) == ["EWS endpoint", "Graph endpoint", "Token endpoint", "CA bundle"]
        assert re.fullmatch(r"https://127\.0\.0\.1:\d+/v1\.0", endpoints["Graph endpoint"])
        assert re.fullmatch(r"https://127\.0\.0\.1:\d+/contoso/oauth2/v2\.0/token", endpoints["Token endpoint"])
        assert endpoints["Token endpoint"].startswith(endpoints["Graph endpoint"].removesuffix("/v1.0"))
        assert Path(endpoints["CA bundle"]).read_text().startswith("-----BEGIN CERTIFICATE-----")
        access = token(endpoints).json()["access_token"]
        answer = httpx.get(
            f"{endpoints['Graph endpoint']}/users/erin@contoso.example/contacts",
            headers={"Authorization": f"Bearer {access}"},
            verify=ssl.create_default_context(cafile=endpoints["CA bundle"]),
        )
        assert answer.status_code == 200 and len(answer.json()["value"]) == 2  # the seeded demo contacts


def test_apps_given_on_the_command_line_replace_the_demo_app():
    with running("--app", "crm:pw", "--app", "narrow:pw2:alice@contoso.example") as endpoints:
        assert token(endpoints).status_code == 400
        assert token(endpoints, "crm", "pw").status_code == 200
        narrow = token(endpoints, "narrow", "pw2").json()["access_token"]
        answer = httpx.get(
            f"{endpoints['Graph endpoint']}/users/bob@contoso.example/contactFolders",
            headers={"Authorization": f"Bearer {narrow}"},
            verify=ssl.create_default_context(cafile=endpoints["CA bundle"]),
        )
        assert answer.status_code == 403


def test_a_tls_dir_keeps_the_ca_between_runs(tmp_path):
    with running("--tls-dir", str(tmp_path)) as first:
        bundle = Path(first["CA bundle"]).read_text()
    with running("--tls-dir", str(tmp_path)) as second:
        assert Path(second["CA bundle"]).read_text() == bundle
        assert token(second).status_code == 200
