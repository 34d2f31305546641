"""run_push_listener: hold EWS streaming subscriptions and enqueue calendar passes (K14)."""

from __future__ import annotations

import signal
import threading

from django.core.management.base import BaseCommand, CommandParser

from synccore.runtime.push.ews import run_listener


class Command(BaseCommand):
    help = "Listen for Exchange calendar changes of running environments with push on (runs until stopped)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--poll", type=float, default=5.0, help="Seconds between checks for started/stopped environments"
        )

    def handle(self, *args, **options) -> None:
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        self.stdout.write("Push listener running; Ctrl-C to stop.")
        run_listener(stop, poll_s=options["poll"])
