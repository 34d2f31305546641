"""explain: why does this item look like this (P2).

    manage.py explain --environment NAME KIND EXTERNAL_ID

KIND is contacts, companies, activities or tasks (as the API's
``GET /api/v1/environments/{id}/items/{kind}/{external_id}/explain/``). Prints the item's links,
then its decisions newest first, one line each; the last line is the API's answer as one JSON
object.
"""

from __future__ import annotations

import json

from django.core.exceptions import ObjectDoesNotExist
from django.core.management.base import BaseCommand, CommandError, CommandParser

from synccore.models import Environment
from synccore.runtime import service


class Command(BaseCommand):
    help = "Why an item looks as it does: its links and the decisions passes took about it; ends with JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--environment", required=True, help="The environment's name")
        parser.add_argument("kind", help="contacts, companies, activities or tasks")
        parser.add_argument("external_id", help="The record's external id")

    def handle(self, *args, **options) -> None:
        env = Environment.objects.filter(name=options["environment"]).first()
        if env is None:
            raise CommandError(f"There is no environment named “{options['environment']}”.", returncode=2)
        try:
            item = service.explain_item(env.pk, options["kind"], options["external_id"])
        except ObjectDoesNotExist as exc:
            raise CommandError(str(exc) or "No such item.", returncode=2) from exc
        record = item["record"]
        self.stdout.write(f"{record['type']} {record['label']}" if record else f"{options['kind']} (no longer in the CRM)")
        for link in item["links"]:
            self.stdout.write(f"  link: {link['user']} {link['kind']} {link['state']}")
        for decision in item["decisions"]:
            self.stdout.write(f"{decision['at']} {decision['user']} {decision['pass']}: {decision['line']}")
        self.stdout.write(json.dumps(item))
