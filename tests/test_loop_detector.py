"""P3: an item whose same fields flip between the same values over several passes is held with its
history in Needs attention instead of being written again; releasing it after a fix is one click."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from syncadmin.roles import ADMINISTRATOR, VIEWER
from synccore.models import Activity, Attendee, LoopHold
from synccore.runtime import service as runtime
from synccore.sync.calendar import run_calendar_pass
from synccore.sync.runs import PassContext
from tests.fixtures import factories as f
from tests.fixtures.api import client_for, user_with_role

pytestmark = [pytest.mark.django_db, pytest.mark.backends("ews", "graph")]


@pytest.fixture
def start():
    return timezone.now().replace(second=0, microsecond=0) + timedelta(days=2)


def meeting(crm, start, **fields):
    organizer = crm.alice.employee
    activity = f.activity(crm.env, start=start, organizer=organizer, **fields)
    Attendee.objects.create(activity=activity, email=organizer.email, type="employee", meeting_organizer=True)
    Attendee.objects.create(activity=activity, email="bob@contoso.example", type="employee", invite=True)
    return activity


class OutsideWriter:
    """Writes the location back, on whichever side the last pass wrote it: in Outlook after a push
    into Exchange, in the CRM after a pull into the CRM (two tools that each insist on their value)."""

    def __init__(self, crm, activity, ours: str, theirs: str) -> None:
        self.crm, self.activity, self.ours, self.theirs = crm, activity, ours, theirs

    def outlook(self) -> None:
        (event,) = self.crm.mailbox().events()
        self.crm.mailbox().edit(event, Location=self.theirs)

    def crm_side(self) -> None:
        activity = Activity.objects.get(pk=self.activity.pk)
        activity.location = self.ours
        activity.save()


def location(crm, activity) -> tuple[str, str]:
    (event,) = crm.mailbox().events()
    return Activity.objects.get(pk=activity.pk).location, event.props.get("Location")


class TestLoopDetector:
    def test_p3_an_outside_writer_reverting_a_field_every_pass_gets_the_item_held_after_3_flips(
        self, crm, start
    ):
        activity = meeting(crm, start, subject="Review", location="Room 1")
        run_calendar_pass(crm.alice.pk)
        writer = OutsideWriter(crm, activity, "Room 1", "Outlook room")
        for side in ("outlook", "crm_side", "outlook", "crm_side"):  # 1 write, then 3 flips
            getattr(writer, side)()
            run = run_calendar_pass(crm.alice.pk)
            assert run.updated == 1
            assert not LoopHold.objects.exists()
        assert location(crm, activity) == ("Room 1", "Room 1")

        writer.outlook()  # the 4th flip: held instead of written
        crm.sim.counters.reset()
        run = run_calendar_pass(crm.alice.pk)
        assert (run.updated, crm.event_writes()) == (0, 0)
        assert location(crm, activity) == ("Room 1", "Outlook room")
        (hold,) = LoopHold.objects.all()
        assert (hold.sync_user, hold.pass_kind, hold.record_id) == (crm.alice, "calendar", activity.pk)
        assert hold.fields == {"location": ["Room 1", "Outlook room"]}
        assert len(hold.history) == 5

        # Nothing is written after that, whichever side moves.
        writer.crm_side()
        activity.refresh_from_db()
        activity.subject = "Review (moved)"
        activity.save()
        crm.sim.counters.reset()
        run = run_calendar_pass(crm.alice.pk)
        assert (run.updated, crm.event_writes()) == (0, 0)
        assert crm.mailbox().events()[0].props["Subject"] == "Review"

        history = runtime.explain_item(crm.env.pk, "activities", activity.external_id)
        assert history["loop_hold"]["fields"] == {"location": ["Room 1", "Outlook room"]}
        held = [d for d in history["decisions"] if d["action"] == "hold"]
        assert held and all(d["rule"] == "P3 loop detector" and d["outcome"] == "held" for d in held)
        assert "flipped back and forth 3 times" in held[-1]["reason"]

        # Released after the fix: decided afresh, the CRM's change goes out.
        runtime.release_loop_hold(hold.pk, "admin")
        run = run_calendar_pass(crm.alice.pk, PassContext(full=True))
        assert run.updated >= 1
        assert crm.mailbox().events()[0].props["Subject"] == "Review (moved)"
        assert not LoopHold.objects.filter(released_at=None).exists()

    def test_p3_a_field_changed_now_and_then_is_never_held(self, crm, start):
        activity = meeting(crm, start, subject="Review", location="Room 1")
        run_calendar_pass(crm.alice.pk)
        for room in ("Room 2", "Room 3", "Room 4", "Room 5", "Room 6"):
            activity.location = room
            activity.save()
            assert run_calendar_pass(crm.alice.pk).updated == 1
        assert not LoopHold.objects.exists()


@pytest.mark.backends("ews")
class TestContactsAndConsole:
    def test_p3_a_contact_flipped_by_the_crm_is_held_and_released_in_the_console(self, crm, client):
        contact = f.contact(crm.env, first_name="Ann", last_name="Lee", job_title="Buyer")
        crm.contacts_pass()
        for title in ("CFO", "Buyer", "CFO", "Buyer"):
            contact.job_title = title
            contact.save()
            assert crm.contacts_pass().updated == 1
        contact.job_title = "CFO"
        contact.save()
        run = crm.contacts_pass()
        assert run.updated == 0
        (contact_item,) = crm.mailbox().contacts()
        assert contact_item.props.get("JobTitle") == "Buyer"
        (hold,) = LoopHold.objects.all()
        assert (hold.entity, hold.fields) == ("contact", {"job_title": ["Buyer", "CFO"]})

        release_url = f"/api/v1/environments/{crm.env.pk}/items/contacts/{contact.external_id}/release/"
        assert client_for(user_with_role(VIEWER)).post(release_url).status_code == 403
        client.force_login(user_with_role(ADMINISTRATOR))
        page = client.get(reverse("console:environment", args=[crm.env.pk]) + "?tab=attention")
        assert b'data-attention="loops"' in page.content and b"Buyer" in page.content
        answer = client.post(reverse("console:release-loop", args=[crm.env.pk, hold.pk]))
        assert answer.status_code == 302
        hold.refresh_from_db()
        assert hold.released_at is not None and hold.released_by
        assert crm.contacts_pass().updated == 1
        assert crm.mailbox().contacts()[0].props.get("JobTitle") == "CFO"
        assert client_for(user_with_role(ADMINISTRATOR)).post(release_url).status_code == 404  # not held

    def test_p3_the_api_releases_a_held_item(self, crm):
        contact = f.contact(crm.env, first_name="Ann", last_name="Lee", job_title="Buyer")
        crm.contacts_pass()
        for title in ("CFO", "Buyer", "CFO", "Buyer", "CFO"):
            contact.job_title = title
            contact.save()
            crm.contacts_pass()
        assert LoopHold.objects.filter(released_at=None).count() == 1
        url = f"/api/v1/environments/{crm.env.pk}/items/contacts/{contact.external_id}/release/"
        answer = client_for(user_with_role(ADMINISTRATOR)).post(url)
        assert answer.status_code == 200 and answer.json()["loop_hold"] is None
        assert crm.contacts_pass().updated == 1
