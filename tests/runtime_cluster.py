"""Helpers for runtime tests that run real `manage.py qcluster` processes (not sync mode).

The cluster and the `synchronizer` command run as subprocesses on the test database (a file on
SQLite, see settings), with seconds-long test intervals: every pull-interval unit counts as one
second and the scheduler ticks every second.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.db import connection

PROJECT_DIR = Path(__file__).resolve().parent.parent


def database_url() -> str:
    """The test database, as a URL a subprocess's settings understand."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def runtime_env(*, broker: str = "orm", name: str | None = None, **extra: Any) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": database_url(),
            "DJANGO_SETTINGS_MODULE": "syncadmin.settings",
            "Q_BROKER": broker,
            # A name of its own: nothing queued by another test or another run reaches this cluster.
            "Q_CLUSTER_NAME": name or f"t{uuid.uuid4().hex[:10]}",
            "Q_WORKERS": "3",
            "Q_TIMEOUT": "60",
            "Q_LOG_LEVEL": "WARNING",
            "SYNC_TEST_TICK_SECONDS": "1",
            "SYNC_TEST_SECONDS_PER_UNIT": "1",
            "SYNC_LEASE_SECONDS": "30",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if broker != "redis":
        env.pop("REDIS_URL", None)
    env.update({key: str(value) for key, value in extra.items()})
    return env


def manage(*args: str, env: dict[str, str], check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=check,
    )


def last_json(output: str) -> dict[str, Any]:
    return json.loads(output.strip().splitlines()[-1])


class Cluster:
    """One `manage.py qcluster` process group; stopped (then killed) at teardown."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log = log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=PROJECT_DIR,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        # Workers that outlived the sentinel (killed abruptly) are in the same group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.log.close()

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()


def wait_for(predicate: Callable[[], Any], *, timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")
