"""Calendar sync benchmark: N sync users × M events each (a third recurring, a third meetings
among the users), initial pass and idle pass over every user, against exchange_sim running as its
own process with simulated latency — compared with a naive baseline in the same run that writes
the same events with one request per event — over EWS and over Microsoft Graph.

    .venv/bin/python bench/calendar.py [--users 50] [--events 200] [--latency-ms 20]
                                       [--backends ews,graph] [--full] [--threads N]
                                       [--workers N]

The initial synchronization is every user's first pass plus one more round (meetings written by
later users land in earlier users' calendars and are read then); the idle pass is the round after.
Each measured step runs in fresh processes, so its peak RSS is the synchronizer's own. The sync
steps run the users' passes as the product's cluster runs them: its worker processes at once
(Q_WORKERS, 2 by default; ``--workers``), each taking every N-th user and running their passes as a
worker runs a task of them (`service.run_pass_batch`), at once on the runtime's PASS_THREADS threads
(``--threads``; ``--workers 1 --threads 1`` runs them one after the other). The clock starts when
every process has set itself up and stops when the last one ends; the product's CPU is the sum
over the processes. The last
line printed is one JSON object (pinned keys: requests, naive_requests, request_ratio, wall_s,
naive_wall_s, wall_ratio, idle_requests, peak_rss_mb; with --full also full_requests, full_wall_s,
full_updated: a full pass of every user after the idle one): the figures of the first backend measured
(EWS by default), and the same keys per backend under "backends". Each backend has mailboxes and a
database of its own; the naive baseline uses the same backend with batch size 1.

CPU, product and simulator apart (measured in the step process: its own getrusage, the
simulator's /proc/<pid>/stat): cpu_s, sim_cpu_s and per event cpu_ms_per_item,
sim_cpu_ms_per_item, the same with naive_ for the baseline; idle_cpu_s, idle_sim_cpu_s.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, and its name would shadow the
# standard library's calendar module (which http.cookiejar, requests and Django import): put it last.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH] + [str(_BENCH)]

import argparse
import json
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from _harness import (
    Meter,
    configure_backend,
    cpu_figures,
    cpu_line,
    fetch_token,
    naive_backend,
    parse_backends,
    peak_rss_mb,
    run_step,
    run_steps_at_once,
    start_simulator,
    step_django,
    step_params,
    step_ready,
    stop_simulator,
)

ZONE = "Europe/Berlin"


def worker(mode: str, **params: str) -> dict:
    return run_step(__file__, mode, **params)


def mailboxes(prefix: str, users: int) -> list[str]:
    return [f"{prefix}{i:02d}@contoso.example" for i in range(users)]


def plan(user: int, index: int, users: int, first_day, backend: str = "") -> dict:
    """Event ``index`` of user ``user``: single appointments, weekly series and meetings with two
    other users, spread over the next weeks in the working hours of one zone (``backend``: the
    same plan for every backend)."""
    kind = index % 3
    day = first_day + timedelta(days=1 + index % 60)
    # Two others (fewer when there are not enough users): never the organizer, never one twice.
    others = dict.fromkeys(o for o in ((user + 1) % users, (user + 7) % users) if o != user)
    start = datetime(day.year, day.month, day.day, 8 + index % 9, 0, tzinfo=ZoneInfo(ZONE))
    return {
        "subject": f"{['Visit', 'Weekly', 'Meeting'][kind]} {user}-{index}",
        "start": start,
        "end": start + timedelta(minutes=30 if index % 2 else 60),
        "recurrence": "FREQ=WEEKLY;COUNT=8" if kind == 1 else "",
        "invite": list(others) if kind == 2 else [],
    }


# --- Worker side (a fresh process per measurement) ---------------------------------------------


def run_worker(mode: str) -> None:
    params = step_params()
    step_django()
    from django.core.management import call_command

    if mode == "setup":
        call_command("migrate", verbosity=0)
        print(json.dumps(setup(params)))
    elif mode == "sync":
        threads = int(params.get("threads") or 0) or None
        part, parts = int(params.get("part") or 0), int(params.get("parts") or 1)
        print(json.dumps(sync_all(full=params.get("full") == "1", threads=threads, part=part, parts=parts)))
    elif mode == "naive":
        print(json.dumps(naive(params)))


def setup(params: dict) -> dict:
    from synccore.models import Activity, Attendee, Environment, SyncUser
    from tests.fixtures import factories as f

    users, events = int(params["users"]), int(params["events"])
    first_day = datetime.fromisoformat(params["first_day"]).date()
    env = Environment.objects.create(name="Bench")
    s = env.settings
    configure_backend(s, params["backend"], params)
    s.synchronize_activities, s.batch_size = True, 100
    # An initial load of thousands of meetings is what the meeting message limit (P4) holds back
    # until an administrator confirms: the bench measures the writes, so the limit is off.
    s.meeting_message_limit = 0
    s.save()
    employees = []
    for address in mailboxes(params["prefix"] + "u", users):
        employee = f.employee(env, address)
        SyncUser.objects.create(environment=env, employee=employee, mailbox_email=address)
        employees.append(employee)
    activities = []
    for user in range(users):
        for index in range(events):
            p = plan(user, index, users, first_day, params["backend"])
            activities.append(
                Activity(
                    environment=env,
                    subject=p["subject"],
                    start=p["start"],
                    end=p["end"],
                    time_zone=ZONE,
                    recurrence=p["recurrence"],
                    organizer=employees[user],
                    external_id=f"bench-{user}-{index}",
                )
            )
    Activity.objects.bulk_create(activities, batch_size=2000)
    by_key = {a.external_id: a for a in Activity.objects.filter(environment=env)}
    attendees = []
    for user in range(users):
        for index in range(events):
            invite = plan(user, index, users, first_day, params["backend"])["invite"]
            if not invite:
                continue
            activity = by_key[f"bench-{user}-{index}"]
            attendees.append(Attendee(activity=activity, email=employees[user].email, type="employee", meeting_organizer=True))
            attendees += [
                Attendee(activity=activity, email=employees[other].email, employee=employees[other], type="employee", invite=True)
                for other in invite
            ]
    Attendee.objects.bulk_create(attendees, batch_size=2000)
    return {"activities": len(activities), "attendees": len(attendees)}


def sync_all(full: bool = False, threads: int | None = None, part: int = 0, parts: int = 1) -> dict:
    """The calendar passes of every ``parts``-th user from ``part`` on, as one worker process runs
    them: the runtime's own `run_pass_batch`, its passes at once on ``threads`` threads (default:
    the runtime's). The other parts run in processes of their own at the same time."""
    from django.db.models import Max

    from synccore.models import SyncKind, SyncRun, SyncUser, Trigger
    from synccore.runtime import config, service

    fetch_token(SyncUser.objects.select_related("environment__settings").first().environment.settings)
    threads = threads or config.pass_threads()
    users = list(SyncUser.objects.order_by("mailbox_email").values_list("pk", flat=True))[part::parts]
    last_run = SyncRun.objects.aggregate(last=Max("pk"))["last"] or 0
    step_ready()
    meter = Meter()
    results = service.run_pass_batch(users, SyncKind.CALENDAR, Trigger.MANUAL, full, threads=threads)
    measured = meter.stop()
    ended_at = time.time()
    totals = {"requests": 0, "created": 0, "updated": 0, "deleted": 0, "failed": 0, "skipped": 0}
    runs = list(SyncRun.objects.filter(pk__gt=last_run, sync_user_id__in=users))
    for run in runs:
        for name in totals:
            totals[name] += getattr(run, name)
    # A pass that never made a run row (deferred, failed before it began) shows as its result.
    outcomes = {run.outcome for run in runs} | {r for r in results if r not in {run.outcome for run in runs}}
    return {**totals, **measured, "outcomes": sorted(outcomes), "peak_rss_mb": peak_rss_mb(), "threads": threads,
            "ended_at": ended_at}  # fmt: skip


