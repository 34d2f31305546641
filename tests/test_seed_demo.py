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
