"""demo_banner: `make run`'s last word — once the console and the simulator listen, a short block
with where to go and how to log in, printed after the start-up noise instead of inside it.

It then stays up doing nothing (honcho stops every process when one ends) until Ctrl-C.
"""

from __future__ import annotations

import signal
import socket
import time
from urllib.parse import urlsplit

from django.core.management.base import BaseCommand, CommandParser

from synccore.demo import DEMO_DOMAIN, DEMO_USERS, GRAPH_APP, SERVICE_ACCOUNT, admin_login


def listening(url: str, timeout_s: float = 0.5) -> bool:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", port), timeout=timeout_s):
            return True
    except OSError:
        return False


def banner(console: str, username: str, password: str, ews: str, graph: str, token: str) -> list[str]:
    """The block's lines. ``Login: USERNAME / PASSWORD`` is a pinned line."""
    mailboxes = ", ".join(f"{name}@{DEMO_DOMAIN}" for name, _ in DEMO_USERS)
    rule = "─" * 72
    lines = [
        rule,
        f"Console: {console}",
        f"Login: {username} / {password}",
        "Exchange simulator (demo data, loopback only):",
        f"  EWS endpoint:   {ews}",
        f"    service account {SERVICE_ACCOUNT[0]} / {SERVICE_ACCOUNT[1]}",
    ]
    if graph:
        lines += [
            f"  Graph endpoint: {graph}",
            f"  Token endpoint: {token}",
            f"    app (client id / secret) {GRAPH_APP[0]} / {GRAPH_APP[1]}",
        ]
    lines += [
        f"  Mailboxes: {mailboxes}",
        "    each one's own password: its name and -password (alice-password)",
        "Ctrl-C stops everything.",
        rule,
    ]
    return lines


class Command(BaseCommand):
    help = "Wait until the console and the simulator listen, then print where to go and how to log in."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--console", default="http://127.0.0.1:8000/", help="The console's URL")
        parser.add_argument("--ews", default="http://127.0.0.1:8765/EWS/Exchange.asmx")
        parser.add_argument("--graph", default="https://127.0.0.1:8766/v1.0", help="Empty: no Graph")
        parser.add_argument("--token", default="https://127.0.0.1:8766/contoso/oauth2/v2.0/token")
        parser.add_argument("--wait", type=float, default=120.0, help="Seconds to wait for the listeners")
        parser.add_argument("--once", action="store_true", help="Print and end (do not stay up)")

    def handle(self, *args, **options) -> None:
        urls = [options["console"], options["ews"]] + ([options["graph"]] if options["graph"] else [])
        deadline = time.monotonic() + options["wait"]
        waiting = [url for url in urls if not listening(url)]
        while waiting and time.monotonic() < deadline:
            time.sleep(0.5)
            waiting = [url for url in waiting if not listening(url)]
        username, password = admin_login()
        lines = banner(
            options["console"], username, password, options["ews"], options["graph"], options["token"]
        )
        if waiting:
            lines.insert(1, f"Not listening yet: {', '.join(waiting)} (see the lines above).")
        self.stdout.write("\n".join(lines))
        self.stdout.flush()
        if options["once"]:
            return
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
