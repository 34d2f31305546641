"""Push latency benchmark (K14): seconds from a change on one side to the other side, with push on.

exchange_sim runs as its own process; one real `manage.py qcluster` and the push listener
(`manage.py run_push_listener`) run as in production, on a database of their own. Changes go
one at a time, alternately a new item and an edit of the previous one:

- Exchange → CRM: an event is created / renamed in a mailbox (as Outlook would), and the clock
  stops when the CRM's Activity row carries the subject;
- CRM → Exchange: an activity is upserted through the CRM integration service (what the REST API
  calls; the change is pushed after the commit), and the clock stops when the organizer's
  calendar item carries the subject.

    .venv/bin/python bench/push_latency.py [--changes 100] [--users 2] [--workers 2]
                                           [--latency-ms 0] [--database postgres|sqlite]

The last line printed is one JSON object (pinned keys: exchange_to_crm_p50_s,
exchange_to_crm_p95_s, crm_to_exchange_p50_s, crm_to_exchange_p95_s).
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
import time
from datetime import UTC, datetime, timedelta

from _harness import (
    Managed,
    SimProcess,
    configure_environment,
    django_setup,
    fresh_database,
    percentile,
    wait_until,
)

TIMEOUT_S = 60.0


def setup(sim: SimProcess, mailboxes: list[str]):
    from synccore.models import Environment, SyncUser
    from tests.fixtures import factories as f

    env = Environment.objects.create(name="Push bench")
    s = env.settings
    s.ews_url, s.auth_type = sim.url, "basic"
    s.service_account, s.service_password = "svc@contoso.example", "demo-password"
    s.synchronize_contacts, s.synchronize_activities, s.push_enabled = False, True, True
    # The pull interval is the safety net; here it must not be what carries a change across.
    s.pull_interval, s.pull_interval_unit = 1, "days"
    s.save()
    for mailbox in mailboxes:
        SyncUser.objects.create(environment=env, employee=f.employee(env, mailbox), mailbox_email=mailbox)
    return env


def settled(env, *, at_least: int) -> bool:
    """No pass running, and at least `at_least` calendar passes done (the start and catch-up)."""
    from synccore.models import Outcome, SyncRun

    runs = SyncRun.objects.filter(environment=env, kind="calendar")
    return (
        runs.exclude(outcome=Outcome.RUNNING).count() >= at_least
        and not runs.filter(outcome=Outcome.RUNNING).exists()
    )


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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--changes", type=int, default=100, help="changes in each direction")
    parser.add_argument("--users", type=int, default=2, help="sync users (mailboxes) the changes rotate over")
    parser.add_argument("--workers", type=int, default=2, help="workers of the one qcluster (Q_WORKERS)")
    parser.add_argument("--latency-ms", type=int, default=0, help="simulated network latency per request")
    parser.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    args = parser.parse_args()

    mailboxes = [f"user{i:02d}@contoso.example" for i in range(args.users)]
    sim = SimProcess(mailboxes, args.latency_ms)
    processes: list[Managed] = []
    try:
        with fresh_database(args.database) as database_url:
            configure_environment(database_url, Q_WORKERS=str(args.workers))
            django_setup()
            from synccore import runtime

            env = setup(sim, mailboxes)
            processes.append(Managed("qcluster", log_name="bench-push-qcluster"))
            processes.append(Managed("run_push_listener", "--poll", "1", log_name="bench-push-listener"))
            runtime.start(env.pk)
            # The first passes (start) and the listener's catch-up after subscribing, all done.
            wait_until(
                lambda: settled(env, at_least=2 * len(mailboxes)), timeout=120, every=0.2, what="first passes"
            )
            time.sleep(1)
            e2c = exchange_to_crm(sim, env, mailboxes, args.changes)
            wait_until(lambda: settled(env, at_least=0), timeout=120, every=0.1, what="quiet")
            c2e = crm_to_exchange(sim, env, mailboxes, args.changes)
            runtime.stop(env.pk)
            for process in processes:
                process.stop()
            processes.clear()
    finally:
        for process in processes:
            process.stop()
        sim.stop()

    result = {
        "changes": args.changes,
        "users": args.users,
        "workers": args.workers,
        "latency_ms": args.latency_ms,
        "database": args.database,
        "exchange_to_crm_p50_s": round(percentile(e2c, 50), 3),
        "exchange_to_crm_p95_s": round(percentile(e2c, 95), 3),
        "exchange_to_crm_max_s": round(max(e2c), 3),
        "crm_to_exchange_p50_s": round(percentile(c2e, 50), 3),
        "crm_to_exchange_p95_s": round(percentile(c2e, 95), 3),
        "crm_to_exchange_max_s": round(max(c2e), 3),
    }
    print(f"Exchange → CRM: p50 {result['exchange_to_crm_p50_s']} s, p95 {result['exchange_to_crm_p95_s']} s")
    print(f"CRM → Exchange: p50 {result['crm_to_exchange_p50_s']} s, p95 {result['crm_to_exchange_p95_s']} s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