def sync_round(workers: int, **params: str) -> dict:
    """Every user's calendar pass, in ``workers`` processes at once (as a cluster's worker
    processes run them), each taking every ``workers``-th user: the parts' counts summed, the
    wall time from the start until the last part ended, the simulator's CPU over that time."""
    step = run_steps_at_once(__file__, "sync", [{**params, "part": str(n), "parts": str(workers)} for n in range(workers)])
    answers = step["parts"]
    total = {key: sum(a[key] for a in answers) for key in ("requests", "created", "updated", "deleted", "failed",
                                                           "skipped", "cpu_s")}  # fmt: skip
    return {
        **total,
        "wall_s": step["wall_s"],
        "sim_cpu_s": step["sim_cpu_s"],
        "outcomes": sorted({o for a in answers for o in a["outcomes"]}),
        "peak_rss_mb": max(a["peak_rss_mb"] for a in answers),
        "threads": answers[0]["threads"],
        "workers": workers,
    }


def naive(params: dict) -> dict:
    """One request per event: the same events, written one by one, meetings with invitations."""
    from synccore.mailbox.base import Attendee, CalendarEvent

    users, events = int(params["users"]), int(params["events"])
    first_day = datetime.fromisoformat(params["first_day"]).date()
    backend = naive_backend(params["backend"], params)
    boxes = mailboxes(params["prefix"] + "n", users)
    meter, before = Meter(), backend.requests
    for user, mailbox in enumerate(boxes):
        folder = backend.ensure_calendar_folder(mailbox)
        for index in range(events):
            p = plan(user, index, users, first_day, params["backend"])
            event = CalendarEvent(
                subject=p["subject"],
                start=p["start"].astimezone(UTC),
                end=p["end"].astimezone(UTC),
                time_zone=ZONE,
                recurrence=p["recurrence"],
                reminder_minutes=15,
                attendees=[Attendee(email=boxes[other]) for other in p["invite"]],
            )
            (result,) = backend.create_events(mailbox, folder, [event], send_invitations=bool(p["invite"]))
            if not result.ok:
                raise SystemExit(f"naive create failed: {result.error}")
    return {**meter.stop(), "requests": backend.requests - before}


