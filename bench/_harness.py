"""What the runtime benches share: a simulator process, a fresh database, Django in the driver,
and the product's own processes (qcluster, push listener) started as in production.

    python bench/push_latency.py      python bench/scale.py
    python bench/contacts.py          python bench/calendar.py

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


ENDPOINT_LINES = {"url": "EWS endpoint", "graph_url": "Graph endpoint", "token_url": "Token endpoint", "ca_bundle": "CA bundle",
                  "domino_url": "Domino endpoint"}


def start_simulator(latency_ms: int, mailboxes: list[str]) -> tuple[subprocess.Popen, dict[str, str]]:
    """exchange_sim as its own process; its EWS, Graph and token endpoints and its CA bundle,
    read from the lines it prints (keys: url, graph_url, token_url, ca_bundle)."""
    entry = [str(PROJECT / "bench" / "_simprofile.py")] if os.environ.get("BENCH_PROFILE") else ["-m", "exchange_sim"]
    args = [PYTHON, *entry, "--port", "0", "--latency-ms", str(latency_ms)]
    for mailbox in mailboxes:
        args += ["--mailbox", mailbox]
    proc = subprocess.Popen(args, cwd=PROJECT, stdout=subprocess.PIPE, text=True)
    # Step processes read the simulator's CPU time from /proc (see Meter).
    os.environ["BENCH_SIM_PID"] = str(proc.pid)
    found: dict[str, str] = {}
    for line in proc.stdout:
        for key, label in ENDPOINT_LINES.items():
            match = re.match(rf"{label}: (\S+)", line)
            if match:
                found[key] = match[1]
        if len(found) == len(ENDPOINT_LINES):
            return proc, found
    proc.kill()
    raise SystemExit(f"exchange_sim did not print its endpoints (got {sorted(found)})")


def stop_simulator(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


class SimProcess:
    """exchange_sim as its own process (its own GIL), driven through the /_sim/ control API."""

    def __init__(self, mailboxes: list[str], latency_ms: int = 0) -> None:
        self.proc, self.endpoints = start_simulator(latency_ms, mailboxes)
        self.url = self.endpoints["url"]
        self.base = self.url.split("/EWS/")[0]

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
        stop_simulator(self.proc)


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
    """A product process in its own process group: `manage.py ARGS` (qcluster, run_push_listener),
    or with ``module`` a `python -m MODULE ARGS` (gunicorn)."""

    def __init__(self, *args: str, log_name: str, module: str = "", **env: str) -> None:
        self.log_path = Path(tempfile.gettempdir()) / f"{log_name}-{os.getpid()}.log"
        self.log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [PYTHON, "-m", module, *args] if module else [PYTHON, "manage.py", *args],
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


# --- Measured steps in fresh processes (contacts.py, calendar.py) ---------------------------------


def run_step(script: str, mode: str, **params: str) -> dict:
    """Run ``script --worker mode`` in a fresh process (so its peak RSS is its own); its last
    line of output, JSON, is the answer."""
    env = {**os.environ, "BENCH_PARAMS": json.dumps(params)}
    out = subprocess.run(
        [PYTHON, script, "--worker", mode], cwd=PROJECT, env=env, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"worker {mode} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_steps_at_once(script: str, mode: str, parts: list[dict[str, str]]) -> dict:
    """Run ``script --worker mode`` in one fresh process per entry of ``parts`` (its params), as a
    cluster's worker processes run at once. Each process sets itself up (Django, its connections),
    says it is ready (`step_ready`) and waits; the clock starts when all are ready. The answer: each
    process's JSON under "parts", the wall time from the start until the last one ended
    (``wall_s``) and the simulator's CPU over that time (``sim_cpu_s``)."""
    barrier = tempfile.mkdtemp(prefix="bench-barrier-")
    procs = [
        subprocess.Popen(
            [PYTHON, script, "--worker", mode],
            cwd=PROJECT,
            env={**os.environ, "BENCH_PARAMS": json.dumps(params), "BENCH_BARRIER": barrier, "BENCH_PART": str(n)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n, params in enumerate(parts)
    ]
    go = Path(barrier) / "go"
    while len(list(Path(barrier).glob("ready-*"))) < len(procs):
        if any(p.poll() is not None for p in procs):
            break
        time.sleep(0.01)
    sim_pid = int(os.environ.get("BENCH_SIM_PID") or 0)
    sim_started = cpu_seconds(pid=sim_pid) if sim_pid else 0.0
    started = time.time()
    go.touch()
    answers = []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode != 0:
            for other in procs:
                other.kill()
            raise SystemExit(f"worker {mode} failed:\n{err[-3000:]}")
        answers.append(json.loads(out.strip().splitlines()[-1]))
    sim = (cpu_seconds(pid=sim_pid) - sim_started) if sim_pid else 0.0
    wall = max(a["ended_at"] for a in answers) - started
    return {"parts": answers, "wall_s": wall, "sim_cpu_s": sim}


def step_ready() -> None:
    """In a step process started by `run_steps_at_once`: say it is ready, and wait until every
    process of the step is."""
    barrier = os.environ.get("BENCH_BARRIER")
    if not barrier:
        return
    (Path(barrier) / f"ready-{os.environ['BENCH_PART']}").touch()
    while not (Path(barrier) / "go").exists():
        time.sleep(0.005)


def step_params() -> dict:
    return json.loads(os.environ["BENCH_PARAMS"])


def step_django() -> None:
    """Django in a step process, on the database the driver chose (DATABASE_URL), and both
    backends imported: a worker imports them once, so the import (about half a second of CPU
    for exchangelib) is no part of what a measured step costs."""
    sys.path.insert(0, str(PROJECT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "syncadmin.settings")
    import django

    django.setup()
    import synccore.mailbox.ews
    import synccore.mailbox.graph  # noqa: F401


class Meter:
    """Wall time and CPU time of one measured section of a step process: the product's own (this
    process, ``resource.getrusage``) and the simulator's (its ``/proc/<pid>/stat``, the pid from
    BENCH_SIM_PID, which start_simulator sets). ``stop()`` gives wall_s, cpu_s, sim_cpu_s.

    With BENCH_PROFILE=DIR in the environment, the section runs under cProfile, written to
    DIR/product-<pid>.prof (and the simulator's request threads to DIR/simulator.prof)."""

    def __init__(self) -> None:
        self.profile = None
        if os.environ.get("BENCH_PROFILE"):
            import cProfile

            self.profile = cProfile.Profile()
        self.sim_pid = int(os.environ.get("BENCH_SIM_PID") or 0)
        self.sim_started = cpu_seconds(pid=self.sim_pid) if self.sim_pid else 0.0
        self.cpu_started = own_cpu_seconds()
        self.started = time.perf_counter()
        if self.profile is not None:
            self.profile.enable()

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self.started
        cpu = own_cpu_seconds() - self.cpu_started
        if self.profile is not None:
            self.profile.disable()
            self.profile.dump_stats(os.path.join(os.environ["BENCH_PROFILE"], f"product-{os.getpid()}.prof"))
        sim = (cpu_seconds(pid=self.sim_pid) - self.sim_started) if self.sim_pid else 0.0
        return {"wall_s": wall, "cpu_s": cpu, "sim_cpu_s": sim}


def own_cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_figures(run: dict, items: int, prefix: str = "") -> dict[str, float]:
    """The CPU keys of a bench's JSON line for one measured step of ``items`` items: the
    product's and the simulator's CPU seconds and their milliseconds per item."""
    items = max(items, 1)
    return {
        f"{prefix}cpu_s": round(run["cpu_s"], 2),
        f"{prefix}sim_cpu_s": round(run["sim_cpu_s"], 2),
        f"{prefix}cpu_ms_per_item": round(1000 * run["cpu_s"] / items, 3),
        f"{prefix}sim_cpu_ms_per_item": round(1000 * run["sim_cpu_s"] / items, 3),
    }


def cpu_line(label: str, run: dict, items: int) -> str:
    items = max(items, 1)
    return (f"{label} CPU: product {run['cpu_s']:.2f} s ({1000 * run['cpu_s'] / items:.2f} ms per item), "
            f"simulator {run['sim_cpu_s']:.2f} s ({1000 * run['sim_cpu_s'] / items:.2f} ms per item), "
            f"wall {run['wall_s']:.2f} s")  # fmt: skip


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


SERVICE_ACCOUNT, SERVICE_PASSWORD = "svc@contoso.example", "demo-password"
GRAPH_CLIENT_ID, GRAPH_CLIENT_SECRET = "demo-client", "demo-secret"  # the simulator's demo app


def configure_backend(sync_settings: Any, backend: str, endpoints: dict[str, str]) -> None:
    """Point an environment's settings (not saved) at the simulator over EWS or Graph."""
    s = sync_settings
    s.ews_url, s.auth_type = endpoints["url"], "basic"
    s.service_account, s.service_password = SERVICE_ACCOUNT, SERVICE_PASSWORD
    if backend == "graph":
        s.backend, s.graph_endpoint, s.ca_bundle = "graph", endpoints["graph_url"], endpoints["ca_bundle"]
        s.authority_url = endpoints["token_url"].removesuffix("/oauth2/v2.0/token")
        s.oauth_tenant_id = s.authority_url.rsplit("/", 1)[-1]  # contoso
        s.oauth_client_id, s.oauth_client_secret = GRAPH_CLIENT_ID, GRAPH_CLIENT_SECRET
    if backend == "domino":
        s.backend, s.domino_url = "domino", endpoints["domino_url"]
        s.synchronize_contacts = False  # calendar only over Domino (docs/domino.md)


def fetch_token(sync_settings: Any) -> None:
    """Over Graph, fetch the app's token before measuring: a worker process keeps it for an
    hour, and each measurement runs in a fresh process."""
    if sync_settings.backend == "graph":
        from synccore.sync.connection import open_backend

        open_backend(sync_settings).client.access_token()


def naive_backend(backend: str, endpoints: dict[str, str]) -> Any:
    """The naive baseline's backend: the same door, batch size 1, the token already fetched."""
    from synccore.mailbox.base import ConnectionConfig

    if backend == "graph":
        from synccore.mailbox.graph import GraphBackend

        authority = endpoints["token_url"].removesuffix("/oauth2/v2.0/token")
        config = ConnectionConfig(backend="graph", graph_endpoint=endpoints["graph_url"], authority_url=authority,
                                  ca_bundle=endpoints["ca_bundle"], tenant_id=authority.rsplit("/", 1)[-1],
                                  client_id=GRAPH_CLIENT_ID, client_secret=GRAPH_CLIENT_SECRET, batch_size=1)
        graph = GraphBackend(config)
        graph.client.access_token()  # the token is not what is measured
        return graph
    if backend == "domino":
        from synccore.mailbox.domino import DominoBackend

        domino = DominoBackend(ConnectionConfig(backend="domino", domino_url=endpoints["domino_url"],
                                                username=SERVICE_ACCOUNT, password=SERVICE_PASSWORD, batch_size=1))
        domino.client.token()  # the login is not what is measured
        return domino
    from synccore.mailbox.ews import EwsBackend

    return EwsBackend(ConnectionConfig(backend="ews", ews_url=endpoints["url"], auth_type="basic",
                                       username=SERVICE_ACCOUNT, password=SERVICE_PASSWORD, batch_size=1))


def parse_backends(parser: Any, value: str, allowed: tuple[str, ...] = ("ews", "graph")) -> list[str]:
    backends = [b.strip() for b in value.split(",") if b.strip()]
    if not backends or set(backends) - set(allowed) or len(set(backends)) != len(backends):
        parser.error(f"--backends takes {', '.join(allowed)} (one or more)")
    return backends


# --- Measuring ------------------------------------------------------------------------------------


def cpu_seconds(*, pid: int | None = None, group: int | None = None) -> float:
    """CPU time (user + system) used so far by one process, or by every process of a group, the
    group's exited processes included (a django-q2 worker recycled after its 500 tasks counts in
    its parent's children's time)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    entries = [Path(f"/proc/{pid}")] if pid is not None else Path("/proc").iterdir()
    for entry in entries:
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
        if group is not None:  # cutime, cstime: the exited children it waited for
            total += (int(fields[13]) + int(fields[14])) / ticks
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
