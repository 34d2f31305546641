"""Issue 16, finding 1: a recurrence the CRM API accepts never stops a mailbox.

The limits of each protocol live in one place (``synccore.mailbox.recurrence.LIMITS``); the CRM API
refuses, with a field error, every recurrence some backend cannot represent; and a bad series that
reaches a pass anyway (stored before these checks) is an item error in "Needs attention" while the
other events of its batch are written and the user stays healthy (DESIGN §5 "Bad input")."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from synccore.mailbox import ews, graph
from synccore.mailbox.base import InvalidItem
from synccore.mailbox.recurrence import LIMITS, Unrepresentable, parse_rrule
from synccore.models import Activity, Health, ItemLink, LinkState, SyncUser
from synccore.sync.calendar import run_calendar_pass
from tests.fixtures import factories as f
from tests.fixtures.api import *  # noqa: F403  (fixtures)
from tests.fixtures.api import client_for, user_with_role

# Every example of the finding, and their neighbours.
REFUSED = [
    "FREQ=DAILY;COUNT=36500",
    "FREQ=DAILY;INTERVAL=99999999999999999999",
    "FREQ=DAILY;COUNT=999999999999999999999",
    "FREQ=WEEKLY;INTERVAL=1000000;COUNT=2",
    "FREQ=DAILY;COUNT=0",
    "FREQ=DAILY;COUNT=-1",
    "FREQ=YEARLY;BYMONTH=0",
    "FREQ=YEARLY;BYMONTH=13",
    "FREQ=DAILY;COUNT=3;UNTIL=20270101",
    "FREQ=DAILY;COUNT=3;COUNT=4",
    "FREQ=DAILY;FREQ=WEEKLY",
    "FREQ=DAILY;COUNT=1000",
    "FREQ=DAILY;INTERVAL=1000",
    "FREQ=WEEKLY;INTERVAL=100",
    "FREQ=MONTHLY;INTERVAL=100",
    "FREQ=DAILY;INTERVAL=0",
    "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30",
]
# The widest each protocol carries: accepted.
AT_THE_LIMITS = [
    "FREQ=DAILY;COUNT=999",
    "FREQ=DAILY;INTERVAL=999",
    "FREQ=WEEKLY;INTERVAL=99;COUNT=2",
    "FREQ=MONTHLY;INTERVAL=99",
    "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29",
]
DAY = date(2026, 12, 1)


def activity_url(env, tail=""):
    return f"/api/v1/environments/{env.pk}/crm/activities/{tail}"


MEETING = {
    "type": "appointment",
    "subject": "Jour fixe",
    "start": "2026-12-01T09:00:00+01:00",
    "end": "2026-12-01T10:00:00+01:00",
    "time_zone": "Europe/Amsterdam",
    "organizer_email": "alice@contoso.example",
}


# --- one place for the limits ----------------------------------------------------------------------


def test_finding_1_the_limits_of_each_protocol_are_kept_in_one_place():
    assert set(LIMITS) >= {"ews", "graph"}
    for limits in LIMITS.values():
        assert limits.max_count == 999
        assert limits.max_interval == {"DAILY": 999, "WEEKLY": 99, "MONTHLY": 99}


@pytest.mark.parametrize("rule", REFUSED)
def test_finding_1_both_backends_refuse_what_they_cannot_represent_as_an_item_error(rule):
    with pytest.raises(Unrepresentable):
        parse_rrule(rule, DAY)
    with pytest.raises(ValueError):  # the EWS backend turns it into InvalidItem for the item
        ews.rrule_to_recurrence(rule, DAY)
    with pytest.raises(InvalidItem):
        graph.rrule_to_recurrence(rule, DAY, "UTC")


@pytest.mark.parametrize("rule", AT_THE_LIMITS)
def test_finding_1_what_exchange_carries_at_its_limits_is_written(rule):
    parse_rrule(rule, DAY)
    ews.rrule_to_recurrence(rule, DAY)
    graph.rrule_to_recurrence(rule, DAY, "UTC")


def test_finding_1_a_protocol_is_checked_against_its_own_limits(monkeypatch):
    from dataclasses import replace

    monkeypatch.setitem(LIMITS, "graph", replace(LIMITS["graph"], max_count=5))
    parse_rrule("FREQ=DAILY;COUNT=6", DAY, "ews")
    with pytest.raises(Unrepresentable, match="Graph"):
        parse_rrule("FREQ=DAILY;COUNT=6", DAY, "graph")
    with pytest.raises(Unrepresentable, match="Graph"):
        parse_rrule("FREQ=DAILY;COUNT=6", DAY)  # the API: every protocol's limits


# --- the CRM API refuses -----------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("rule", REFUSED)
def test_finding_1_the_api_refuses_a_recurrence_exchange_cannot_represent_with_a_field_error(
    admin_api, env, rule
):
    response = admin_api.put(activity_url(env, "A-1/"), {**MEETING, "recurrence": rule}, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["recurrence"][0]
    results = admin_api.post(
        activity_url(env, "bulk-upsert/"),
        [{**MEETING, "external_id": "A-2", "recurrence": rule}],
        format="json",
    ).json()["results"]
    assert results[0]["status"] == "error" and results[0]["errors"]["recurrence"]
    assert not Activity.all_objects.filter(environment=env).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("rule", AT_THE_LIMITS)
def test_finding_1_the_api_accepts_a_recurrence_at_the_limits(admin_api, env, rule):
    response = admin_api.put(activity_url(env, "A-1/"), {**MEETING, "recurrence": rule}, format="json")
    assert response.status_code == 201, response.content


# --- a pass over a bad series ------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.backends("ews", "graph")
@pytest.mark.parametrize(
    "rule",
    [
        "FREQ=DAILY;COUNT=36500",
        "FREQ=WEEKLY;INTERVAL=1000000;COUNT=2",
        "FREQ=DAILY;COUNT=0",
        "FREQ=YEARLY;BYMONTH=13",
        "FREQ=DAILY;COUNT=3;UNTIL=20270101",
    ],
)
def test_finding_1_a_bad_series_in_a_batch_is_an_item_error_and_the_others_are_written(crm, rule):
    """Stored before the API refused it: the pass writes the rest of the batch, the bad item is
    in "Needs attention" with its reason, and the mailbox stays healthy, pass after pass."""
    crm.configure(batch_size=10)
    first = date.today() + timedelta(days=3)
    start = datetime(first.year, first.month, first.day, 9, tzinfo=UTC)

    def activity(subject, recurrence=""):
        return f.activity(
            crm.env,
            subject=subject,
            start=start,
            end=start + timedelta(hours=1),
            organizer=crm.alice.employee,
            recurrence=recurrence,
        )

    before, bad, after = activity("Before"), activity("Bad series", rule), activity("After")
    for _ in range(2):  # and again on the next pass
        run = run_calendar_pass(crm.alice.pk)
        assert run.skipped == 1 and run.failed == 0, run.error
        alice = SyncUser.objects.get(pk=crm.alice.pk)
        assert alice.health == Health.HEALTHY, alice.kind_health
    links = {link.activity_id: link for link in ItemLink.objects.filter(sync_user=crm.alice)}
    assert links[before.pk].state == links[after.pk].state == LinkState.SYNCED
    assert links[bad.pk].state == LinkState.SKIPPED and links[bad.pk].last_error
    subjects = {item.props.get("Subject") for item in crm.mailbox().items("calendar")}
    assert {"Before", "After"} <= subjects and "Bad series" not in subjects

    viewer = client_for(user_with_role("viewer"))
    listed = viewer.get(f"/api/v1/environments/{crm.env.pk}/attention/").json()["results"]
    assert [(i["state"], i["last_error"]) for i in listed] == [("skipped", links[bad.pk].last_error)]


@pytest.mark.django_db
@pytest.mark.backends("ews")  # exchangelib's own checks: EWS only
def test_finding_1_a_value_exchangelib_refuses_fails_its_item_not_the_batch(crm):
    """Whatever exchangelib refuses while it serializes a batch (here a negative reminder) is
    found per item before the batch is sent: the other events are written."""
    from synccore.mailbox.base import CalendarEvent
    from synccore.sync.connection import open_user_backend

    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    events = [
        CalendarEvent(subject=subject, start=start, end=start + timedelta(hours=1), reminder_minutes=minutes)
        for subject, minutes in (("Before", 15), ("Refused", -1), ("After", None))
    ]
    backend = open_user_backend(crm.alice)
    try:
        folder = backend.ensure_calendar_folder(crm.alice.mailbox_email)
        results = backend.create_events(crm.alice.mailbox_email, folder, events, send_invitations=False)
    finally:
        backend.close()
    assert [r.ok for r in results] == [True, False, True]
    assert isinstance(results[1].error, InvalidItem)
    subjects = {item.props.get("Subject") for item in crm.mailbox().items("calendar")}
    assert subjects == {"Before", "After"}


@pytest.mark.django_db
@pytest.mark.backends("ews")  # exchangelib's own checks: EWS only
def test_finding_1_a_contact_exchangelib_refuses_fails_its_card_not_the_batch(crm, monkeypatch):
    """The same for contacts: a card exchangelib refuses while serializing is an item error in
    "Needs attention", the rest of the batch is written and the pass does not fail."""
    from synccore.mailbox.ews import backend as ews_backend

    made = ews_backend.to_contact

    def refused_for_two(card, account, folder=None):
        contact = made(card, account, folder)
        if card.surname == "Two":
            contact.file_as_mapping = "Nonsense"  # a value exchangelib refuses
        return contact

    fast = ews_backend.contact_xml

    def built_by_exchangelib_for_two(card, version):
        # The fast serializer covers plain cards; this one goes through exchangelib's checks.
        return None if card.surname == "Two" else fast(card, version)

    monkeypatch.setattr(ews_backend, "to_contact", refused_for_two)
    monkeypatch.setattr(ews_backend, "contact_xml", built_by_exchangelib_for_two)
    for name in ("One", "Two", "Three"):
        f.contact(crm.env, last_name=name)
    run = crm.contacts_pass()
    assert (run.created, run.skipped, run.failed) == (2, 1, 0), run.error
    assert SyncUser.objects.get(pk=crm.alice.pk).health == Health.HEALTHY
    assert sorted(c.props.get("Surname") for c in crm.mailbox().contacts()) == ["One", "Three"]
    bad = ItemLink.objects.get(sync_user=crm.alice, contact__last_name="Two")
    assert bad.state == LinkState.SKIPPED and "file_as_mapping" in bad.last_error
