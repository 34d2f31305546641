"""E-mail filing benchmark (issue 19): a mailbox whose Inbox holds 20,000 messages, 500 of them marked
with the filing category; the first e-mail pass (it reads every message's headers and files the 500)
and an idle pass after it, against exchange_sim running as its own process with simulated latency,
over EWS and over Microsoft Graph.

    .venv/bin/python bench/email.py [--messages 20000] [--marked 500] [--latency-ms 20] [--backends ews,graph]

Each measured pass runs in a fresh process, so its peak RSS is the synchronizer's own. The last line
printed is one JSON object: requests, wall_s, idle_requests, peak_rss_mb (the first backend measured,
EWS by default) and the same keys per backend under "backends".

CPU, product and simulator apart (measured in the step process: its own getrusage, the
simulator's /proc/<pid>/stat): cpu_s, sim_cpu_s and per message read cpu_ms_per_item,
sim_cpu_ms_per_item; idle_cpu_s, idle_sim_cpu_s.
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
from urllib.parse import quote

from _harness import (
    Meter,
    SimProcess,
    configure_backend,
    cpu_figures,
    cpu_line,
    fetch_token,
    parse_backends,
    peak_rss_mb,
    run_step,
    step_django,
    step_params,
)

SENDER = "ann@fabrikam.example"


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
    elif mode == "file":
        from synccore.models import SyncUser
        from synccore.sync.email import run_email_pass

        user = SyncUser.objects.select_related("environment__settings").get(mailbox_email=params["mailbox"])
        fetch_token(user.environment.settings)
        meter = Meter()
        run = run_email_pass(user.pk)
        print(json.dumps({**meter.stop(), "requests": run.requests, "created": run.created, "outcome": run.outcome,
                          "error": run.error, "peak_rss_mb": peak_rss_mb()}))  # fmt: skip


def setup(params: dict) -> dict:
    from synccore.models import Environment, SyncUser
    from tests.fixtures import factories as f

    env = Environment.objects.create(name="Bench")
    s = env.settings
    configure_backend(s, params["backend"], params)
    s.file_emails, s.batch_size = True, 100
    s.save()
    f.contact(env, first_name="Ann", last_name="Lee", email1=SENDER)
    SyncUser.objects.create(environment=env, employee=f.employee(env, params["mailbox"]), mailbox_email=params["mailbox"])
    return {"ok": True}


# --- Driver -------------------------------------------------------------------------------------


def fill(sim: SimProcess, mailbox: str, messages: int, marked: int) -> None:
    """The mailbox's Inbox: the unmarked messages, then the marked ones, in chunks of 1,000."""
    path = f"mailboxes/{quote(mailbox)}/messages"
    for label, count, categories in (("Newsletter", messages - marked, []), ("Offer", marked, ["CRM"])):
        for start in range(0, count, 1000):
            sim.call("POST", path, {"folder": "inbox", "from": SENDER, "to": [mailbox], "subject": f"{label} {start}",
                                    "body": "Dear Alice,\n\nthe offer, as discussed.", "categories": categories,
                                    "copies": min(1000, count - start)})  # fmt: skip


def measure(backend: str, args, sim: SimProcess) -> dict:
    mailbox = f"mail-{backend}@contoso.example"
    workdir = tempfile.mkdtemp(prefix=f"bench-email-{backend}-")
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir}/bench.sqlite3"
    worker("setup", **sim.endpoints, backend=backend, mailbox=mailbox)
    fill(sim, mailbox, args.messages, args.marked)
    first = worker("file", mailbox=mailbox)
    idle = worker("file", mailbox=mailbox)
    if first["outcome"] != "success" or first["created"] != args.marked:
        raise SystemExit(f"{backend}: the first pass filed {first['created']} ({first['outcome']}): {first['error']}")
    print(f"{backend} first pass: {first['created']} filed of {args.messages}, {first['requests']} requests, "
          f"{first['wall_s']:.1f} s")  # fmt: skip
    print(f"{backend} idle pass: {idle['requests']} requests, {idle['wall_s']:.2f} s")
    print(cpu_line(f"{backend} first pass (per message read)", first, args.messages))
    return {
        **cpu_figures(first, args.messages),
        "idle_cpu_s": round(idle["cpu_s"], 3),
        "idle_sim_cpu_s": round(idle["sim_cpu_s"], 3),
        "requests": first["requests"],
        "wall_s": round(first["wall_s"], 2),
        "idle_requests": idle["requests"],
        "idle_wall_s": round(idle["wall_s"], 3),
        "peak_rss_mb": round(first["peak_rss_mb"], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--marked", type=int, default=500)
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--backends", default="ews,graph", help="comma-separated: ews, graph (default both)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args.worker)
        return
    backends = parse_backends(parser, args.backends)
    sim = SimProcess([f"mail-{b}@contoso.example" for b in backends], args.latency_ms)
    try:
        figures = {backend: measure(backend, args, sim) for backend in backends}
    finally:
        sim.stop()
    first = figures[backends[0]]
    result = {"messages": args.messages, "marked": args.marked, "latency_ms": args.latency_ms, **first, "backends": figures}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
