"""What the runtime benches share: a simulator process, a fresh database, Django in the driver,
and the product's own processes (qcluster, push listener) started as in production.

    python bench/push_latency.py      python bench/scale.py

Each bench gets a database of its own (PostgreSQL by default, as in production; SQLite with
``--database sqlite``) and drops it at the end. Nothing here is imported by the product.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

PROJECT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
POSTGRES_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"


# --- exchange_sim in its own process ------------------------------------------------------------


class SimProcess:
    """exchange_sim as its own process (its own GIL), driven through the /_sim/ control API."""

    def __init__(self, mailboxes: list[str], latency_ms: int = 0) -> None:
        args = [PYTHON, "-m", "exchange_sim", "--port", "0", "--latency-ms", str(latency_ms)]
        for mailbox in mailboxes:
            args += ["--mailbox", mailbox]
        self.proc = subprocess.Popen(args, cwd=PROJECT, stdout=subprocess.PIPE, text=True)
        for line in self.proc.stdout:
            match = re.match(r"EWS endpoint: (\S+)", line)
            if match:
                self.url = match[1]
                self.base = self.url.split("/EWS/")[0]
                return
        raise SystemExit("exchange_sim did not print its endpoint")

    def call(self, method: str, path: str, data: dict | None = None) -> Any:
        body = json.dumps(data).encode() if data is not None else None
        request = urllib.request.Request(f"{self.base}/_sim/{path}", data=body, method=method)
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())

    def create_event(self, mailbox: str, subject: str, start: str, end: str) -> dict:
        return self.call(
            "POST", f"mailboxes/{quote(mailbox)}/events", {"subject": subject, "start": start, "end": end}
        )

    def edit(self, item_id: str, **props: Any) -> dict:
        return self.call("POST", f"items/{quote(item_id, safe='')}/edit", {"props": props})

    def items(self, mailbox: str, folder: str = "calendar") -> list[dict]:
        return self.call("GET", f"mailboxes/{quote(mailbox)}/items?folder={folder}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# --- A database of the bench's own ----------------------------------------------------------------


@contextlib.contextmanager
def fresh_database(kind: str) -> Iterator[str]:
    """A new, empty database; yields its DATABASE_URL and drops it afterwards."""
    if kind == "sqlite":
        workdir = tempfile.mkdtemp(prefix="bench-")
        yield f"sqlite:///{workdir}/bench.sqlite3"
        return
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:10]}"
    admin = POSTGRES_ADMIN_URL.replace("postgres://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def configure_environment(database_url: str, **extra: str) -> None:
    """The process environment the driver and every product process share."""
    os.environ.update(
        {
            "DATABASE_URL": database_url,
            "DJANGO_SETTINGS_MODULE": "syncadmin.settings",
            "Q_BROKER": "orm",
            # A queue of the bench's own: nothing else's tasks, nobody else's workers.
            "Q_CLUSTER_NAME": f"bench{uuid.uuid4().hex[:8]}",
            "Q_LOG_LEVEL": "WARNING",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            **extra,
        }
    )
    os.environ.pop("REDIS_URL", None)


def django_setup() -> None:
    sys.path.insert(0, str(PROJECT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("createcachetable", verbosity=0)


# --- Product processes ----------------------------------------------------------------------------


class Managed:
    """A `manage.py` process (qcluster, run_push_listener) in its own process group."""

    def __init__(self, *args: str, log_name: str, **env: str) -> None:
        self.log_path = Path(tempfile.gettempdir()) / f"{log_name}-{os.getpid()}.log"
        self.log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [PYTHON, "manage.py", *args],
            cwd=PROJECT,
            env={**os.environ, **env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


# --- Measuring ------------------------------------------------------------------------------------


def cpu_seconds(*, pid: int | None = None, group: int | None = None) -> float:
    """CPU time (user + system) used so far by one process, or by every process of a group."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or (pid is not None and int(entry.name) != pid):
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the command: state ppid pgrp session ... utime (14th field) stime (15th field).
        if group is not None and int(fields[2]) != group:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def wait_until(predicate: Callable[[], Any], *, timeout: float, every: float = 0.01, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what or 'a condition'}")


def percentile(values: list[float], p: int) -> float:
    """The p-th percentile (inclusive method: p50 is the median)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]
