"""CRM API benchmark (issue 16, finding 5): bulk-upsert throughput through the real web server.

gunicorn serves the product as docs/operations.md runs it (with its documented --timeout), on a
fresh database; the driver posts full batches over HTTP with an API token, as an outside CRM
would, and times each request:

- contacts: 1,000 per request, each with 2 e-mail addresses, a company, a country, a language, a
  rep, 3 sales groups and 2 favorites — created, then the same batch again (all updates);
- activities: 1,000 plain ones per request — created, then updated;
- meetings: 1,000 activities with 10 attendees each (the issue's 510 KB request) — created, then
  updated.

    .venv/bin/python bench/api.py [--items 1000] [--rounds 2] [--database postgres|sqlite]

Prints one line per step (items per second) and, last, one JSON object (keys: items,
contacts_per_s, activities_per_s, meetings_per_s, and per step its wall time in seconds).
"""

from __future__ import annotations

import sys
from pathlib import Path

_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH] + [str(_BENCH)]

import argparse
import json
import socket
import time
import urllib.error
import urllib.request

from _harness import Managed, configure_environment, django_setup, fresh_database, wait_until

# The server timeout docs/operations.md documents for gunicorn (keep the two in step).
GUNICORN_TIMEOUT_S = 60
EMPLOYEES = 50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2, help="1: creates only; 2: creates, then updates")
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    with fresh_database(args.database) as database_url:
        configure_environment(database_url, DJANGO_ALLOWED_HOSTS="127.0.0.1")
        django_setup()
        env_id, token = seed()
        port = args.port or free_port()
        web = Managed(
            "syncadmin.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--timeout",
            str(GUNICORN_TIMEOUT_S),
            module="gunicorn",
            log_name="bench-api-web",
        )
        try:
            wait_until(lambda: answers(port), timeout=60, every=0.2, what="gunicorn")
            figures = measure(f"http://127.0.0.1:{port}/api/v1/environments/{env_id}/crm", token, args)
        finally:
            web.stop()
    print(json.dumps(figures))


def seed() -> tuple[int, str]:
    from django.contrib.auth.models import Group, User
    from knox.models import AuthToken

    from synccore.models import Company, Employee, Environment

    env = Environment.objects.create(name="Bench")
    Employee.objects.bulk_create(
        Employee(environment=env, external_id=f"E-{i}", name=f"Employee {i}", email=f"e{i}@contoso.example")
        for i in range(EMPLOYEES)
    )
    Company.objects.bulk_create(Company(environment=env, external_id=f"C-{i}", name=f"Company {i}") for i in range(10))
    user = User.objects.create_user("bench-admin", "bench@example.com", "unused-Password-1")
    user.groups.add(Group.objects.get_or_create(name="administrator")[0])
    return env.pk, AuthToken.objects.create(user)[1]


def contacts(n: int, round_: int) -> list[dict]:
    return [
        {
            "external_id": f"P-{i}",
            "first_name": f"First {i}",
            "last_name": f"Last {i} r{round_}",
            "emails": [f"p{i}@fabrikam.example", f"p{i}.alt@fabrikam.example"],
            "company_external_id": f"C-{i % 10}",
            "country": "NL",
            "language": "nl",
            "rep_email": f"e{i % EMPLOYEES}@contoso.example",
            "sales_groups": [f"Group {i % 7}", f"Group {i % 11}", "All"],
            "favorite_of": [f"e{i % EMPLOYEES}@contoso.example", f"e{(i + 1) % EMPLOYEES}@contoso.example"],
        }
        for i in range(n)
    ]


def activities(n: int, round_: int, attendees: int, prefix: str) -> list[dict]:
    return [
        {
            "external_id": f"{prefix}-{i}",
            "type": "appointment",
            "subject": f"Meeting {i} r{round_}",
            "start": f"2026-12-{1 + i % 28:02d}T09:00:00+01:00",
            "end": f"2026-12-{1 + i % 28:02d}T10:00:00+01:00",
            "time_zone": "Europe/Amsterdam",
            "organizer_email": f"e{i % EMPLOYEES}@contoso.example",
            "attendees": [
                {"email": f"a{(i + k) % 3000}@fabrikam.example", "name": f"Guest {k}", "invite": True}
                for k in range(attendees)
            ],
        }
        for i in range(n)
    ]


def measure(base: str, token: str, args) -> dict:
    figures: dict = {"items": args.items}
    for entity in ("contacts", "activities"):  # warm both workers up: the first request loads the API
        post(f"{base}/{entity}/bulk-upsert/", b"[]", token)
        post(f"{base}/{entity}/bulk-upsert/", b"[]", token)
    steps = {
        "contacts": lambda r: ("contacts", contacts(args.items, r)),
        "activities": lambda r: ("activities", activities(args.items, r, 0, "A")),
        "meetings": lambda r: ("activities", activities(args.items, r, 10, "M")),
    }
    for name, make in steps.items():
        rates = []
        for round_ in range(args.rounds):
            entity, batch = make(round_)
            body = json.dumps(batch).encode()
            started = time.perf_counter()
            status, answer = post(f"{base}/{entity}/bulk-upsert/", body, token)
            wall = time.perf_counter() - started
            outcomes = {}
            for result in answer.get("results", []):
                outcomes[result["status"]] = outcomes.get(result["status"], 0) + 1
            if status != 200 or outcomes.get("error"):
                raise SystemExit(f"{name}: HTTP {status}, {outcomes}, {str(answer)[:500]}")
            kind = "created" if round_ == 0 else "updated"
            rates.append(args.items / wall)
            figures[f"{name}_{kind}_s"] = round(wall, 3)
            print(
                f"{name} {kind}: {args.items} in {wall:.2f} s = {args.items / wall:,.0f} items/s "
                f"({len(body) / 1024:,.0f} KB)",
                flush=True,
            )
        figures[f"{name}_per_s"] = round(min(rates), 1)
    return figures


def post(url: str, body: bytes, token: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("Authorization", f"Token {token}")
    try:
        with urllib.request.urlopen(request, timeout=GUNICORN_TIMEOUT_S + 30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        text = exc.read()
        try:
            return exc.code, json.loads(text)
        except ValueError:
            return exc.code, {"body": text[:500].decode(errors="replace")}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


if __name__ == "__main__":
    main()
