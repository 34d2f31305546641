"""Push latency benchmark (K14): seconds from a change on one side to the other side, with push on.

exchange_sim runs as its own process; one real `manage.py qcluster` and, over EWS, the push
listener (`manage.py run_push_listener`), over Microsoft Graph the web process (gunicorn) whose
webhook the simulator notifies, run as in production, on a database of their own per backend.
Changes go one at a time, alternately a new item and an edit of the previous one:

- Exchange → CRM: an event is created / renamed in a mailbox (as Outlook would), and the clock
  stops when the CRM's Activity row carries the subject;
- CRM → Exchange: an activity is upserted through the CRM integration service (what the REST API
  calls; the change is pushed after the commit), and the clock stops when the organizer's
  calendar item carries the subject.

    .venv/bin/python bench/push_latency.py [--changes 100] [--users 2] [--workers 2]
                                           [--latency-ms 0] [--database postgres|sqlite]
                                           [--backends ews,graph]

The last line printed is one JSON object (pinned keys: exchange_to_crm_p50_s,
exchange_to_crm_p95_s, crm_to_exchange_p50_s, crm_to_exchange_p95_s) for the first backend,
and the same keys per backend under "backends".
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, bench/ comes first on sys.path, where calendar.py would shadow the standard
# library's calendar module (http.cookiejar, requests and Django import it): put bench/ last.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH] + [str(_BENCH)]

import argparse
import json
import socket
import subprocess
import time
from datetime import UTC, datetime, timedelta

from _harness import (
    Managed,
    SimProcess,
    configure_backend,
    configure_environment,
    django_setup,
    fresh_database,
    parse_backends,
    percentile,
    wait_until,
)

TIMEOUT_S = 60.0


def setup(sim: SimProcess, mailboxes: list[str], backend: str):
    from synccore.models import Environment, SyncUser
    from tests.fixtures import factories as f

    env = Environment.objects.create(name="Push bench")
    s = env.settings
    configure_backend(s, backend, sim.endpoints)
    s.synchronize_contacts, s.synchronize_activities, s.push_enabled = False, True, True
    # The pull interval is the safety net; here it must not be what carries a change across.
    s.pull_interval, s.pull_interval_unit = 1, "days"
    s.save()
    for mailbox in mailboxes:
        SyncUser.objects.create(environment=env, employee=f.employee(env, mailbox), mailbox_email=mailbox)
    return env


def settled(env, *, at_least: int, subscriptions: int = 0) -> bool:
    """No pass running, at least `at_least` calendar passes done (the start and catch-up), and
    over Graph `subscriptions` subscriptions active."""
    from synccore.models import GraphSubscription, Outcome, SyncRun

    runs = SyncRun.objects.filter(environment=env, kind="calendar")
    return (
        runs.exclude(outcome=Outcome.RUNNING).count() >= at_least
        and not runs.filter(outcome=Outcome.RUNNING).exists()
        and GraphSubscription.objects.filter(environment=env, state="active").count() >= subscriptions
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def exchange_to_crm(sim: SimProcess, env, mailboxes: list[str], changes: int) -> list[float]:
    from synccore.models import Activity

    timings: list[float] = []
    item_id = ""
    for k in range(changes):
        mailbox = mailboxes[(k // 2) % len(mailboxes)]
        subject = f"E2C {k:03d}"
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1, hours=k)
        began = time.perf_counter()
        if k % 2 == 0:
            item_id = sim.create_event(
                mailbox, subject, start.isoformat(), (start + timedelta(hours=1)).isoformat()
            )["id"]
        else:
            sim.edit(item_id, Subject=subject)
        wait_until(
            lambda subject=subject: Activity.objects.filter(environment=env, subject=subject).exists(),
            timeout=TIMEOUT_S,
            what=f"{subject} in the CRM",
        )
        timings.append(time.perf_counter() - began)
    return timings


def crm_to_exchange(sim: SimProcess, env, mailboxes: list[str], changes: int) -> list[float]:
    from django.db import transaction

    from synccore import crmio

    timings: list[float] = []
    for k in range(changes):
        mailbox = mailboxes[(k // 2) % len(mailboxes)]
        subject = f"C2E {k:03d}"
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2, hours=k)
        item = {
            "external_id": f"bench-{k - k % 2}",  # odd changes edit the activity the even one made
            "type": "appointment",
            "subject": subject,
            "start": start.isoformat(),
            "end": (start + timedelta(hours=1)).isoformat(),
            "organizer_email": mailbox,
            "synchronize": True,
        }
        began = time.perf_counter()
        with transaction.atomic():
            [result] = crmio.upsert_many(env, "activities", [item])
        if result.status == "error":
            raise SystemExit(f"the CRM refused {item}: {result.errors}")
        wait_until(
            lambda mailbox=mailbox, subject=subject: any(
                i["props"].get("Subject") == subject for i in sim.items(mailbox)
            ),
            timeout=TIMEOUT_S,
            every=0.02,
            what=f"{subject} in Exchange",
        )
        timings.append(time.perf_counter() - began)
    return timings


def measure(args: argparse.Namespace, backend: str) -> dict:
    """One backend, from a fresh simulator and database: the timings of both directions."""
    mailboxes = [f"user{i:02d}@contoso.example" for i in range(args.users)]
    sim = SimProcess(mailboxes, args.latency_ms)
    processes: list[Managed] = []
    try:
        with fresh_database(args.database) as database_url:
            port = free_port()
            # Over Graph the simulator notifies the webhook at PUBLIC_BASE_URL (http on loopback).
            configure_environment(
                database_url, Q_WORKERS=str(args.workers), PUBLIC_BASE_URL=f"http://127.0.0.1:{port}"
            )
            django_setup()
            from synccore.runtime import service as runtime

            env = setup(sim, mailboxes, backend)
            processes.append(Managed("qcluster", log_name=f"bench-push-qcluster-{backend}"))
            if backend == "ews":
                processes.append(Managed("run_push_listener", "--poll", "1", log_name="bench-push-listener"))
            else:
                processes.append(web_process(port))
            runtime.start(env.pk)
            # The first passes (start), the subscriptions and the catch-up after subscribing, all done.
            wait_until(
                lambda: settled(
                    env,
                    at_least=2 * len(mailboxes),
                    subscriptions=len(mailboxes) if backend == "graph" else 0,
                ),
                timeout=180,
                every=0.2,
                what="first passes and subscriptions",
            )
            time.sleep(1)
            e2c = exchange_to_crm(sim, env, mailboxes, args.changes)
            wait_until(lambda: settled(env, at_least=0), timeout=120, every=0.1, what="quiet")
            c2e = crm_to_exchange(sim, env, mailboxes, args.changes)
            runtime.stop(env.pk)
            for process in processes:
                process.stop()
            processes.clear()
            from django import db

            db.connections.close_all()
    finally:
        for process in processes:
            process.stop()
        sim.stop()
    result = {
        "exchange_to_crm_p50_s": round(percentile(e2c, 50), 3),
        "exchange_to_crm_p95_s": round(percentile(e2c, 95), 3),
        "exchange_to_crm_max_s": round(max(e2c), 3),
        "crm_to_exchange_p50_s": round(percentile(c2e, 50), 3),
        "crm_to_exchange_p95_s": round(percentile(c2e, 95), 3),
        "crm_to_exchange_max_s": round(max(c2e), 3),
    }
    print(
        f"{backend}: Exchange → CRM p50 {result['exchange_to_crm_p50_s']} s, p95 {result['exchange_to_crm_p95_s']} s; "
        f"CRM → Exchange p50 {result['crm_to_exchange_p50_s']} s, p95 {result['crm_to_exchange_p95_s']} s"
    )
    return result


def web_process(port: int) -> Managed:
    """gunicorn as in production, serving the Graph webhook."""
    web = Managed(
        "syncadmin.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "2",
        module="gunicorn",
        log_name="bench-push-web",
    )
    wait_until(lambda: _answers(port), timeout=60, every=0.2, what="the web process")
    return web


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--changes", type=int, default=100, help="changes in each direction")
    parser.add_argument("--users", type=int, default=2, help="sync users (mailboxes) the changes rotate over")
    parser.add_argument("--workers", type=int, default=2, help="workers of the one qcluster (Q_WORKERS)")
    parser.add_argument("--latency-ms", type=int, default=0, help="simulated network latency per request")
    parser.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--backends", default="ews,graph", help="comma-separated: ews, graph (default both)")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # one backend, in this process
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args, args.measure)))
        return

    # Each backend in a process of its own: Django's settings (the database) are per process.
    per_backend = {}
    for backend in parse_backends(parser, args.backends):
        out = subprocess.run(
            [sys.executable, __file__, *sys.argv[1:], "--measure", backend],
            stdout=subprocess.PIPE,
            text=True,
            check=True,
        )
        lines = out.stdout.strip().splitlines()
        print("\n".join(lines[:-1]))
        per_backend[backend] = json.loads(lines[-1])
    first = next(iter(per_backend.values()))
    result = {
        "changes": args.changes,
        "users": args.users,
        "workers": args.workers,
        "latency_ms": args.latency_ms,
        "database": args.database,
        "backend": next(iter(per_backend)),
        **first,
        "backends": per_backend,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
