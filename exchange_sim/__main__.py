"""python -m exchange_sim [--host 127.0.0.1] [--port 8765] [--mailbox ADDRESS ...]
[--service-account USER:PASSWORD] [--auth none|basic|ntlm] [--latency-ms N] [--state FILE]
[--graph-port N] [--app CLIENT_ID:SECRET[:MAILBOX,...] ...] [--tls-dir DIR] [--no-graph]

Prints ``EWS endpoint: http://HOST:PORT/EWS/Exchange.asmx``, then (unless --no-graph)
``Graph endpoint: https://HOST:PORT/v1.0``, ``Domino endpoint: http://HOST:PORT/api``, ``Token endpoint: https://HOST:PORT/contoso/oauth2/v2.0/token``
and ``CA bundle: PATH``."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from exchange_sim.demo import DEMO_MAILBOXES, add_demo_mailboxes, seed_demo_content
from exchange_sim.graph.auth import DEMO_APP, DEMO_TENANT
from exchange_sim.simulator import DEMO_SERVICE_ACCOUNT, Simulator


def demo_credentials() -> str:
    """What --help says about logging in to the demo organisation."""
    mailboxes = ", ".join(DEMO_MAILBOXES)
    return (
        "demo credentials (without --mailbox / --state / --service-account / --app):\n"
        f"  service account (EWS, --auth basic or ntlm): {DEMO_SERVICE_ACCOUNT[0]} / {DEMO_SERVICE_ACCOUNT[1]}\n"
        f"  Graph app (client id / secret), tenant {DEMO_TENANT}: {DEMO_APP[0]} / {DEMO_APP[1]}\n"
        f"  mailboxes: {mailboxes}\n"
        "  each mailbox's own password: its name before the @ plus -password (alice-password)"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m exchange_sim",
        description="A loopback Exchange simulator: EWS over HTTP, Microsoft Graph over HTTPS.",
        epilog=demo_credentials(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
    parser.add_argument(
        "--graph-port",
        type=int,
        default=None,
        help="HTTPS port of Graph and the token endpoint (default: --port + 1, or a free port with --port 0)",
    )
    parser.add_argument(
        "--app",
        action="append",
        default=[],
        metavar="CLIENT_ID:SECRET[:MAILBOX,...]",
        help="repeatable Graph app registration (optionally restricted to some mailboxes); "
        "default: demo-client:demo-secret with access to every mailbox",
    )
    parser.add_argument("--tls-dir", metavar="DIR", help="keep the test CA here (reused by later runs)")
    parser.add_argument("--no-graph", action="store_true", help="serve EWS only")
    parser.add_argument("--verbose", action="store_true")
    return parser.parse_args(argv)


def parse_app(spec: str) -> tuple[str, str, list[str] | None]:
    client_id, _, rest = spec.partition(":")
    secret, _, mailboxes = rest.partition(":")
    if not client_id or not secret:
        raise SystemExit(f"--app wants CLIENT_ID:SECRET[:MAILBOX,...], got {spec!r}")
    return client_id, secret, [m for m in mailboxes.split(",") if m] if mailboxes else None


def build(args: argparse.Namespace) -> Simulator:
    user, _, password = args.service_account.partition(":")
    graph_port = args.graph_port if args.graph_port is not None else (args.port + 1 if args.port else 0)
    sim = Simulator(
        auth=args.auth,
        service_account=(user, password),
        host=args.host,
        port=args.port,
        latency_ms=args.latency_ms,
        state_file=args.state,
        graph=not args.no_graph,
        graph_port=graph_port,
        apps=[parse_app(spec) for spec in args.app] or None,
        tls_dir=args.tls_dir,
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
    if sim.graph is not None:
        sim.graph.start()  # in its own thread; EWS is served in this one
    print(f"EWS endpoint: {sim.url}", flush=True)
    if sim.graph is not None:
        print(f"Graph endpoint: {sim.graph_url}", flush=True)
        print(f"Token endpoint: {sim.token_url}", flush=True)
        print(f"CA bundle: {sim.ca_bundle}", flush=True)
    if sim.domino is not None:
        print(f"Domino endpoint: {sim.domino_url}", flush=True)
    try:
        sim.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
