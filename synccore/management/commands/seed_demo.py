from django.core.management.base import BaseCommand, CommandError

from synccore.demo import DominoTarget, GraphTarget, seed_demo


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
            choices=["ews", "graph", "domino"],
            default="ews",
            help="ews (default), graph: Microsoft Graph with the demo app (demo-client / demo-secret), or "
            "domino: the HCL Domino REST API with the demo service account (contacts off: not offered there)",
        )
        parser.add_argument(
            "--domino-url",
            default="",
            help="Domino REST API base, e.g. http://127.0.0.1:8765/api (with --backend domino)",
        )
        parser.add_argument(
            "--graph-url", default="", help="Graph endpoint, e.g. https://127.0.0.1:8766/v1.0"
        )
        parser.add_argument(
            "--token-url",
            default="",
            help="Token endpoint, e.g. https://127.0.0.1:8766/contoso/oauth2/v2.0/token",
        )
        parser.add_argument(
            "--ca-bundle", default="", help="PEM file of the CA to trust for Graph or Domino (a test CA)"
        )

    def handle(self, *args, **options) -> None:
        graph = None
        domino = None
        if options["backend"] == "graph":
            graph = GraphTarget(options["graph_url"], options["token_url"], options["ca_bundle"])
            problems = graph.problems()
            if problems:
                raise CommandError("; ".join(problems))
        elif options["backend"] == "domino":
            if options["graph_url"] or options["token_url"]:
                raise CommandError("--graph-url and --token-url go with --backend graph")
            domino = DominoTarget(options["domino_url"], options["ca_bundle"])
            problems = domino.problems()
            if problems:
                raise CommandError("; ".join(problems))
        elif options["graph_url"] or options["token_url"] or options["ca_bundle"]:
            raise CommandError("--graph-url, --token-url and --ca-bundle go with --backend graph")
        if options["domino_url"] and domino is None:
            raise CommandError("--domino-url goes with --backend domino")
        result = seed_demo(
            environment_name=options["environment"],
            users=_positive("users", options["users"]),
            contacts=_positive("contacts", options["contacts"]),
            activities=_positive("activities", options["activities"]),
            ews_url=options["ews_url"],
            graph=graph,
            domino=domino,
        )
        settings = result.environment.settings
        exchange = f"Microsoft Graph {settings.graph_endpoint}" if graph else settings.ews_url
        where = f"HCL Domino: {settings.domino_url}" if domino else f"Exchange: {exchange}"
        self.stdout.write(
            f'Demo environment "{result.environment.name}": {result.users} sync users, {result.contacts} contacts, '
            f"{result.activities} activities; {where}"
        )
        self.stdout.write(f"Login: {result.admin_username} / {result.admin_password}")
