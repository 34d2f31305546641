from django.core.management.base import BaseCommand, CommandError

from synccore.demo import GraphTarget, seed_demo


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
        parser.add_argument(
            "--backend",
            choices=["ews", "graph"],
            default="ews",
            help="ews (default) or graph: Microsoft Graph with the demo app (demo-client / demo-secret)",
        )
        parser.add_argument("--graph-url", default="", help="Graph endpoint, e.g. https://127.0.0.1:8766/v1.0")
        parser.add_argument(
            "--token-url", default="", help="Token endpoint, e.g. https://127.0.0.1:8766/contoso/oauth2/v2.0/token"
        )
        parser.add_argument("--ca-bundle", default="", help="PEM file of the CA to trust for Graph (a test CA)")

    def handle(self, *args, **options) -> None:
        graph = None
        if options["backend"] == "graph":
            graph = GraphTarget(options["graph_url"], options["token_url"], options["ca_bundle"])
            problems = graph.problems()
            if problems:
                raise CommandError("; ".join(problems))
        elif options["graph_url"] or options["token_url"] or options["ca_bundle"]:
            raise CommandError("--graph-url, --token-url and --ca-bundle go with --backend graph")
        result = seed_demo(
            environment_name=options["environment"],
            users=_positive("users", options["users"]),
            contacts=_positive("contacts", options["contacts"]),
            activities=_positive("activities", options["activities"]),
            ews_url=options["ews_url"],
            graph=graph,
        )
        settings = result.environment.settings
        exchange = f"Microsoft Graph {settings.graph_endpoint}" if graph else settings.ews_url
        self.stdout.write(
            f'Demo environment "{result.environment.name}": {result.users} sync users, {result.contacts} contacts, '
            f"{result.activities} activities; Exchange: {exchange}"
        )
        self.stdout.write(f"Login: {result.admin_username} / {result.admin_password}")
