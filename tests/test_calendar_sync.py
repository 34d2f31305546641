"""Two-way calendar synchronization (rules K1–K16), against exchange_sim with real exchangelib,
using the simulator's user-side API to act as people in Outlook."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from synccore.mailbox.base import TransientMailboxError
from synccore.models import Activity, Attendee, Conflict, ItemLink, LinkState, Outcome
from synccore.sync.calendar import CalendarPass, CalendarSyncDisabled, run_calendar_pass
from synccore.sync.connection import open_backend
from tests.fixtures import factories as f

pytestmark = [pytest.mark.django_db, pytest.mark.backends("ews", "graph", "domino")]


@pytest.fixture
def start():
    return timezone.now().replace(second=0, microsecond=0) + timedelta(days=2)


def meeting(crm, start, *, organizer=None, invite=("bob@contoso.example",), **fields):
    organizer = organizer or crm.alice.employee
    activity = f.activity(crm.env, start=start, organizer=organizer, **fields)
    Attendee.objects.create(activity=activity, email=organizer.email, type="employee", meeting_organizer=True)
    for email in invite:
        Attendee.objects.create(activity=activity, email=email, type="employee", invite=True)
    return activity


def calendar_pass(crm, user=None):
    return run_calendar_pass((user or crm.alice).pk)


def subjects(mailbox) -> list[str]:
    return sorted(e.props.get("Subject") for e in mailbox.events())


class TestCrmToExchange:
    def test_k1_only_synchronized_calls_and_appointments_are_written(self, crm, start):
        f.activity(crm.env, subject="Call", type="call", start=start, organizer=crm.alice.employee)
        f.activity(crm.env, subject="Meeting", start=start, organizer=crm.alice.employee)
        f.activity(crm.env, subject="Task", type="task", start=start, organizer=crm.alice.employee)
        f.activity(crm.env, subject="Off", start=start, organizer=crm.alice.employee, synchronize=False)
        calendar_pass(crm)
        assert subjects(crm.mailbox()) == ["Call", "Meeting"]

    def test_k1_no_calendar_pass_while_activity_sync_is_off(self, crm):
        crm.configure(synchronize_activities=False)
        with pytest.raises(CalendarSyncDisabled):
            calendar_pass(crm)

    def test_k2_the_past_is_never_created(self, crm):
        past = timezone.now() - timedelta(days=3)
        f.activity(crm.env, subject="Yesterday", start=past, organizer=crm.alice.employee)
        calendar_pass(crm)
        assert crm.mailbox().events() == []

    def test_k3_a_meeting_is_written_once_to_the_organizers_mailbox_and_exchange_invites(self, crm, start):
        meeting(crm, start, subject="Review")
        assert calendar_pass(crm).created == 1
        (organizer_copy,) = crm.mailbox().events()
        assert organizer_copy.props["IsMeeting"]
        (invitee_copy,) = crm.mailbox(crm.bob).events()
        assert invitee_copy.props["UID"] == organizer_copy.props["UID"]
        assert calendar_pass(crm, crm.bob).created == 0
        assert Activity.objects.count() == 1

    def test_k3_without_a_sync_user_organizer_each_invited_sync_user_gets_a_copy_and_no_invitation(
        self, crm, start
    ):
        outsider = f.employee(crm.env, "frank@contoso.example")
        meeting(
            crm,
            start,
            organizer=outsider,
            invite=("alice@contoso.example", "bob@contoso.example"),
            subject="Fair",
        )
        calendar_pass(crm)
        calendar_pass(crm, crm.bob)
        for user in (crm.alice, crm.bob):
            (copy,) = crm.mailbox(user).events()
            assert copy.props["Subject"] == "Fair" and not copy.props.get("IsMeeting")
        # No invitation went out: neither copy lists attendees, so Exchange had nobody to invite.
        copies = [e for user in (crm.alice, crm.bob) for e in crm.mailbox(user).events()]
        assert len(copies) == 2 and all(not e.props.get("RequiredAttendees") for e in copies)

    def test_k4_attendee_flags_follow_the_invitation_and_the_attendees_calendar(self, crm, start):
        activity = meeting(crm, start)
        calendar_pass(crm)
        bob = Attendee.objects.get(activity=activity, email="bob@contoso.example")
        assert (bob.sent_to_synchronizer, bob.synchronized) == (True, False)
        calendar_pass(crm, crm.bob)
        bob.refresh_from_db()
        assert bob.synchronized

    def test_k5_the_organizer_is_matched_ignoring_case(self, crm, start):
        crm.alice.employee.email = "Alice@Contoso.example"
        crm.alice.employee.save()
        meeting(crm, start, subject="Case")
        calendar_pass(crm)
        assert subjects(crm.mailbox()) == ["Case"]

    def test_k13_new_events_get_the_default_reminder_of_their_type(self, crm, start):
        crm.configure(reminder_call_minutes=5, reminder_appointment_minutes=30)
        f.activity(crm.env, subject="Call", type="call", start=start, organizer=crm.alice.employee)
        f.activity(crm.env, subject="Visit", start=start, organizer=crm.alice.employee)
        calendar_pass(crm)
        reminders = {
            e.props["Subject"]: e.props.get("ReminderMinutesBeforeStart") for e in crm.mailbox().events()
        }
        assert reminders == {"Call": 5, "Visit": 30}

    def test_k11_private_activities_are_private_events(self, crm, start):
        f.activity(crm.env, subject="Doctor", start=start, organizer=crm.alice.employee, private=True)
        calendar_pass(crm)
        (event,) = crm.mailbox().events()
        assert event.props["Sensitivity"] == "Private"


class TestExchangeToCrm:
    def test_k6_an_outlook_event_becomes_an_appointment_with_typed_attendees(self, crm, start):
        f.contact(crm.env, last_name="Jansen", email1="anna@fabrikam.example")
        crm.mailbox().create_event(
            "Lunch",
            start,
            start + timedelta(hours=1),
            RequiredAttendees=[
                {"Mailbox": {"EmailAddress": "bob@contoso.example"}},
                {"Mailbox": {"EmailAddress": "anna@fabrikam.example"}},
                {"Mailbox": {"EmailAddress": "someone@else.example"}},
            ],
        )
        assert calendar_pass(crm).created == 1
        activity = Activity.objects.get(subject="Lunch")
        assert (activity.type, activity.created_by_erp, activity.synchronize) == ("appointment", False, True)
        types = {a.email.lower(): a.type for a in activity.attendees.all()}
        assert types == {
            "alice@contoso.example": "employee",
            "bob@contoso.example": "employee",
            "anna@fabrikam.example": "contact",
            "someone@else.example": "other",
        }
        assert all(
            a.synchronized and not a.sent_to_synchronizer
            for a in activity.attendees.exclude(meeting_organizer=True)
        )

    def test_k6_k12_an_outlook_meeting_with_an_outside_attendee_is_imported_and_stays_quiet(self, crm, start):
        crm.mailbox().create_event(
            "Supplier visit",
            start,
            start + timedelta(hours=1),
            Body="Bring samples",
            RequiredAttendees=[{"Mailbox": {"EmailAddress": "buyer@fabrikam.example"}}],
        )
        calendar_pass(crm)
        assert Activity.objects.get().comment == "Bring samples"
        crm.sim.counters.reset()
        run = calendar_pass(crm)
        assert (run.updated, crm.event_writes()) == (0, 0)

    def test_k7_the_invitee_copy_of_a_sync_users_meeting_is_ignored(self, crm, start):
        crm.mailbox(crm.bob).create_event(
            "Bob's meeting",
            start,
            start + timedelta(hours=1),
            RequiredAttendees=[{"Mailbox": {"EmailAddress": "alice@contoso.example"}}],
        )
        calendar_pass(crm)  # alice holds an invitee copy organized by bob, a sync user
        assert not Activity.objects.exists()
        calendar_pass(crm, crm.bob)
        assert Activity.objects.get().subject == "Bob's meeting"

    def test_k7_k16_an_outside_organizers_meeting_becomes_one_stub_for_all_invitees(self, crm, start):
        crm.sim.add_mailbox("olga@partner.example", "Olga", password="olga-pw")
        olga = crm.sim.user("olga@partner.example")
        olga.create_event(
            "Partner sync",
            start,
            start + timedelta(hours=1),
            RequiredAttendees=[
                {"Mailbox": {"EmailAddress": a}} for a in ("alice@contoso.example", "bob@contoso.example")
            ],
        )
        calendar_pass(crm)
        calendar_pass(crm, crm.bob)
        stub = Activity.objects.get()
        assert stub.is_stub and stub.subject == "Partner sync"
        assert ItemLink.objects.filter(activity=stub).count() == 2
        crm.mailbox(crm.bob).delete(crm.mailbox(crm.bob).events()[0], hard=True)
        calendar_pass(crm, crm.bob)
        assert Activity.objects.filter(pk=stub.pk).exists()  # an invitee's deletion is not a cancellation


class TestBothWays:
    def test_k8_a_crm_change_is_pushed_and_a_second_pass_changes_nothing(self, crm, start):
        activity = meeting(crm, start, subject="Review", location="Room 1")
        calendar_pass(crm)
        activity.location = "Room 2"
        activity.save()
        assert calendar_pass(crm).updated == 1
        assert crm.mailbox().events()[0].props["Location"] == "Room 2"
        crm.sim.counters.reset()
        run = calendar_pass(crm)
        assert (run.created, run.updated, run.deleted) == (0, 0, 0)
        assert crm.sim.counters.total() <= 2

    def test_k8_an_outlook_change_is_pulled_into_the_crm(self, crm, start):
        activity = meeting(crm, start, subject="Review")
        calendar_pass(crm)
        (event,) = crm.mailbox().events()
        crm.mailbox().edit(event, Subject="Review (moved)", Location="Online")
        calendar_pass(crm)
        activity.refresh_from_db()
        assert (activity.subject, activity.location) == ("Review (moved)", "Online")
        assert calendar_pass(crm).updated == 0  # no ping-pong

    def test_k8_an_outlook_attendee_change_and_a_crm_edit_in_one_pass_both_land_without_ping_pong(
        self, crm, start
    ):
        activity = meeting(crm, start, subject="Review")
        calendar_pass(crm)
        (event,) = crm.mailbox().events()
        crm.mailbox().edit(
            event,
            RequiredAttendees=[
                {"Mailbox": {"EmailAddress": a}} for a in ("bob@contoso.example", "carol@contoso.example")
            ],
        )
        activity.subject = "Review (CRM)"
        activity.save()
        calendar_pass(crm)
        (event,) = crm.mailbox().events()
        assert event.props["Subject"] == "Review (CRM)"
        assert len(event.props["RequiredAttendees"]) == 2
        assert Attendee.objects.filter(activity=activity, email__iexact="carol@contoso.example").exists()
        crm.sim.counters.reset()
        run = calendar_pass(crm)
        assert (run.updated, crm.sim.counters["UpdateItem"]) == (0, 0)

    def test_k8_a_moved_change_key_alone_is_not_a_change(self, crm, start):
        meeting(crm, start, subject="Review")
        calendar_pass(crm)
        (event,) = crm.mailbox().events()
        crm.mailbox().dismiss_reminder(event)
        run = calendar_pass(crm)
        assert (run.updated, run.conflicts) == (0, 0)

    def test_k8_fields_changed_on_one_side_each_merge_and_both_sides_follow_the_policy(self, crm, start):
        crm.configure(conflict_policy="crm_wins")
        activity = meeting(crm, start, subject="Review", location="Room 1")
        calendar_pass(crm)
        (event,) = crm.mailbox().events()
        crm.mailbox().edit(event, Location="Outlook room", Subject="Outlook subject")
        activity.subject = "CRM subject"
        activity.save()
        run = calendar_pass(crm)
        activity.refresh_from_db()
        remote = crm.mailbox().events()[0]
        assert activity.location == "Outlook room" and remote.props["Location"] == "Outlook room"
        assert activity.subject == "CRM subject" and remote.props["Subject"] == "CRM subject"
        assert run.conflicts == 1
        conflict = Conflict.objects.get()
        assert (conflict.field, conflict.crm_value, conflict.exchange_value, conflict.choice) == (
            "subject",
            "CRM subject",
            "Outlook subject",
            "crm",
        )

    def test_k12_outlook_text_outside_the_markers_survives_and_never_overwrites_the_comment(self, crm, start):
        activity = meeting(crm, start, subject="Review", comment="Bring the contract")
        calendar_pass(crm)
        (event,) = crm.mailbox().events()
        crm.mailbox().edit(event, Body="Dial-in: 12345\n\n[/]Bring the contract[\\]")
        calendar_pass(crm)
        activity.refresh_from_db()
        assert activity.comment == "Bring the contract"
        activity.comment = "Bring the signed contract"
        activity.save()
        calendar_pass(crm)
        body = crm.mailbox().events()[0].body_html
        assert "Dial-in: 12345" in body and "Bring the signed contract" in body

    def test_k12_the_comment_is_left_out_for_meetings_with_outside_attendees(self, crm, start):
        meeting(
            crm, start, subject="Deal", comment="Our lowest price is 90", invite=("buyer@fabrikam.example",)
        )
        calendar_pass(crm)
        (event,) = crm.mailbox().events()
        assert "lowest price" not in (event.body_html or "")

    def test_k12_when_the_last_outside_attendee_leaves_the_crm_comment_reaches_the_body_and_stays(
        self, crm, start
    ):
        activity = meeting(
            crm, start, subject="Deal", comment="Our lowest price is 90", invite=("bob@contoso.example", "buyer@fabrikam.example")
        )
        calendar_pass(crm)
        (event,) = crm.mailbox().events()
        crm.mailbox().edit(event, RequiredAttendees=[{"Mailbox": {"EmailAddress": "bob@contoso.example"}}])
        calendar_pass(crm)
        activity.refresh_from_db()
        assert activity.comment == "Our lowest price is 90"
        assert "lowest price" in crm.mailbox().events()[0].body_html
        assert calendar_pass(crm).updated == 0

    def test_k12_when_an_outside_attendee_joins_the_comment_leaves_the_body_and_outlook_text_stays(
        self, crm, start
    ):
        activity = meeting(crm, start, subject="Deal", comment="Internal notes")
        calendar_pass(crm)
        (event,) = crm.mailbox().events()
        crm.mailbox().edit(event, Body="Dial-in: 12345\n\n[/]Internal notes[\\]")
        calendar_pass(crm)
        Attendee.objects.create(activity=activity, email="buyer@fabrikam.example", type="other", invite=True)
        calendar_pass(crm)
        body = crm.mailbox().events()[0].body_html
        assert "Internal notes" not in body and "Dial-in: 12345" in body
        activity.refresh_from_db()
        assert activity.comment == "Internal notes"
        assert calendar_pass(crm).updated == 0


class TestDeletions:
    def test_k9_deleting_a_crm_meeting_cancels_it_for_the_attendees(self, crm, start):
        activity = meeting(crm, start, subject="Review")
        calendar_pass(crm)
        activity.delete()
        assert calendar_pass(crm).deleted == 1
        assert crm.mailbox().events() == []
        (copy,) = crm.mailbox(crm.bob).events()
        assert copy.props.get("IsCancelled")
        assert not Activity.all_objects.filter(pk=activity.pk, deleted_at__isnull=True).exists()

    def test_k9_a_meeting_deleted_in_exchange_deletes_the_crm_activity(self, crm, start):
        activity = meeting(crm, start, subject="Review")
        calendar_pass(crm)
        crm.mailbox().delete(crm.mailbox().events()[0], hard=True)
        calendar_pass(crm)
        assert not Activity.objects.filter(pk=activity.pk).exists()

    def test_k9_a_personal_appointment_deleted_in_exchange_is_kept_and_not_re_created(self, crm, start):
        activity = f.activity(crm.env, subject="Focus time", start=start, organizer=crm.alice.employee)
        calendar_pass(crm)
        crm.mailbox().delete(crm.mailbox().events()[0], hard=True)
        calendar_pass(crm)
        assert Activity.objects.filter(pk=activity.pk).exists()
        assert ItemLink.objects.get(activity=activity).state == LinkState.DELETED_REMOTE
        calendar_pass(crm)
        assert crm.mailbox().events() == []

    def test_k9_an_event_created_in_a_pass_that_also_deleted_one_is_seen_deleted_in_outlook(self, crm, start):
        # The pass that deletes one event and creates another must still move its token past
        # both: Exchange reports no deletion of an item created after the token it is given.
        gone = f.activity(crm.env, subject="Gone", start=start, organizer=crm.alice.employee)
        calendar_pass(crm)
        gone.delete()
        new = f.activity(crm.env, subject="Focus time", start=start, organizer=crm.alice.employee)
        run = calendar_pass(crm)
        assert (run.created, run.deleted) == (1, 1)
        crm.mailbox().delete(crm.mailbox().events()[0], hard=True)
        calendar_pass(crm)
        assert ItemLink.objects.get(activity=new).state == LinkState.DELETED_REMOTE
        assert crm.mailbox().events() == []

    def test_k9_an_event_a_failed_pass_created_and_outlook_deleted_is_seen_deleted(self, crm, start, monkeypatch):
        # The failed pass keeps the old token, and Exchange reports no deletion of an item created
        # after the token it is given: the next pass reads what the failed one linked.
        activity = f.activity(crm.env, subject="Focus time", start=start, organizer=crm.alice.employee)
        original = CalendarPass.decide_and_write

        def written_then_dropped(self, *args, **kwargs):
            original(self, *args, **kwargs)
            raise TransientMailboxError("connection dropped after the writes")

        monkeypatch.setattr(CalendarPass, "decide_and_write", written_then_dropped)
        assert calendar_pass(crm).outcome == Outcome.FAILED
        monkeypatch.setattr(CalendarPass, "decide_and_write", original)
        crm.mailbox().delete(crm.mailbox().events()[0], hard=True)
        calendar_pass(crm)
        assert ItemLink.objects.get(activity=activity).state == LinkState.DELETED_REMOTE
        assert calendar_pass(crm).outcome == Outcome.SUCCESS
        assert crm.mailbox().events() == []

    @pytest.mark.parametrize("recurrence", ["", "FREQ=WEEKLY;COUNT=5"], ids=["single", "series"])
    def test_k9_an_event_outlook_moved_to_deleted_items_counts_as_deleted(self, crm, start, recurrence):
        # Outlook deletes to Deleted Items, where the event keeps its (immutable) id and can still
        # be read by it: over Graph, only being gone from the calendar says it was deleted.
        activity = meeting(crm, start, subject="Review", recurrence=recurrence)
        calendar_pass(crm)
        crm.mailbox().delete(crm.mailbox().events()[0])
        calendar_pass(crm)
        assert not Activity.objects.filter(pk=activity.pk).exists()

    def test_k9_an_outlook_edit_beats_a_crm_delete_and_arrives_with_the_activity(self, crm, start):
        activity = meeting(crm, start, subject="Review", location="Room 1")
        calendar_pass(crm)
        activity.delete()
        crm.mailbox().edit(crm.mailbox().events()[0], Location="Room 9")
        calendar_pass(crm)
        activity = Activity.objects.get(pk=activity.pk)
        assert activity.location == "Room 9"
        assert [e.props["Location"] for e in crm.mailbox().events()] == ["Room 9"]
        assert calendar_pass(crm).updated == 0

    def test_k9_an_outlook_edit_does_not_bring_back_an_activity_deleted_and_un_synchronized(self, crm, start):
        # The edit beats the deletion only: an activity also taken out of synchronization stays out,
        # and its meeting is cancelled as for any un-synchronized one.
        activity = meeting(crm, start, subject="Review", location="Room 1", invite=("carol@contoso.example",))
        calendar_pass(crm)
        activity.synchronize = False
        activity.save()
        activity.delete()
        crm.mailbox().edit(crm.mailbox().events()[0], Location="Room 9")
        calendar_pass(crm)
        assert [e for e in crm.mailbox().events() if not e.props.get("IsCancelled")] == []
        assert not ItemLink.objects.filter(activity_id=activity.pk).exists()
        assert calendar_pass(crm).updated == 0

    def test_k9_a_crash_right_after_writing_again_an_event_deleted_in_outlook_leaves_no_duplicate(
        self, crm, start
    ):
        activity = meeting(crm, start, subject="Review", invite=("carol@contoso.example",))
        calendar_pass(crm)
        crm.mailbox().delete(crm.mailbox().events()[0])  # Outlook deletes ...
        activity.location = "Room 5"  # ... while the CRM edits: the edit wins, it is written again
        activity.save()
        crashing = open_backend(crm.settings)
        real_create = crashing.create_events

        def create_then_crash(*args, **kwargs):
            real_create(*args, **kwargs)
            raise RuntimeError("the worker died right after the create")

        crashing.create_events = create_then_crash
        assert run_calendar_pass(crm.alice.pk, backend=crashing).outcome == Outcome.FAILED
        run = calendar_pass(crm)
        assert (run.outcome, run.created) == (Outcome.SUCCESS, 0)
        assert [e.props["Location"] for e in crm.mailbox().events()] == ["Room 5"]
        assert Activity.objects.count() == 1
        assert calendar_pass(crm).updated == 0

    def test_k9_un_synchronizing_an_activity_removes_its_event(self, crm, start):
        activity = f.activity(crm.env, subject="Visit", start=start, organizer=crm.alice.employee)
        calendar_pass(crm)
        activity.synchronize = False
        activity.save()
        assert calendar_pass(crm).deleted == 1
        assert crm.mailbox().events() == []


class TestCost:
    def test_an_idle_calendar_pass_costs_at_most_2_requests(self, crm, start):
        for i in range(5):
            meeting(crm, start + timedelta(hours=i), subject=f"M{i}")
        crm.mailbox().create_event("Own", start, start + timedelta(hours=1))
        assert calendar_pass(crm).outcome == Outcome.SUCCESS
        crm.sim.counters.reset()
        run = calendar_pass(crm)
        assert run.requests <= 2 and crm.sim.counters.total() <= 2


    def test_a_calendar_pass_makes_as_many_queries_for_many_events_as_for_few(
        self, crm, start, django_assert_max_num_queries
    ):
        def add(first: int, count: int) -> None:  # appointments, series and meetings
            for i in range(first, first + count):
                activity = f.activity(
                    crm.env,
                    subject=f"A{i}",
                    start=start + timedelta(hours=i),
                    organizer=crm.alice.employee,
                    recurrence="FREQ=WEEKLY;COUNT=4" if i % 3 == 1 else "",
                )
                if i % 3 == 2:
                    Attendee.objects.create(
                        activity=activity, email=crm.alice.employee.email, type="employee", meeting_organizer=True
                    )
                    Attendee.objects.create(activity=activity, email="bob@contoso.example", type="employee")

        def queries() -> int:
            with CaptureQueriesContext(connection) as captured:
                assert calendar_pass(crm).outcome == Outcome.SUCCESS
            return len(captured)

        add(0, 3)
        calendar_pass(crm)
        add(3, 3)
        with django_assert_max_num_queries(40):
            first_of_few = queries()
        with django_assert_max_num_queries(25):
            idle_with_few = queries()
        add(6, 15)
        first_of_many = queries()
        idle_with_many = queries()
        assert (first_of_many, idle_with_many) == (first_of_few, idle_with_few)

    def test_new_events_are_created_in_batches_meetings_apart(self, crm, start):
        crm.configure(batch_size=2)
        for i in range(5):
            f.activity(crm.env, subject=f"A{i}", start=start + timedelta(hours=i), organizer=crm.alice.employee)
        for i in range(2):
            meeting(crm, start + timedelta(hours=i), subject=f"M{i}")
        crm.sim.counters.reset()
        assert calendar_pass(crm).created == 7
        counters = crm.sim.counters
        if crm.backend == "domino":
            # The Domino REST API has no batch: one request per entry (docs/domino.md).
            assert counters["domino.calendar.create"] == 7
        else:
            creates = (
                counters["graph.$batch"] + counters["graph.events.create"] if crm.is_graph else counters["CreateItem"]
            )
            assert creates == 3 + 1  # 5 appointments in batches of 2, the 2 meetings in one
        assert len(crm.mailbox(crm.bob).events()) == 2  # the invitations went out


class TestRecurrence:
    def test_k10_a_crm_series_is_written_as_an_exchange_series_and_stays_quiet(self, crm, start):
        f.activity(
            crm.env,
            subject="Weekly",
            start=start,
            organizer=crm.alice.employee,
            recurrence="FREQ=WEEKLY;COUNT=5",
        )
        calendar_pass(crm)
        (series,) = crm.mailbox().events()
        assert series.props.get("Recurrence")
        assert len(crm.mailbox().view(start - timedelta(hours=1), start + timedelta(weeks=6))) == 5
        run = calendar_pass(crm)
        assert (run.updated, run.conflicts) == (0, 0)

    def test_k10_an_outlook_series_is_imported_with_its_pattern(self, crm, start):
        crm.mailbox().create_event(
            "Standup",
            start,
            start + timedelta(minutes=15),
            Recurrence={
                "pattern": {"type": "DailyRecurrence", "Interval": 1},
                "range": {
                    "type": "NumberedRecurrence",
                    "StartDate": start.date().isoformat(),
                    "NumberOfOccurrences": 3,
                },
            },
        )
        calendar_pass(crm)
        activity = Activity.objects.get(subject="Standup")
        assert "FREQ=DAILY" in activity.recurrence and "COUNT=3" in activity.recurrence
        assert calendar_pass(crm).updated == 0


class TestBehavioursThatHadNoTest:
    """Issue 15, finding 5: behaviours that worked without a test to hold them."""

    def test_finding5_k3_an_attendee_with_invite_off_is_not_written(self, crm, start):
        activity = meeting(crm, start, subject="Review")
        Attendee.objects.create(activity=activity, email="quiet@fabrikam.example", type="other", invite=False)
        calendar_pass(crm)
        (event,) = crm.mailbox().events()
        written = {
            a["Mailbox"]["EmailAddress"].lower()
            for name in ("RequiredAttendees", "OptionalAttendees")
            for a in event.props.get(name) or []
        }
        assert "bob@contoso.example" in written
        assert "quiet@fabrikam.example" not in written
        assert calendar_pass(crm).updated == 0  # the attendee left out is not a difference

    def test_finding5_k11_a_private_outlook_event_imports_as_private(self, crm, start):
        crm.mailbox().create_event("Doctor", start, start + timedelta(hours=1), Sensitivity="Private")
        crm.mailbox().create_event("Team lunch", start, start + timedelta(hours=1))
        calendar_pass(crm)
        assert dict(Activity.objects.values_list("subject", "private")) == {"Doctor": True, "Team lunch": False}

    def test_finding5_k3_a_changed_location_or_time_reaches_the_invitees_as_a_meeting_update(self, crm, start):
        activity = meeting(crm, start, subject="Review", location="Room 1")
        calendar_pass(crm)
        bob = crm.mailbox(crm.bob)
        assert [m.props["MeetingRequestType"] for m in bob.items("inbox")] == ["NewMeetingRequest"]

        activity.location = "Room 2"
        activity.save()
        calendar_pass(crm)
        (copy,) = bob.events()
        assert copy.props["Location"] == "Room 2"
        assert [m.props["MeetingRequestType"] for m in bob.items("inbox")][-1] == "FullUpdate"

        activity.start, activity.end = start + timedelta(hours=2), start + timedelta(hours=3)
        activity.save()
        calendar_pass(crm)
        (copy,) = bob.events()
        assert copy.props["Start"] == start + timedelta(hours=2)
        assert [m.props["MeetingRequestType"] for m in bob.items("inbox")].count("FullUpdate") == 2


class TestSafetyLimitOnCrmDeletions:
    def test_an_emptied_outlook_calendar_does_not_delete_every_crm_meeting(self, crm, start):
        # Reliability contract: an emptied folder is no reason to delete everything on the other
        # side; K9's deletions in the CRM count against the safety limit as Exchange's do.
        crm.configure(safety_limit_minimum=3, safety_limit_percent=20)
        activities = [meeting(crm, start + timedelta(hours=i), subject=f"Review {i}") for i in range(5)]
        calendar_pass(crm)
        for event in crm.mailbox().events():
            crm.mailbox().delete(event)
        run = calendar_pass(crm)
        assert run.outcome == Outcome.HELD and "Held" in run.error
        assert Activity.objects.filter(pk__in=[a.pk for a in activities]).count() == 5
        assert calendar_pass(crm).outcome == Outcome.HELD  # read again until someone decides
        crm.alice.confirm_limits(["calendar"])
        crm.alice.save()
        run = calendar_pass(crm)
        assert (run.outcome, run.deleted) == (Outcome.SUCCESS, 5)
        assert not Activity.objects.filter(pk__in=[a.pk for a in activities]).exists()
        assert calendar_pass(crm).deleted == 0
