"""python -m exchange_sim [--host 127.0.0.1] [--port 8765] [--mailbox ADDRESS ...]
[--service-account USER:PASSWORD] [--auth none|basic|ntlm] [--latency-ms N] [--state FILE]"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from exchange_sim.demo import add_demo_mailboxes, seed_demo_content
from exchange_sim.simulator import DEMO_SERVICE_ACCOUNT, Simulator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m exchange_sim", description="A loopback Exchange (EWS) simulator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--mailbox", action="append", default=[], metavar="ADDRESS", help="repeatable; default: demo organisation")
    parser.add_argument("--service-account", default=":".join(DEMO_SERVICE_ACCOUNT), metavar="USER:PASSWORD")
    parser.add_argument("--auth", choices=("none", "basic", "ntlm"), default="basic")
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--state", metavar="FILE", help="JSON snapshot loaded at start and written at exit")
    parser.add_argument(
        "--users",
        metavar="FILE",
        help='JSON list of {"name", "password", "mailbox", "service_account"} who may log in',
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND[:TIMES]",
        help="arm a fault at start, e.g. server_busy:3 or http_503 (TIMES 0 = until cleared via /_sim/faults/clear)",
    )
    parser.add_argument("--verbose", action="store_true")
    return parser.parse_args(argv)


def build(args: argparse.Namespace) -> Simulator:
    user, _, password = args.service_account.partition(":")
    sim = Simulator(
        auth=args.auth,
        service_account=(user, password),
        host=args.host,
        port=args.port,
        latency_ms=args.latency_ms,
        state_file=args.state,
    )
    if args.state and os.path.exists(args.state):
        sim.store.load(args.state)
        for mailbox in sim.store.mailboxes():
            sim.add_user(mailbox.address, f"{mailbox.address.split('@')[0]}-password", mailbox=mailbox.address)
    elif args.mailbox:
        for address in args.mailbox:
            sim.add_mailbox(address, password=f"{address.split('@')[0]}-password")
    else:
        add_demo_mailboxes(sim)
        seed_demo_content(sim)
    if args.users:
        sim.load_users(args.users)
    for spec in args.fault:
        kind, _, times = spec.partition(":")
        count = int(times) if times else 1
        sim.faults.arm(kind, count or None)
    return sim


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    sim = build(args)
    # SIGTERM ends the process like Ctrl-C, so the --state snapshot is written
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    sim.bind()
    print(f"EWS endpoint: {sim.url}", flush=True)
    try:
        sim.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
