"""sync_now: run synchronization passes in the foreground (pinned interface)."""

from __future__ import annotations

import json
import sys

from django.core.management.base import BaseCommand, CommandError, CommandParser

from synccore.runtime.service import sync_now_foreground
from synccore.sync.preview import preview_passes
from synccore.sync.service import BUSY, UnknownTarget


class Command(BaseCommand):
    help = "Run contact, calendar, task and/or e-mail filing passes now, in the foreground; ends with one line of JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--environment", required=True, help="The environment's name")
        parser.add_argument("--user", help="Only this sync user's mailbox (e-mail address)")
        parser.add_argument("--kind", choices=["contacts", "calendar", "tasks", "email", "all"], default="all")
        parser.add_argument("--full", action="store_true", help="Re-write every item (sync all)")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Preview: say what the passes would do, write nothing anywhere (P1)",
        )

    def handle(self, *args, **options) -> None:
        if options["dry_run"]:
            self._preview(options)
            return
        show_progress = sys.stderr.isatty()
        try:
            summary = sync_now_foreground(
                options["environment"],
                user_email=options["user"],
                kind=options["kind"],
                full=options["full"],
                on_progress=self._progress if show_progress else None,
            )
        except UnknownTarget as exc:
            # Exit status 2 for bad arguments, like argparse's own errors.
            raise CommandError(str(exc), returncode=2) from exc
        if show_progress:
            sys.stderr.write("\n")
        for run in summary.runs:
            if run.error:
                self.stderr.write(
                    f"{run.sync_user.mailbox_email} {run.kind}: {run.get_outcome_display()}: {run.error}"
                )
        for busy in summary.busy:
            self.stderr.write(f"{busy}: {BUSY}; not run")
        self.stdout.write(json.dumps(summary.as_dict()))
        if summary.aborted or summary.failed_passes or summary.busy:
            sys.exit(1)

    def _preview(self, options) -> None:
        try:
            preview = preview_passes(
                options["environment"], user_email=options["user"], kind=options["kind"], full=options["full"]
            )
        except UnknownTarget as exc:
            raise CommandError(str(exc), returncode=2) from exc
        for line in preview.lines() or ["nothing to do"]:
            self.stdout.write(line)
        for error in preview.errors:
            self.stderr.write(error)
        self.stdout.write(json.dumps(preview.summary()))
        if preview.errors:
            sys.exit(1)

    @staticmethod
    def _progress(label: str, done: int, total: int) -> None:
        width = 30
        filled = width * done // total if total else width
        sys.stderr.write(f"\r{label:<40} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        sys.stderr.flush()
