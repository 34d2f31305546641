"""synchronizer start|stop|status --environment NAME (pinned): the runtime's service functions.

`start` returns once the state is running and the first passes are enqueued, and exits 1 with the
reason when the settings or the connection fail; `stop` returns once no new pass can start;
`status` prints one JSON object on its last line, the same shape as the API's status.
"""

from __future__ import annotations

import json
import sys

from django.core.management.base import BaseCommand, CommandError, CommandParser

from synccore.models import Environment
from synccore.runtime import service as runtime


class Command(BaseCommand):
    help = "Start, stop or show the synchronizer of one environment."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["start", "stop", "status"])
        parser.add_argument("--environment", required=True, help="The environment's name")

    def handle(self, *args, **options) -> None:
        env = Environment.objects.filter(name=options["environment"]).first()
        if env is None:
            raise CommandError(f"There is no environment named “{options['environment']}”.", returncode=2)
        action = options["action"]
        try:
            if action == "start":
                result = runtime.start(env.pk)
            elif action == "stop":
                result = runtime.stop(env.pk)
            else:
                result = runtime.status(env.pk)
        except runtime.RuntimeServiceError as exc:
            self.stderr.write(str(exc))
            self.stdout.write(json.dumps(runtime.status(env.pk)))
            sys.exit(1)
        self.stdout.write(json.dumps(result))
