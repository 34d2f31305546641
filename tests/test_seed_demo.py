"""seed_demo: realistic demo data, idempotent, with a printed login."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.contrib.auth import authenticate
from django.core.management import CommandError, call_command

from synccore.models import Activity, Attendee, Company, Contact, Environment, SalesGroup, SyncUser

pytestmark = [pytest.mark.django_db, pytest.mark.dbbehaviour]


def seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def counts() -> tuple[int, ...]:
    return tuple(
        m.objects.count() for m in (Environment, SyncUser, Company, Contact, SalesGroup, Activity, Attendee)
    )


def test_it_is_idempotent():
    seed()
    first = counts()
    seed()
    assert counts() == first


def test_it_prints_a_login_that_works():
    output = seed("--users", "2", "--contacts", "5", "--activities", "4")
    match = re.search(r"^Login: (\S+) / (\S+)$", output, re.MULTILINE)
    assert match, output
    assert authenticate(username=match[1], password=match[2]) is not None


def test_it_creates_the_demo_users_and_points_at_the_given_exchange():
    seed("--environment", "Staging", "--users", "3", "--ews-url", "http://127.0.0.1:9999/EWS/Exchange.asmx")
    env = Environment.objects.get(name="Staging")
    assert sorted(SyncUser.objects.filter(environment=env).values_list("mailbox_email", flat=True)) == [
        "alice@contoso.example",
        "bob@contoso.example",
        "carol@contoso.example",
    ]
    assert env.settings.ews_url == "http://127.0.0.1:9999/EWS/Exchange.asmx"
    assert env.settings.service_account == "svc@contoso.example"
    assert env.settings.service_password == "demo-password"
    env.settings.full_clean()  # contact sync is on and every country and language has its ISO code


def test_the_demo_has_meetings_all_day_recurring_past_and_future_activities():
    seed()
    activities = Activity.objects.all()
    assert activities.filter(all_day=True).exists()
    assert activities.exclude(recurrence="").exists()
    assert activities.filter(attendees__type="contact").exists()
    assert activities.filter(attendees__type="other").exists()
    from django.utils import timezone

    assert activities.filter(start__lt=timezone.now()).exists()
    assert activities.filter(start__gt=timezone.now()).exists()


def test_negative_counts_are_refused():
    with pytest.raises(CommandError, match="--contacts"):
        seed("--contacts", "-1")


def test_backend_graph_points_the_demo_at_a_graph_endpoint_with_the_demo_app(exchange_sim):
    from synccore.mailbox import graph
    from synccore.models import Backend
    from synccore.sync.contacts import run_contact_pass

    output = seed(
        "--users", "2", "--contacts", "3", "--activities", "0",
        "--backend", "graph",
        "--graph-url", exchange_sim.graph_url,
        "--token-url", exchange_sim.token_url,
        "--ca-bundle", exchange_sim.ca_bundle,
    )  # fmt: skip
    assert f"Exchange: Microsoft Graph {exchange_sim.graph_url}" in output
    settings = Environment.objects.get(name="Demo").settings
    assert settings.backend == Backend.GRAPH
    assert settings.authority_url == exchange_sim.authority  # the token URL without /oauth2/v2.0/token
    assert (settings.oauth_tenant_id, settings.oauth_client_id, settings.oauth_client_secret) == (
        "contoso",
        "demo-client",
        "demo-secret",
    )
    assert settings.connection_problems() == []
    graph.forget_process_state()
    alice = SyncUser.objects.get(environment__name="Demo", mailbox_email="alice@contoso.example")
    run = run_contact_pass(alice.pk)
    assert run.outcome == "success" and run.created >= 3, run.error
    assert len(exchange_sim.user("alice@contoso.example").contacts()) == run.created


def test_backend_domino_points_the_demo_at_a_domino_endpoint_with_the_service_account(exchange_sim):
    from synccore.mailbox import domino
    from synccore.models import Backend
    from synccore.sync.calendar import run_calendar_pass

    output = seed(
        "--users",
        "2",
        "--contacts",
        "0",
        "--activities",
        "3",
        "--backend",
        "domino",
        "--domino-url",
        exchange_sim.domino_url,
    )
    assert f"HCL Domino: {exchange_sim.domino_url}" in output
    settings = Environment.objects.get(name="Demo").settings
    assert (settings.backend, settings.domino_url) == (Backend.DOMINO, exchange_sim.domino_url)
    assert not settings.synchronize_contacts  # calendar only over Domino (docs/domino.md)
    assert settings.connection_problems() == []
    domino.forget_process_state()
    alice = SyncUser.objects.get(environment__name="Demo", mailbox_email="alice@contoso.example")
    run = run_calendar_pass(alice.pk)
    assert run.outcome in ("success", "partial"), run.error
    assert exchange_sim.counters["domino.calendar.list"] >= 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backend", "domino"], "--domino-url"),
        (["--domino-url", "http://h/api"], "--backend domino"),
        (["--backend", "graph", "--token-url", "https://h/contoso/oauth2/v2.0/token"], "--graph-url"),
        (
            ["--backend", "graph", "--graph-url", "https://h/v1.0", "--token-url", "https://h/x"],
            "--token-url",
        ),
        (["--graph-url", "https://h/v1.0"], "--backend graph"),
    ],
)
def test_backend_graph_needs_both_urls(args, message):
    with pytest.raises(CommandError, match=message):
        seed(*args)