# --- Driver -------------------------------------------------------------------------------------


def default_workers() -> int:
    """The cluster's worker processes as the product is configured (Q_WORKERS; 2 by default)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from syncadmin import settings

    return int(settings.Q_CLUSTER["workers"])


def measure(backend: str, args, endpoints: dict[str, str], first_day: str) -> dict:
    """One backend's figures: its own database, its own mailboxes."""
    workdir = tempfile.mkdtemp(prefix=f"bench-calendar-{backend}-")
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir}/bench.sqlite3"
    params = {**endpoints, "backend": backend, "prefix": f"{backend}-", "users": str(args.users),
              "events": str(args.events), "first_day": first_day}  # fmt: skip
    worker("setup", **params)
    sync = {"threads": str(args.threads or "")}
    workers = args.workers or default_workers()
    first = sync_round(workers, **sync)
    # Meetings written by other users' first passes land in their invitees' calendars: the
    # initial synchronization ends with the round that reads those invitations.
    settle = sync_round(workers, **sync)
    idle = sync_round(workers, **sync)
    full = sync_round(workers, **{**sync, "full": "1"}) if args.full else None
    naive_run = worker("naive", **params)
    for run in (first, settle, idle, *([full] if full else [])):
        if run["failed"] or run["outcomes"] != ["success"]:
            raise SystemExit(f"{backend}: a pass did not succeed: {run}")
    requests = first["requests"] + settle["requests"]
    wall = first["wall_s"] + settle["wall_s"]
    initial = {key: first[key] + settle[key] for key in ("wall_s", "cpu_s", "sim_cpu_s")}
    events = args.users * args.events
    print(f"{backend} passes at once: {workers} worker process(es) x {first['threads']} threads "
          "(1 x 1 runs them one after the other)")  # fmt: skip
    print(
        f"{backend} initial sync: {args.users} users, {first['created']} events created, "
        f"{first['requests']} + {settle['requests']} requests (first passes + invitations read), {wall:.1f} s"
    )
    print(f"{backend} idle pass: {idle['requests']} requests ({idle['requests'] / args.users:.1f} per user), "
          f"{idle['wall_s']:.1f} s")  # fmt: skip
    if full:
        print(f"{backend} full pass: {full['requests']} requests, {full['updated']} events written again, "
              f"{full['wall_s']:.1f} s")  # fmt: skip
    print(f"{backend} naive: {naive_run['requests']} requests, {naive_run['wall_s']:.1f} s")
    print(cpu_line(f"{backend} initial sync", initial, events))
    print(cpu_line(f"{backend} naive", naive_run, events))
    extra = {"full_requests": full["requests"], "full_wall_s": round(full["wall_s"], 2), "full_updated": full["updated"]} if full else {}
    return {
        **extra,
        **cpu_figures(initial, events),
        **cpu_figures(naive_run, events, "naive_"),
        "idle_cpu_s": round(idle["cpu_s"], 2),
        "idle_sim_cpu_s": round(idle["sim_cpu_s"], 2),
        "threads": first["threads"],
        "workers": workers,
        "requests": requests,
        "naive_requests": naive_run["requests"],
        "request_ratio": round(naive_run["requests"] / max(requests, 1), 1),
        "wall_s": round(wall, 2),
        "naive_wall_s": round(naive_run["wall_s"], 2),
        "wall_ratio": round(naive_run["wall_s"] / max(wall, 1e-9), 1),
        "idle_requests": idle["requests"],
        "idle_requests_per_user": round(idle["requests"] / args.users, 2),
        "idle_wall_s": round(idle["wall_s"], 2),
        "first_round_requests": first["requests"],
        "peak_rss_mb": round(max(first["peak_rss_mb"], settle["peak_rss_mb"]), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument(
        "--backends", default="ews,graph", help="comma-separated: ews, graph, domino (default ews,graph)"
    )
    parser.add_argument("--full", action="store_true", help="also time a full pass of every user (Sync all)")
    parser.add_argument(
        "--threads", type=int, help="passes at once in the sync steps (default: the runtime's PASS_THREADS; 1: serial)"
    )
    parser.add_argument(
        "--workers", type=int, help="worker processes in the sync steps (default: the cluster's Q_WORKERS, 2)"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args.worker)
        return
    backends = parse_backends(parser, args.backends, allowed=("ews", "graph", "domino"))

    first_day = datetime.now(UTC).date().isoformat()
    boxes = [box for b in backends for kind in ("u", "n") for box in mailboxes(f"{b}-{kind}", args.users)]
    sim, endpoints = start_simulator(args.latency_ms, boxes)
    try:
        figures = {backend: measure(backend, args, endpoints, first_day) for backend in backends}
    finally:
        stop_simulator(sim)
    result = {
        "users": args.users,
        "events_per_user": args.events,
        "latency_ms": args.latency_ms,
        "backend": backends[0],
        **figures[backends[0]],
        "backends": figures,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
