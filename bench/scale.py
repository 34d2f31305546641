"""Scale-out benchmark: one scheduler tick for N sync users (contacts and calendar), processed by a
real `manage.py qcluster` with 1 worker, then from scratch with 4 workers; each worker runs the
passes of a task at once on the runtime's PASS_THREADS threads (``--threads`` sets them; 1: one
after the other), at most SYNC_EWS_CONCURRENT_PASSES (27) at once over all workers.

exchange_sim runs as its own process with simulated network latency; the database is PostgreSQL
(as in production) unless ``--database sqlite``. Each worker count gets a fresh database and a
fresh simulator holding the same data: every user's first contact and calendar pass (contacts to
write, CRM activities to create in Exchange, an Outlook event to import). The clock runs from the
tick until the last pass has finished.

    .venv/bin/python bench/scale.py [--users 200] [--latency-ms 50] [--contacts 20]
                                    [--activities 2] [--database postgres|sqlite] [--idle]
                                    [--threads N]

With ``--idle`` (users 2,000 by default, no contacts or activities unless given): every user's
first passes run once, in a tick without latency, then the measured ticks are ones of idle passes
(each asks the mailbox what changed and hears "nothing"), by a cluster of 1 worker and then one of
4 on the same database and mailboxes: what a worker sustains in steady state.

The last line printed is one JSON object (pinned keys: users, users_per_min_1_worker,
users_per_min_4_workers, speedup = users_per_min_4_workers / users_per_min_1_worker), with what
explains the speedup: requests and mean seconds per pass, the cluster's CPU per pass, passes
deferred because another worker held the mailbox's lease. A pass waits for requests × latency;
its CPU share is what four workers contend for (on a machine of few cores, the ceiling).
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
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from _harness import (
    Managed,
    SimProcess,
    configure_environment,
    cpu_seconds,
    django_setup,
    fresh_database,
    wait_until,
)


def setup(sim: SimProcess, mailboxes: list[str], contacts: int, activities: int, outlook_events: bool = True):
    from synccore.models import Activity, Contact, Environment, SyncUser
    from tests.fixtures import factories as f

    env = Environment.objects.create(name="Scale bench")
    s = env.settings
    s.ews_url, s.auth_type = sim.url, "basic"
    s.service_account, s.service_password = "svc@contoso.example", "demo-password"
    s.synchronize_contacts, s.synchronize_activities, s.push_enabled = True, True, False
    s.save()
    Contact.objects.bulk_create(
        Contact(
            environment=env, first_name="Scale", last_name=f"Contact {i:03d}", email1=f"c{i}@fabrikam.example"
        )
        for i in range(contacts)
    )
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
    for n, mailbox in enumerate(mailboxes):
        employee = f.employee(env, mailbox)
        SyncUser.objects.create(environment=env, employee=employee, mailbox_email=mailbox)
        Activity.objects.bulk_create(
            Activity(
                environment=env,
                type="appointment",
                subject=f"CRM visit {n}-{i}",
                start=start + timedelta(hours=i),
                end=start + timedelta(hours=i, minutes=30),
                organizer=employee,
                synchronize=True,
            )
            for i in range(activities)
        )
        if not outlook_events:
            continue
        event_start = start + timedelta(hours=activities + 1)
        sim.create_event(
            mailbox, f"Outlook {n}", event_start.isoformat(), (event_start + timedelta(hours=1)).isoformat()
        )
    return env


def cluster_ready(workers: int) -> bool:
    from django_q.status import Stat

    return any(len(stat.workers) == workers and str(stat.status) == "Idle" for stat in Stat.get_all())


def one_tick(env, expected: int, sim: SimProcess, cluster: Managed) -> dict:
    """Enqueue one tick, wait for every pass it caused; seconds from the tick to the last finish."""
    from django.db.models import Max, Sum
    from django.utils import timezone
    from django_q.models import Task

    from synccore.models import Outcome, SynchronizerState, SyncRun, UserLease
    from synccore.runtime import passes, scheduling

    env.set_state(SynchronizerState.RUNNING)  # running, without start's own first passes
    # Every (user, kind) due now, also right after a tick of first passes (--idle).
    UserLease.objects.filter(sync_user__environment=env).update(**{passes.enqueued_field(k): None for k in passes.KINDS})
    cpu_before = cpu_seconds(pid=sim.proc.pid), cpu_seconds(group=cluster.proc.pid)
    began = timezone.now()
    enqueued = scheduling.tick(env.pk)
    if enqueued != expected:
        raise SystemExit(f"the tick enqueued {enqueued} passes, expected {expected}")
    runs = SyncRun.objects.filter(environment=env, trigger="schedule", started_at__gte=began)
    wait_until(
        lambda: runs.exclude(outcome=Outcome.RUNNING).count() >= expected,
        timeout=3600,
        every=0.5,
        what=f"{expected} passes",
    )
    last = runs.aggregate(last=Max("finished_at"))["last"]
    cpu_sim = cpu_seconds(pid=sim.proc.pid) - cpu_before[0]
    cpu_cluster = cpu_seconds(group=cluster.proc.pid) - cpu_before[1]
    totals = runs.aggregate(requests=Sum("requests"))
    spans = [(r.finished_at - r.started_at).total_seconds() for r in runs.only("started_at", "finished_at")]
    deferred = sum(
        str(result).startswith("deferred")
        for task in Task.objects.filter(
            func__in=("synccore.tasks.run_pass", "synccore.tasks.run_passes"), started__gte=began
        )
        for result in (task.result if isinstance(task.result, list) else [task.result])
    )
    outcomes = {
        outcome: runs.filter(outcome=outcome).count() for outcome in runs.values_list("outcome", flat=True)
    }
    env.set_state(SynchronizerState.STOPPED)
    return {
        "seconds": (last - began).total_seconds(),
        "outcomes": outcomes,
        "workers_used": runs.values("worker").distinct().count(),
        "requests_per_pass": (totals["requests"] or 0) / expected,
        "mean_pass_s": sum(spans) / len(spans),
        "deferred": deferred,
        "cpu_s_simulator": cpu_sim,
        "cpu_s_cluster": cpu_cluster,
    }


def measure(args: argparse.Namespace, workers: int) -> dict:
    threads = {"PASS_THREADS": str(args.threads)} if args.threads else {}
    mailboxes = [f"user{i:04d}@contoso.example" for i in range(args.users)]
    sim = SimProcess(mailboxes, 0)  # no latency while the data is set up
    cluster = None
    try:
        with fresh_database(args.database) as database_url:
            configure_environment(database_url, Q_WORKERS=str(workers), **threads)
            django_setup()
            from synccore.runtime import config

            result_threads = config.pass_threads()
            env = setup(sim, mailboxes, args.contacts, args.activities)
            cluster = Managed("qcluster", log_name=f"bench-scale-{workers}")
            wait_until(lambda: cluster_ready(workers), timeout=120, every=0.5, what="the cluster")
            sim.call("POST", "latency", {"ms": args.latency_ms})
            result = one_tick(env, 2 * args.users, sim, cluster)
            cluster.stop()
            cluster = None
            from django import db

            db.connections.close_all()
    finally:
        if cluster is not None:
            cluster.stop()
        sim.stop()
    result["users_per_min"] = args.users / (result["seconds"] / 60)
    result["threads"] = result_threads
    report(args, workers, result)
    return result


def measure_idle(args: argparse.Namespace, worker_counts: tuple[int, ...] = (1, 4)) -> dict[int, dict]:
    """--idle: every user's first passes once (a cluster of the largest worker count, no latency),
    then one tick of idle passes per worker count, each by a cluster of that many workers started
    for it, on the same database and mailboxes (an idle tick changes nothing the next one sees)."""
    threads = {"PASS_THREADS": str(args.threads)} if args.threads else {}
    mailboxes = [f"user{i:04d}@contoso.example" for i in range(args.users)]
    sim = SimProcess(mailboxes, 0)
    results: dict[int, dict] = {}
    cluster = None
    try:
        with fresh_database(args.database) as database_url:
            configure_environment(database_url, **threads)
            django_setup()
            from synccore.runtime import config

            env = setup(sim, mailboxes, args.contacts, args.activities, outlook_events=False)
            most = max(worker_counts)
            cluster = Managed("qcluster", log_name="bench-scale-first", Q_WORKERS=str(most))
            wait_until(lambda: cluster_ready(most), timeout=120, every=0.5, what="the cluster")
            first = one_tick(env, 2 * args.users, sim, cluster)  # first passes, without latency
            print(f"first passes of {args.users} users ({most} workers, no latency) in {first['seconds']:.1f} s", flush=True)
            cluster.stop()
            sim.call("POST", "latency", {"ms": args.latency_ms})
            for workers in worker_counts:
                cluster = Managed("qcluster", log_name=f"bench-scale-{workers}", Q_WORKERS=str(workers))
                wait_until(lambda: cluster_ready(workers), timeout=120, every=0.5, what="the cluster")  # noqa: B023
                result = one_tick(env, 2 * args.users, sim, cluster)
                cluster.stop()
                cluster = None
                result["users_per_min"] = args.users / (result["seconds"] / 60)
                result["threads"] = config.pass_threads()
                report(args, workers, result)
                results[workers] = result
            from django import db

            db.connections.close_all()
    finally:
        if cluster is not None:
            cluster.stop()
        sim.stop()
    return results


def report(args: argparse.Namespace, workers: int, result: dict) -> None:
    print(
        f"{workers} worker(s) x {result['threads']} thread(s): {args.users} users in {result['seconds']:.1f} s = "
        f"{result['users_per_min']:.1f} users/min; outcomes {result['outcomes']}; "
        f"{result['workers_used']} worker process(es) ran passes; {result['requests_per_pass']:.1f} requests "
        f"and {result['mean_pass_s']:.2f} s per pass on average; {result['deferred']} deferred (lease taken); "
        f"CPU: simulator {result['cpu_s_simulator']:.1f} s, cluster {result['cpu_s_cluster']:.1f} s",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, help="sync users (default 200; 2,000 with --idle)")
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--contacts", type=int, help="synchronized contacts every user receives (20; 0 with --idle)")
    parser.add_argument("--activities", type=int, help="CRM activities organised by each user (2; 0 with --idle)")
    parser.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--idle", action="store_true", help="measure a tick of idle passes (after the first ones)")
    parser.add_argument("--threads", type=int, help="passes at once per worker (default: the runtime's PASS_THREADS)")
    parser.add_argument("--measure", type=int, help=argparse.SUPPRESS)  # one worker count, in this process
    args = parser.parse_args()
    if args.users is None:
        args.users = 2000 if args.idle else 200
    if args.contacts is None:
        args.contacts = 0 if args.idle else 20
    if args.activities is None:
        args.activities = 0 if args.idle else 2
    if args.measure:
        # --idle in one process: its first passes, then the idle tick, by this many workers.
        result = measure_idle(args, (args.measure,))[args.measure] if args.idle else measure(args, args.measure)
        print(json.dumps(result))
        return

    # Each worker count in a process of its own: Django's settings (the database) are per process.
    def run(workers: int) -> dict:
        out = subprocess.run(
            [sys.executable, __file__, *sys.argv[1:], "--measure", str(workers)],
            stdout=subprocess.PIPE,
            text=True,
            check=True,
        )
        lines = out.stdout.strip().splitlines()
        print("\n".join(lines[:-1]))
        return json.loads(lines[-1])

    if args.idle:
        both = measure_idle(args)
        one, four = both[1], both[4]
    else:
        one = run(1)
        four = run(4)
    result = {
        "users": args.users,
        "idle": args.idle,
        "latency_ms": args.latency_ms,
        "database": args.database,
        "threads_per_worker": one["threads"],
        "contacts_per_user": args.contacts,
        "activities_per_user": args.activities,
        "seconds_1_worker": round(one["seconds"], 1),
        "seconds_4_workers": round(four["seconds"], 1),
        # Why the speedup is what it is: a pass waits on the network for requests × latency; the
        # rest is CPU (worker, database, simulator), which more workers share, not multiply.
        "requests_per_pass": round(one["requests_per_pass"], 1),
        "mean_pass_s_1_worker": round(one["mean_pass_s"], 3),
        "mean_pass_s_4_workers": round(four["mean_pass_s"], 3),
        "cluster_cpu_ms_per_pass": round(one["cpu_s_cluster"] / (2 * args.users) * 1000, 1),
        "simulator_cpu_ms_per_pass": round(one["cpu_s_simulator"] / (2 * args.users) * 1000, 1),
        "deferred_4_workers": four["deferred"],
        "users_per_min_1_worker": round(one["users_per_min"], 1),
        "users_per_min_4_workers": round(four["users_per_min"], 1),
        "speedup": round(four["users_per_min"] / one["users_per_min"], 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
