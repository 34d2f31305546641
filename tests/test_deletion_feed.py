"""An outside CRM learns of the deletions the synchronizer makes (K9, K16) through the API's
change feed (``updated_since`` + ``include_deleted``), until the retention age."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from synccore.models import Activity, Attendee
from synccore.runtime import housekeeping
from synccore.sync.calendar import run_calendar_pass
from tests.fixtures import factories as f
from tests.fixtures.api import admin_api  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db


def feed(api, crm, since):
    response = api.get(
        f"/api/v1/environments/{crm.env.pk}/crm/activities/",
        {"updated_since": since.isoformat(), "include_deleted": "true"},
    )
    assert response.status_code == 200, response.content
    return {row["external_id"]: row for row in response.json()["results"]}


def review_meeting(crm):
    start = timezone.now().replace(microsecond=0) + timedelta(days=2)
    activity = f.activity(crm.env, subject="Review", start=start, organizer=crm.alice.employee)
    Attendee.objects.create(activity=activity, email="alice@contoso.example", type="employee", meeting_organizer=True)
    Attendee.objects.create(activity=activity, email="bob@contoso.example", type="employee", invite=True)
    return activity


def test_k9_a_meeting_deleted_in_exchange_shows_in_the_feed_as_deleted(crm, admin_api):  # noqa: F811
    activity = review_meeting(crm)
    run_calendar_pass(crm.alice.pk)
    since = timezone.now()
    crm.mailbox().delete(crm.mailbox().events()[0], hard=True)
    run_calendar_pass(crm.alice.pk)

    assert not Activity.objects.filter(pk=activity.pk).exists()
    row = feed(admin_api, crm, since)[activity.external_id]
    assert row["deleted"] is True


def test_an_attendee_removed_in_outlook_moves_the_activitys_updated_at(crm, admin_api):  # noqa: F811
    activity = review_meeting(crm)
    Attendee.objects.create(activity=activity, email="carol@contoso.example", type="employee", invite=True)
    run_calendar_pass(crm.alice.pk)
    since = timezone.now()
    event = crm.mailbox().events()[0]
    crm.mailbox().edit(event, RequiredAttendees=[{"Mailbox": {"EmailAddress": "bob@contoso.example"}}])
    run_calendar_pass(crm.alice.pk)

    assert sorted(a.email for a in activity.attendees.all()) == ["alice@contoso.example", "bob@contoso.example"]
    assert activity.external_id in feed(admin_api, crm, since)


def test_k16_a_stub_cancelled_by_its_organizer_leaves_a_tombstone_and_a_new_stub_may_take_its_uid(crm):
    olga = crm.sim.add_mailbox("olga@partner.example", "Olga", password="olga-pw")
    start = timezone.now().replace(microsecond=0) + timedelta(days=3)
    olga.create_event(
        "Partner call",
        start,
        start + timedelta(hours=1),
        RequiredAttendees=[{"Mailbox": {"EmailAddress": "alice@contoso.example"}}],
    )
    run_calendar_pass(crm.alice.pk)
    (stub,) = Activity.objects.filter(is_stub=True)
    olga.delete(olga.events()[0], hard=True)  # the organizer cancels: attendees get the cancellation
    run_calendar_pass(crm.alice.pk)

    stub = Activity.all_objects.get(pk=stub.pk)
    assert stub.is_tombstone
    Activity.objects.create(environment=crm.env, subject="Again", start=start, end=start, meeting_uid=stub.meeting_uid)


def test_prune_purges_unlinked_tombstones_after_the_retention_age(crm, settings):
    settings.SYNC_RETENTION_DAYS = 10
    old, recent = review_meeting(crm), review_meeting(crm)
    old.retire()
    recent.retire()
    Activity.all_objects.filter(pk=old.pk).update(deleted_at=timezone.now() - timedelta(days=11))

    assert housekeeping.prune()["tombstones"] == 1
    assert list(Activity.all_objects.filter(deleted_at__isnull=False)) == [recent]
