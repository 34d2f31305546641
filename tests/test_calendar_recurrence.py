"""Recurring series with their exceptions, both ways (K10), against exchange_sim with real
exchangelib: people move and delete occurrences in Outlook, and the CRM removes and changes
occurrences of its activities; each side ends up with the other's exceptions, and a pass after
a pass changes nothing (no ping-pong)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from synccore.models import Activity, Attendee, Conflict
from synccore.sync.calendar import run_calendar_pass
from tests.fixtures import factories as f

pytestmark = [pytest.mark.django_db, pytest.mark.backends("ews", "graph", "domino")]


@pytest.fixture
def start():
    # A Monday 09:00 UTC more than a day ahead: whole weeks keep their weekday.
    day = timezone.now().astimezone(UTC).date() + timedelta(days=2)
    day += timedelta(days=(7 - day.weekday()) % 7)
    return datetime(day.year, day.month, day.day, 9, 0, tzinfo=UTC)


def series(crm, start, *, count=5, organizer=None, invite=(), **fields):
    organizer = organizer or crm.alice.employee
    activity = f.activity(
        crm.env,
        subject="Jour fixe",
        start=start,
        end=start + timedelta(hours=1),
        organizer=organizer,
        recurrence=f"FREQ=WEEKLY;COUNT={count}",
        **fields,
    )
    if invite:
        Attendee.objects.create(activity=activity, email=organizer.email, type="employee", meeting_organizer=True)
        for email in invite:
            Attendee.objects.create(activity=activity, email=email, type="employee", invite=True)
    return activity


def calendar_pass(crm, user=None):
    return run_calendar_pass((user or crm.alice).pk)


def quiet(crm, user=None) -> None:
    """A pass after a pass: nothing written on either side, at most two requests."""
    crm.sim.counters.reset()
    run = calendar_pass(crm, user)
    assert (run.created, run.updated, run.deleted, run.conflicts) == (0, 0, 0, 0)
    assert crm.event_writes() == 0
    second = calendar_pass(crm, user)
    assert (second.created, second.updated, second.deleted) == (0, 0, 0)
    assert second.requests <= 2


def starts(mailbox, start, weeks=6) -> list[datetime]:
    return [o.props["Start"] for o in mailbox.view(start - timedelta(hours=1), start + timedelta(weeks=weeks))]


def week(start, n, hours=0):
    return start + timedelta(weeks=n, hours=hours)


class TestOutlookToCrm:
    def test_k10_an_occurrence_moved_in_outlook_becomes_a_crm_exception(self, crm, start):
        activity = series(crm, start)
        calendar_pass(crm)
        alice = crm.mailbox()
        (master,) = alice.events()
        alice.edit(alice.occurrence(master, 2), Start=week(start, 1, 3), End=week(start, 1, 4), Location="Room 7")
        assert calendar_pass(crm).updated == 1
        activity.refresh_from_db()
        (exception,) = activity.recurrence_exceptions
        assert datetime.fromisoformat(exception["original_start"]) == week(start, 1)
        assert datetime.fromisoformat(exception["start"]) == week(start, 1, 3)
        assert exception["location"] == "Room 7" and "subject" not in exception
        quiet(crm)

    def test_k10_an_occurrence_deleted_in_outlook_is_removed_in_the_crm(self, crm, start):
        activity = series(crm, start)
        calendar_pass(crm)
        alice = crm.mailbox()
        alice.delete(alice.occurrence(alice.events()[0], 3))
        calendar_pass(crm)
        activity.refresh_from_db()
        assert [datetime.fromisoformat(d) for d in activity.recurrence_exdates] == [week(start, 2)]
        assert len(starts(alice, start)) == 4
        quiet(crm)

    def test_k10_an_outlook_series_with_exceptions_is_imported_with_them(self, crm, start):
        alice = crm.mailbox()
        master = alice.create_event(
            "Standup",
            start,
            start + timedelta(minutes=15),
            time_zone="UTC",
            Recurrence={
                "pattern": {"type": "DailyRecurrence", "Interval": 1},
                "range": {"type": "NumberedRecurrence", "StartDate": start.date().isoformat(), "NumberOfOccurrences": 4},
            },
        )
        alice.delete(alice.occurrence(master, 2))
        alice.edit(alice.occurrence(master, 3), Subject="Standup (long)", End=start + timedelta(days=2, minutes=45))
        calendar_pass(crm)
        activity = Activity.objects.get(subject="Standup")
        assert [datetime.fromisoformat(d) for d in activity.recurrence_exdates] == [start + timedelta(days=1)]
        (exception,) = activity.recurrence_exceptions
        assert exception["subject"] == "Standup (long)"
        assert datetime.fromisoformat(exception["end"]) == start + timedelta(days=2, minutes=45)
        quiet(crm)


class TestCrmToOutlook:
    def test_k10_a_removed_crm_occurrence_is_deleted_from_the_exchange_series(self, crm, start):
        activity = series(crm, start)
        calendar_pass(crm)
        activity.recurrence_exdates = [week(start, 1).isoformat()]
        activity.save()
        assert calendar_pass(crm).updated == 1
        assert week(start, 1) not in starts(crm.mailbox(), start)
        assert len(starts(crm.mailbox(), start)) == 4
        quiet(crm)

    def test_k10_a_modified_crm_occurrence_is_written_to_that_occurrence_only(self, crm, start):
        activity = series(crm, start, location="Room 1")
        calendar_pass(crm)
        activity.recurrence_exceptions = [
            {
                "original_start": week(start, 2).isoformat(),
                "start": week(start, 2, 5).isoformat(),
                "end": week(start, 2, 6).isoformat(),
                "location": "Online",
            }
        ]
        activity.save()
        calendar_pass(crm)
        view = crm.mailbox().view(start - timedelta(hours=1), start + timedelta(weeks=6))
        assert [(o.props["Start"], o.props.get("Location")) for o in view] == [
            (start, "Room 1"),
            (week(start, 1), "Room 1"),
            (week(start, 2, 5), "Online"),
            (week(start, 3), "Room 1"),
            (week(start, 4), "Room 1"),
        ]
        quiet(crm)

    def test_k10_a_new_crm_series_is_written_with_its_exceptions(self, crm, start):
        series(
            crm,
            start,
            recurrence_exdates=[week(start, 3).isoformat()],
            recurrence_exceptions=[{"original_start": week(start, 1).isoformat(), "subject": "Jour fixe (extra)"}],
        )
        assert calendar_pass(crm).created == 1
        view = crm.mailbox().view(start - timedelta(hours=1), start + timedelta(weeks=6))
        assert [(o.props["Start"], o.props["Subject"]) for o in view] == [
            (start, "Jour fixe"),
            (week(start, 1), "Jour fixe (extra)"),
            (week(start, 2), "Jour fixe"),
            (week(start, 4), "Jour fixe"),
        ]
        quiet(crm)

    def test_k10_an_occurrence_brought_back_in_the_crm_returns_and_the_other_exceptions_stay(
        self, crm, start
    ):
        activity = series(crm, start)
        calendar_pass(crm)
        alice = crm.mailbox()
        master = alice.events()[0]
        alice.delete(alice.occurrence(master, 2))
        alice.edit(alice.occurrence(master, 4), Location="Moved room")
        calendar_pass(crm)
        activity.refresh_from_db()
        assert len(activity.recurrence_exdates) == 1 and len(activity.recurrence_exceptions) == 1
        activity.recurrence_exdates = []
        activity.save()
        calendar_pass(crm)
        view = alice.view(start - timedelta(hours=1), start + timedelta(weeks=6))
        assert [o.props["Start"] for o in view] == [week(start, n) for n in range(5)]
        assert [o.props.get("Location") for o in view][3] == "Moved room"
        quiet(crm)

    def test_k10_a_meeting_occurrence_removed_in_the_crm_is_cancelled_for_the_attendees_only_once(
        self, crm, start
    ):
        activity = series(crm, start, invite=("bob@contoso.example",))
        calendar_pass(crm)
        calendar_pass(crm, crm.bob)
        activity.recurrence_exdates = [week(start, 1).isoformat()]
        activity.save()
        calendar_pass(crm)
        assert week(start, 1) not in starts(crm.mailbox(crm.bob), start)
        assert len(starts(crm.mailbox(crm.bob), start)) == 4
        quiet(crm)
        quiet(crm, crm.bob)
        assert Activity.objects.count() == 1


class TestBothSides:
    def test_k8_k10_different_occurrences_changed_on_each_side_both_survive(self, crm, start):
        activity = series(crm, start)
        calendar_pass(crm)
        alice = crm.mailbox()
        alice.delete(alice.occurrence(alice.events()[0], 2))
        activity.recurrence_exceptions = [
            {"original_start": week(start, 3).isoformat(), "location": "CRM room"}
        ]
        activity.save()
        run = calendar_pass(crm)
        assert run.conflicts == 0
        activity.refresh_from_db()
        assert [datetime.fromisoformat(d) for d in activity.recurrence_exdates] == [week(start, 1)]
        view = alice.view(start - timedelta(hours=1), start + timedelta(weeks=6))
        assert [(o.props["Start"], o.props.get("Location")) for o in view] == [
            (start, None),
            (week(start, 2), None),
            (week(start, 3), "CRM room"),
            (week(start, 4), None),
        ]
        quiet(crm)

    def test_k8_k10_an_occurrence_edited_in_the_crm_and_deleted_in_outlook_comes_back_edited(
        self, crm, start
    ):
        activity = series(crm, start)
        calendar_pass(crm)
        alice = crm.mailbox()
        alice.delete(alice.occurrence(alice.events()[0], 2))
        activity.recurrence_exceptions = [{"original_start": week(start, 1).isoformat(), "location": "Kept"}]
        activity.save()
        calendar_pass(crm)
        activity.refresh_from_db()
        assert activity.recurrence_exdates == []
        view = alice.view(start - timedelta(hours=1), start + timedelta(weeks=6))
        assert [o.props.get("Location") for o in view] == [None, "Kept", None, None, None]
        assert Conflict.objects.get().field.startswith("occurrences ")
        quiet(crm)

    def test_k8_k10_the_organizers_cancellation_of_a_meeting_occurrence_beats_a_crm_edit(self, crm, start):
        activity = series(crm, start, invite=("bob@contoso.example",))
        calendar_pass(crm)
        alice = crm.mailbox()
        alice.delete(alice.occurrence(alice.events()[0], 2))
        activity.recurrence_exceptions = [{"original_start": week(start, 1).isoformat(), "location": "Lost"}]
        activity.save()
        calendar_pass(crm)
        activity.refresh_from_db()
        assert [datetime.fromisoformat(d) for d in activity.recurrence_exdates] == [week(start, 1)]
        assert activity.recurrence_exceptions == []
        quiet(crm)


class TestSeriesThatBeganInThePast:
    """K15: changing a series that began in the past changes only its present and future
    occurrences. As Outlook does it, the old Exchange series is ended at its last occurrence that
    is over and a new series carries the rest; the CRM activity stays one activity."""

    @pytest.fixture
    def begun(self, crm, clock):
        """A weekly series of six, written; then an hour before the third: two occurrences over."""
        first = clock.now().replace(hour=9, minute=0) + timedelta(days=1)
        activity = series(crm, first, count=6, location="Room 1")
        calendar_pass(crm)
        clock.set(week(first, 2, -1), frozen=True)
        return activity, first

    def view(self, crm, first, user=None):
        return [
            (o.props["Start"], o.props.get("Location"), o.props.get("Subject"))
            for o in crm.mailbox(user).view(first - timedelta(hours=1), first + timedelta(weeks=8))
        ]

    def test_k15_a_changed_location_reaches_only_the_present_and_future_occurrences(self, crm, begun):
        activity, first = begun
        activity.location = "Room 2"
        activity.save()
        calendar_pass(crm)
        assert self.view(crm, first) == [
            (week(first, 0), "Room 1", "Jour fixe"),
            (week(first, 1), "Room 1", "Jour fixe"),
            *[(week(first, n), "Room 2", "Jour fixe") for n in range(2, 6)],
        ]
        assert len(crm.mailbox().events()) == 2  # the old series, ended, and the new one
        assert Activity.objects.count() == 1
        quiet(crm)

    def test_k15_a_new_time_moves_only_the_coming_meetings_and_the_past_keeps_its_exceptions(
        self, crm, clock
    ):
        first = clock.now().replace(hour=9, minute=0) + timedelta(days=1)
        activity = series(crm, first, count=6, invite=("bob@contoso.example",))
        calendar_pass(crm)
        alice = crm.mailbox()
        alice.edit(alice.occurrence(alice.events()[0], 1), Start=week(first, 0, -1), End=week(first, 0))
        calendar_pass(crm)
        clock.set(week(first, 2, -1), frozen=True)
        activity.refresh_from_db()
        activity.start, activity.end = week(first, 0, 2), week(first, 0, 3)
        activity.save()
        calendar_pass(crm)
        expected = [
            week(first, 0, -1),  # moved in Outlook before it took place: stays moved
            week(first, 1),
            *[week(first, n, 2) for n in range(2, 6)],
        ]
        assert [start for start, _, _ in self.view(crm, first)] == expected
        calendar_pass(crm, crm.bob)
        assert [start for start, _, _ in self.view(crm, first, crm.bob)] == expected
        assert Activity.objects.count() == 1
        quiet(crm)
        quiet(crm, crm.bob)

    def test_k15_an_occurrence_change_of_a_series_that_began_in_the_past_stays_in_place(self, crm, begun):
        activity, first = begun
        activity.recurrence_exdates = [week(first, 4).isoformat()]
        activity.save()
        calendar_pass(crm)
        assert len(crm.mailbox().events()) == 1
        assert [start for start, _, _ in self.view(crm, first)] == [week(first, n) for n in (0, 1, 2, 3, 5)]
        quiet(crm)

    def test_k2_k15_deleting_a_series_that_began_in_the_past_ends_it_there(self, crm, begun):
        activity, first = begun
        activity.delete()
        assert calendar_pass(crm).deleted == 1
        assert [start for start, _, _ in self.view(crm, first)] == [week(first, 0), week(first, 1)]
        quiet(crm)

    def test_k2_a_crm_series_that_began_in_the_past_is_written_from_its_present_occurrence(self, crm, clock):
        first = clock.now().replace(hour=9, minute=0) - timedelta(weeks=2)
        clock.set(week(first, 3, -1), frozen=True)
        series(crm, first, count=6)
        assert calendar_pass(crm).created == 1
        assert [start for start, _, _ in self.view(crm, first)] == [week(first, n) for n in range(3, 6)]
        quiet(crm)

    def test_k15_outlook_moving_the_new_series_gives_the_crm_its_shape(self, crm, begun):
        activity, first = begun
        activity.location = "Room 2"
        activity.save()
        calendar_pass(crm)
        alice = crm.mailbox()
        new = next(e for e in alice.events() if e.props.get("Location") == "Room 2")
        alice.edit(new, Start=week(first, 2, 1), End=week(first, 2, 2))
        calendar_pass(crm)
        activity.refresh_from_db()
        assert activity.start == week(first, 2, 1)
        assert "COUNT=4" in activity.recurrence
        quiet(crm)

    def test_k2_k15_deleting_an_all_day_outlook_series_that_began_in_the_past_ends_it(self, crm, clock):
        first = (clock.now() - timedelta(weeks=2)).date()
        crm.mailbox().create_event(
            "Holiday week",
            datetime(first.year, first.month, first.day, tzinfo=UTC),
            datetime(first.year, first.month, first.day, tzinfo=UTC) + timedelta(days=1),
            time_zone="UTC",
            IsAllDayEvent=True,
            Recurrence={
                "pattern": {"type": "DailyRecurrence", "Interval": 7},
                "range": {"type": "NumberedRecurrence", "StartDate": first.isoformat(), "NumberOfOccurrences": 5},
            },
        )
        calendar_pass(crm)
        Activity.objects.get(subject="Holiday week").delete()
        assert calendar_pass(crm).deleted == 1
        first_start = datetime(first.year, first.month, first.day, tzinfo=UTC)
        # Two occurrences are over; today's is in progress, so it is present and goes (K2).
        assert [start for start, _, _ in self.view(crm, first_start)] == [week(first_start, n) for n in range(2)]
        quiet(crm)

    def test_k2_a_series_deleted_in_outlook_but_edited_in_the_crm_comes_back_without_its_past(
        self, crm, begun
    ):
        activity, first = begun
        alice = crm.mailbox()
        alice.delete(alice.events()[0])
        activity.location = "Room 2"
        activity.save()
        calendar_pass(crm)  # an edit beats a delete: the series is written again, from now on
        assert [(start, location) for start, location, _ in self.view(crm, first)] == [
            (week(first, n), "Room 2") for n in range(2, 6)
        ]
        quiet(crm)

    def test_k2_a_meeting_series_written_again_leaves_the_attendees_past_alone(self, crm, clock):
        first = clock.now().replace(hour=9, minute=0) + timedelta(days=1)
        activity = series(crm, first, count=6, invite=("carol@contoso.example",))
        calendar_pass(crm)
        alice, carol = crm.mailbox(), crm.sim.user("carol@contoso.example")
        alice.edit(alice.occurrence(alice.events()[0], 1), Location="Moved here")
        clock.set(week(first, 2, -1), frozen=True)
        before = [(o.props["Start"], o.props.get("Location")) for o in carol.view(first - timedelta(hours=1), week(first, 2))]
        alice.delete(alice.events()[0])  # the organizer cancels in Outlook ...
        activity.refresh_from_db()
        activity.subject = "Jour fixe (kept)"  # ... while the CRM edits: the edit wins
        activity.save()
        calendar_pass(crm)
        after = [(o.props["Start"], o.props.get("Location")) for o in carol.view(first - timedelta(hours=1), week(first, 2))]
        assert after == before == [(week(first, 0), "Moved here"), (week(first, 1), None)]
        coming = [o.props["Subject"] for o in carol.view(week(first, 2, -1), week(first, 7)) if not o.props.get("IsCancelled")]
        assert coming == ["Jour fixe (kept)"] * 4
        quiet(crm)

    def test_k2_a_meeting_series_un_synchronized_and_synchronized_again_is_a_new_meeting(self, crm, clock):
        """Un-synchronizing ends a series that began in the past (its past stays, under its UID);
        synchronizing it again writes the rest as a new meeting, never a second item with that
        UID in the organizer's calendar."""
        first = clock.now().replace(hour=9, minute=0) + timedelta(days=1)
        activity = series(crm, first, count=6, invite=("bob@contoso.example",))
        calendar_pass(crm)
        clock.set(week(first, 2, -1), frozen=True)
        activity.refresh_from_db()
        activity.synchronize = False
        activity.save()
        calendar_pass(crm)
        activity.synchronize = True
        activity.save()
        calendar_pass(crm)
        uids = [e.props.get("UID") for e in crm.mailbox().events()]
        assert len(uids) == len(set(uids)) == 2
        assert [start for start, _, _ in self.view(crm, first)] == [week(first, n) for n in range(6)]
        calendar_pass(crm, crm.bob)
        bob_uids = [e.props.get("UID") for e in crm.mailbox(crm.bob).events() if not e.props.get("IsCancelled")]
        assert len(bob_uids) == len(set(bob_uids))
        quiet(crm)
        quiet(crm, crm.bob)
