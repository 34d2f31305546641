"""switch_backend: move a synchronized environment or one mailbox to another backend (pinned).

    manage.py switch_backend --environment NAME [--user EMAIL] --to graph|ews [--dry-run]

Prints per mailbox how many links carry over and which items could not be found (H3); with
``--dry-run`` nothing changes (not the database, not a mailbox). The last line is one JSON
object with the keys ``users``, ``links``, ``found``, ``not_found`` and ``dry_run``.
"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from synccore.models import Backend, Environment
from synccore.runtime import service


class Command(BaseCommand):
    help = "Move an environment (or one mailbox) to another backend, keeping every link; ends with JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--environment", required=True, help="The environment's name")
        parser.add_argument("--user", help="Only this sync user's mailbox (e-mail address)")
        parser.add_argument("--to", required=True, choices=[b.value for b in Backend])
        parser.add_argument("--dry-run", action="store_true", help="Show what would carry over; change nothing")

    def handle(self, *args, **options) -> None:
        env = Environment.objects.filter(name=options["environment"]).first()
        if env is None:
            raise CommandError(f"There is no environment named “{options['environment']}”.", returncode=2)
        try:
            report = service.switch_backend(
                env.pk, options["to"], user_email=options["user"], dry_run=options["dry_run"]
            )
        except LookupError as exc:
            raise CommandError(str(exc), returncode=2) from exc
        verb = "would carry over" if options["dry_run"] else "carry over"
        for user in report["users"]:
            line = f"{user['user']}: {user['from']} → {user['to']}: {user['found']} of {user['links']} links {verb}"
            if user.get("error"):
                line += f"; could not look: {user['error']}"
            self.stdout.write(line)
            for lost in user["not_found"]:
                self.stdout.write(f"  not found: {lost['kind']} {lost['record']} (sync id {lost['sync_id']})")
        self.stdout.write(json.dumps(report))
