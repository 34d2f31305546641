"""P4: a calendar pass that would send more invitations or cancellations than the meeting message
limit is held for confirmation (like the safety limit on deletions), showing what it holds."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from syncadmin.roles import ADMINISTRATOR
from synccore.models import Attendee, Contact, Decision, Health, Outcome, SyncUser
from synccore.runtime import service as runtime
from synccore.sync.calendar import run_calendar_pass
from synccore.sync.preview import preview_passes
from tests.fixtures import factories as f
from tests.fixtures.api import user_with_role

pytestmark = [pytest.mark.django_db, pytest.mark.backends("ews", "graph")]


@pytest.fixture
def start():
    return timezone.now().replace(second=0, microsecond=0) + timedelta(days=2)


def meeting(crm, start, subject, invite=("carol@partner.example",)):
    organizer = crm.alice.employee
    activity = f.activity(crm.env, subject=subject, start=start, organizer=organizer)
    Attendee.objects.create(activity=activity, email=organizer.email, type="employee", meeting_organizer=True)
    for email in invite:
        Attendee.objects.create(activity=activity, email=email, type="other", invite=True)
    return activity


def events(crm) -> list[str]:
    return sorted(e.props.get("Subject") for e in crm.mailbox().events())


class TestMeetingMessageLimit:
    def test_p4_a_first_sync_that_would_send_60_invitations_with_a_limit_of_50_is_held_and_shows_them(
        self, crm, start
    ):
        crm.configure(meeting_message_limit=50)
        for i in range(60):
            meeting(crm, start + timedelta(hours=i), f"Meeting {i:02}", invite=("bob@contoso.example",))
        f.activity(crm.env, subject="Dentist", start=start, organizer=crm.alice.employee)

        preview = preview_passes(crm.env.name, user_email=crm.alice.mailbox_email, kind="calendar")
        summary = preview.summary()
        assert (summary["held"], summary["would_create"], summary["invitations"]) == (60, 1, 0)
        held = [p.action for p in preview.actions if p.action.kind == "hold"]
        assert {a.rule for a in held} == {"P4 meeting message limit"}
        assert all(a.fields["invitations"] == (None, ["bob@contoso.example"]) for a in held)
        assert "60 invitations" in held[0].reason

        run = run_calendar_pass(crm.alice.pk)
        assert run.outcome == Outcome.HELD and "60 invitations" in run.error
        assert events(crm) == ["Dentist"]  # the rest of the pass is written; no invitation sent
        assert crm.mailbox(crm.bob).events() == []
        user = SyncUser.objects.get(pk=crm.alice.pk)
        state = user.kind_health["calendar"]
        assert state["state"] == "held" and "meeting message limit" in state["reason"]
        assert Decision.objects.filter(action="hold", outcome="held").count() == 60
        assert not Decision.objects.filter(action="create", subject__startswith="Meeting").exists()

        # Still held on the next pass, until an administrator confirms.
        assert run_calendar_pass(crm.alice.pk).outcome == Outcome.HELD
        runtime.confirm_deletions(crm.alice.pk)
        run = run_calendar_pass(crm.alice.pk)
        assert run.outcome == Outcome.SUCCESS and run.created == 60
        assert len(events(crm)) == 61
        assert len(crm.mailbox(crm.bob).events()) == 60  # the invitations went out
        assert SyncUser.objects.get(pk=crm.alice.pk).deletions_confirmed is False

    def test_p4_cancellations_beyond_the_limit_are_held_too(self, crm, start):
        crm.configure(meeting_message_limit=2)
        activities = [meeting(crm, start + timedelta(hours=i), f"Meeting {i}") for i in range(2)]
        activities.append(meeting(crm, start + timedelta(hours=3), "Meeting 2", invite=()))
        assert run_calendar_pass(crm.alice.pk).outcome == Outcome.SUCCESS  # 2 invitations: at the limit
        third = meeting(crm, start + timedelta(hours=5), "Meeting 3", invite=("dave@partner.example",))
        activities.append(third)
        assert run_calendar_pass(crm.alice.pk).created == 1
        for activity in activities:
            activity.delete()
        run = run_calendar_pass(crm.alice.pk)
        assert run.outcome == Outcome.HELD and "3 cancellations" in run.error
        assert events(crm) == ["Meeting 0", "Meeting 1", "Meeting 3"]  # the one without attendees went

    def test_one_confirmation_releases_a_held_calendar_pass_and_a_held_contact_pass(self, crm, start):
        # "Confirm" enqueues every kind; the contact pass may run first and must not use up the
        # calendar's confirmation (one per kind).
        crm.configure(meeting_message_limit=1, safety_limit_percent=20, safety_limit_minimum=3)
        contacts = [f.contact(crm.env, first_name="Ann", last_name=f"Lee {i:02d}") for i in range(10)]
        crm.contacts_pass()
        Contact.objects.filter(pk__in=[c.pk for c in contacts[:6]]).update(synchronize=False)
        assert crm.contacts_pass().outcome == Outcome.HELD
        meeting(crm, start, "Review", invite=("carol@partner.example", "dave@partner.example"))
        assert run_calendar_pass(crm.alice.pk).outcome == Outcome.HELD

        runtime.confirm_deletions(crm.alice.pk)
        run = crm.contacts_pass()
        assert (run.outcome, run.deleted) == (Outcome.SUCCESS, 6)
        run = run_calendar_pass(crm.alice.pk)
        assert (run.outcome, run.created) == (Outcome.SUCCESS, 1)
        assert events(crm) == ["Review"]

        user = SyncUser.objects.get(pk=crm.alice.pk)
        assert user.health == Health.HEALTHY and not user.deletions_confirmed
        assert {kind: entry["state"] for kind, entry in user.kind_health.items()} == {
            "contacts": "healthy",
            "calendar": "healthy",
        }
        # Each confirmation counted for one pass: the next storm is held again.
        meeting(crm, start + timedelta(hours=1), "Board", invite=("carol@partner.example", "erin@partner.example"))
        assert run_calendar_pass(crm.alice.pk).outcome == Outcome.HELD

    def test_p4_a_pass_held_by_the_meeting_message_limit_shows_only_what_each_limit_holds(self, crm, start):
        # The safety limit lets one deletion through; the meeting message limit holds the invitations.
        crm.configure(meeting_message_limit=1, safety_limit_minimum=5)
        old = f.activity(crm.env, subject="Old", start=start, organizer=crm.alice.employee)
        f.activity(crm.env, subject="Kept", start=start + timedelta(hours=1), organizer=crm.alice.employee)
        assert run_calendar_pass(crm.alice.pk).outcome == Outcome.SUCCESS
        old.delete()
        meeting(crm, start + timedelta(hours=2), "Review", invite=("carol@partner.example", "dave@partner.example"))

        preview = preview_passes(crm.env.name, user_email=crm.alice.mailbox_email, kind="calendar")
        by_kind = {(p.action.kind, p.action.item.subject, p.action.rule) for p in preview.actions}
        assert ("hold", "Review", "P4 meeting message limit") in by_kind
        assert ("delete", "Old", "K9") in by_kind
        assert not any(p.action.rule == "safety limit" for p in preview.actions)
        assert (preview.summary()["held"], preview.summary()["would_delete"]) == (1, 1)

        run = run_calendar_pass(crm.alice.pk)
        assert (run.outcome, run.deleted) == (Outcome.HELD, 1)  # done as previewed
        assert events(crm) == ["Kept"]
        decisions = {d.action: d for d in Decision.objects.filter(run=run)}
        assert (decisions["delete"].subject, decisions["delete"].outcome) == ("Old", "done")
        assert (decisions["hold"].subject, decisions["hold"].outcome) == ("Review", "held")

    def test_p4_a_limit_of_0_holds_nothing(self, crm, start):
        crm.configure(meeting_message_limit=0)
        for i in range(3):
            meeting(crm, start + timedelta(hours=i), f"Meeting {i}")
        assert run_calendar_pass(crm.alice.pk).created == 3


@pytest.mark.backends("ews")
def test_p4_the_console_offers_the_preview_beside_the_confirmation(crm, client, start):
    crm.configure(meeting_message_limit=1)
    meeting(crm, start, "Review", invite=("carol@partner.example", "dave@partner.example"))
    run_calendar_pass(crm.alice.pk)
    client.force_login(user_with_role(ADMINISTRATOR))
    page = client.get(reverse("console:environment", args=[crm.env.pk]) + "?tab=attention")
    assert b'data-action="preview-held"' in page.content and b"2 invitations" in page.content
    preview = client.post(
        reverse("console:preview", args=[crm.env.pk]), {"user": crm.alice.mailbox_email, "kind": "calendar"}
    )
    assert preview.status_code == 200
    assert b'data-action-kind="hold"' in preview.content and b"dave@partner.example" in preview.content
