"""`make run` as a new administrator meets it: after everything listens, one short block says where
to go and how to log in; the workers do not bury it (issue 14, finding 12)."""

from __future__ import annotations

import logging
import re
import socket
import subprocess
import sys
import threading
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command

from tests.conftest import PROJECT_DIR

pytestmark = pytest.mark.django_db


def free_listener() -> socket.socket:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    return listener


def url_of(listener: socket.socket, scheme: str = "http", path: str = "/") -> str:
    return f"{scheme}://127.0.0.1:{listener.getsockname()[1]}{path}"


def banner(*args: str) -> str:
    out = StringIO()
    call_command("demo_banner", "--once", *args, stdout=out)
    return out.getvalue()


def test_the_banner_says_the_console_url_the_login_and_the_simulators_endpoints(settings):
    settings.DEMO_ADMIN_PASSWORD = "pw-for-the-demo"
    console, ews, graph = free_listener(), free_listener(), free_listener()
    urls = {
        "console": url_of(console),
        "ews": url_of(ews, path="/EWS/Exchange.asmx"),
        "graph": url_of(graph, "https", "/v1.0"),
        "token": url_of(graph, "https", "/contoso/oauth2/v2.0/token"),
    }
    with console, ews, graph:
        text = banner(*[arg for name, url in urls.items() for arg in (f"--{name}", url)])
    assert re.search(r"^Login: admin / pw-for-the-demo$", text, re.MULTILINE)
    assert f"Console: {urls['console']}" in text
    assert urls["ews"] in text and urls["graph"] in text and urls["token"] in text
    assert "svc@contoso.example / demo-password" in text and "demo-client / demo-secret" in text
    assert "alice-password" in text and "Not listening yet" not in text
    assert len(text.splitlines()) <= 16  # a short block


def test_the_banner_waits_for_the_console_to_listen():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    ews = free_listener()
    opened = threading.Timer(1.0, listener.listen)
    opened.start()
    with listener, ews:
        text = banner(
            "--console", f"http://127.0.0.1:{port}/", "--ews", url_of(ews), "--graph", "", "--wait", "30"
        )
        opened.join()
    assert "Not listening yet" not in text and f"Console: http://127.0.0.1:{port}/" in text


def test_the_banner_says_what_does_not_listen_when_it_gives_up():
    ews = free_listener()
    with ews:
        text = banner("--console", "http://127.0.0.1:9/", "--ews", url_of(ews), "--graph", "", "--wait", "0")
    assert "Not listening yet: http://127.0.0.1:9/" in text


def test_make_run_prints_the_console_url_only_through_the_banner():
    procfile = (PROJECT_DIR / "Procfile").read_text()
    assert re.search(
        r"^banner: .*manage\.py demo_banner --console http://\$\{WEB_HOST", procfile, re.MULTILINE
    )
    run_recipe = (PROJECT_DIR / "Makefile").read_text().split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert "Console:" not in run_recipe


def test_the_workers_per_task_info_lines_are_off_by_default():
    assert settings.LOGGING["loggers"]["django-q"]["level"] == "WARNING"
    assert logging.getLogger("django-q").getEffectiveLevel() >= logging.WARNING


def test_the_simulators_help_says_the_demo_credentials():
    result = subprocess.run(
        [sys.executable, "-m", "exchange_sim", "--help"],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert "svc@contoso.example / demo-password" in result.stdout
    assert "demo-client / demo-secret" in result.stdout
    assert "alice@contoso.example" in result.stdout and "alice-password" in result.stdout
