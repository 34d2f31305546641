"""Contact sync benchmark: initial sync of N contacts into one mailbox, then an idle pass,
against exchange_sim running as its own process with simulated latency, compared with a naive
baseline in the same run (one request per contact) — over EWS and over Microsoft Graph.

    .venv/bin/python bench/contacts.py [--contacts 5000] [--small 1000] [--latency-ms 20]
                                       [--backends ews,graph]

Each measured pass runs in a fresh process, so its peak RSS is the synchronizer's own. The last
line printed is one JSON object (pinned keys: requests, naive_requests, request_ratio, wall_s,
naive_wall_s, wall_ratio, idle_requests, peak_rss_mb, peak_rss_mb_small): the figures of the
first backend measured (EWS by default), and the same keys per backend under "backends". Over
Graph a $batch carries at most 20 writes, so its request ratio cannot exceed about 20.

CPU, product and simulator apart (measured in the step process: its own getrusage, the
simulator's /proc/<pid>/stat): cpu_s, sim_cpu_s and per contact cpu_ms_per_item,
sim_cpu_ms_per_item, the same with naive_ for the baseline; idle_cpu_s, idle_sim_cpu_s.
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
import os
import tempfile

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
    start_simulator,
    step_django,
    step_params,
    stop_simulator,
)


def worker(mode: str, **params: str) -> dict:
    return run_step(__file__, mode, **params)


# --- Worker side (a fresh process per measurement) ---------------------------------------------


def run_worker(mode: str) -> None:
    params = step_params()
    step_django()
    from django.core.management import call_command

    if mode == "setup":
        call_command("migrate", verbosity=0)
        print(json.dumps(setup(params)))
    elif mode == "sync":
        from synccore.models import SyncUser
        from synccore.sync.contacts import run_contact_pass

        user = SyncUser.objects.select_related("environment__settings").get(mailbox_email=params["mailbox"])
        fetch_token(user.environment.settings)
        meter = Meter()
        run = run_contact_pass(user.pk)
        print(json.dumps({**meter.stop(), "requests": run.requests, "created": run.created, "outcome": run.outcome,
                          "error": run.error, "peak_rss_mb": peak_rss_mb()}))
    elif mode == "naive":
        print(json.dumps(naive(params)))


def setup(params: dict) -> dict:
    from synccore.models import Contact, Environment, SyncUser
    from tests.fixtures import factories as f

    env = Environment.objects.create(name="Bench")
    s = env.settings
    configure_backend(s, params["backend"], params)
    s.synchronize_contacts, s.batch_size = True, 100
    s.save()
    counts = {}
    for mailbox, count in ((params["big"], int(params["contacts"])), (params["small"], int(params["small_count"]))):
        employee = f.employee(env, mailbox)
        SyncUser.objects.create(environment=env, employee=employee, mailbox_email=mailbox)
        counts[mailbox] = count
    # Each user sees only its own contacts (filter by rep), so the two runs are independent.
    s.filter_by_rep = True
    s.save()
    for mailbox, count in counts.items():
        rep = SyncUser.objects.get(mailbox_email=mailbox).employee
        Contact.objects.bulk_create(
            Contact(environment=env, first_name="Bench", last_name=f"Contact {i:05d}", email1=f"c{i}@example.com",
                    business_phone="+31 20 555 0000", job_title="Buyer", rep=rep)
            for i in range(count)
        )
    return {"ok": True}


def naive(params: dict) -> dict:
    """One request per contact: the same backend, batch size 1, every contact written each run."""
    from synccore.mailbox.base import ContactCard

    backend = naive_backend(params["backend"], params)
    mailbox = params["mailbox"]
    folder = backend.ensure_contact_folder(mailbox, "")
    meter, before = Meter(), backend.requests
    for i in range(int(params["count"])):
        card = ContactCard(given_name="Bench", surname=f"Contact {i:05d}", email_address_1=f"c{i}@example.com",
                           business_phone="+31 20 555 0000", job_title="Buyer", display_name=f"Bench Contact {i:05d}")
        backend.create_contacts(mailbox, folder, [card])
    return {**meter.stop(), "requests": backend.requests - before}


# --- Driver -------------------------------------------------------------------------------------


def measure(backend: str, args, endpoints: dict[str, str]) -> dict:
    """One backend's figures: its own database, its own mailboxes."""
    big, small, naive_box = (f"{name}-{backend}@contoso.example" for name in ("big", "small", "naive"))
    workdir = tempfile.mkdtemp(prefix=f"bench-contacts-{backend}-")
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir}/bench.sqlite3"
    worker("setup", **endpoints, backend=backend, big=big, small=small, contacts=str(args.contacts),
           small_count=str(args.small))  # fmt: skip
    small_run = worker("sync", mailbox=small)
    initial = worker("sync", mailbox=big)
    idle = worker("sync", mailbox=big)
    naive_run = worker("naive", **endpoints, backend=backend, mailbox=naive_box, count=str(args.contacts))
    if initial["outcome"] != "success":
        raise SystemExit(f"{backend}: the initial pass did not succeed: {initial['error']}")
    print(f"{backend} initial pass: {initial['created']} contacts, {initial['requests']} requests, {initial['wall_s']:.1f} s")
    print(f"{backend} idle pass: {idle['requests']} requests, {idle['wall_s']:.2f} s")
    print(f"{backend} naive: {naive_run['requests']} requests, {naive_run['wall_s']:.1f} s")
    print(cpu_line(f"{backend} initial pass", initial, args.contacts))
    print(cpu_line(f"{backend} naive", naive_run, args.contacts))
    return {
        **cpu_figures(initial, args.contacts),
        **cpu_figures(naive_run, args.contacts, "naive_"),
        "idle_cpu_s": round(idle["cpu_s"], 3),
        "idle_sim_cpu_s": round(idle["sim_cpu_s"], 3),
        "requests": initial["requests"],
        "naive_requests": naive_run["requests"],
        "request_ratio": round(naive_run["requests"] / max(initial["requests"], 1), 1),
        "wall_s": round(initial["wall_s"], 2),
        "naive_wall_s": round(naive_run["wall_s"], 2),
        "wall_ratio": round(naive_run["wall_s"] / max(initial["wall_s"], 1e-9), 1),
        "idle_requests": idle["requests"],
        "idle_wall_s": round(idle["wall_s"], 3),
        "peak_rss_mb": round(initial["peak_rss_mb"], 1),
        "peak_rss_mb_small": round(small_run["peak_rss_mb"], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=5000)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--backends", default="ews,graph", help="comma-separated: ews, graph (default both)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args.worker)
        return
    backends = parse_backends(parser, args.backends)

    mailboxes = [f"{n}-{b}@contoso.example" for b in backends for n in ("big", "small", "naive")]
    sim, endpoints = start_simulator(args.latency_ms, mailboxes)
    try:
        figures = {backend: measure(backend, args, endpoints) for backend in backends}
    finally:
        stop_simulator(sim)
    result = {"contacts": args.contacts, "latency_ms": args.latency_ms, **figures[backends[0]], "backends": figures}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
