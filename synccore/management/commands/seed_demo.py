from django.core.management.base import BaseCommand, CommandError

from synccore.demo import seed_demo


def _positive(name: str, value: int) -> int:
    if value < 0:
        raise CommandError(f"--{name} must be 0 or more")
    return value


class Command(BaseCommand):
    help = "Create or refresh realistic demo data (idempotent) and the demo administrator login."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--environment", default="Demo", help="Environment name (default: Demo)")
        parser.add_argument(
            "--users", type=int, default=5, help="Sync users: alice, bob, carol, dave, erin… (default 5)"
        )
        parser.add_argument("--contacts", type=int, default=50)
        parser.add_argument("--activities", type=int, default=20)
        parser.add_argument("--ews-url", default="", help="EWS endpoint (default: the local simulator)")

    def handle(self, *args, **options) -> None:
        result = seed_demo(
            environment_name=options["environment"],
            users=_positive("users", options["users"]),
            contacts=_positive("contacts", options["contacts"]),
            activities=_positive("activities", options["activities"]),
            ews_url=options["ews_url"],
        )
        settings = result.environment.settings
        self.stdout.write(
            f'Demo environment "{result.environment.name}": {result.users} sync users, {result.contacts} contacts, '
            f"{result.activities} activities; Exchange: {settings.ews_url}"
        )
        self.stdout.write(f"Login: {result.admin_username} / {result.admin_password}")
