"""Time in the calendar synchronization, on one clock shared by the product and exchange_sim
(the ``clock`` fixture): series across DST changes keep their local time (K10), an unknown time
zone is an item error rather than a shifted time, all-day and multi-day events keep their shape,
and the window slides a day at a time without deleting what leaves it (K2, K15)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from synccore.mailbox.base import Series
from synccore.models import Activity, Attendee, ItemLink, LinkState, Outcome
from synccore.sync.calendar import run_calendar_pass
from tests.fixtures import factories as f

pytestmark = [pytest.mark.django_db, pytest.mark.backends("ews", "graph", "domino")]

# 2027: Europe/Berlin leaves winter time on 28 March, America/New_York on 14 March.
DST = {"Europe/Berlin": date(2027, 3, 28), "America/New_York": date(2027, 3, 14)}
WINDOWS = {"Europe/Berlin": "W. Europe Standard Time", "America/New_York": "Eastern Standard Time"}


def calendar_pass(crm, user=None):
    return run_calendar_pass((user or crm.alice).pk)


def quiet(crm) -> None:
    crm.sim.counters.reset()
    run = calendar_pass(crm)
    assert (run.created, run.updated, run.deleted, run.conflicts, run.skipped) == (0, 0, 0, 0, 0)
    assert crm.event_writes() == 0
    assert calendar_pass(crm).requests <= 2


def local(zone: str, day: date, hour: int) -> datetime:
    return datetime.combine(day, time(hour), ZoneInfo(zone))


def local_times(items, zone: str) -> list[tuple[date, time]]:
    return [
        (i.props["Start"].astimezone(ZoneInfo(zone)).date(), i.props["Start"].astimezone(ZoneInfo(zone)).time())
        for i in items
    ]


@pytest.fixture
def before_dst(clock):
    clock.set(datetime(2027, 2, 15, 12, tzinfo=UTC), frozen=True)
    return clock


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York"])
class TestDaylightSavingTime:
    def first_monday(self, zone: str) -> date:
        day = DST[zone] - timedelta(weeks=2)
        return day - timedelta(days=day.weekday())

    def test_k10_a_crm_weekly_series_keeps_its_local_time_across_the_dst_change(self, crm, before_dst, zone):
        first = self.first_monday(zone)
        activity = f.activity(
            crm.env,
            subject="Weekly",
            start=local(zone, first, 10),
            end=local(zone, first, 11),
            time_zone=zone,
            organizer=crm.alice.employee,
            recurrence="FREQ=WEEKLY;COUNT=5",
        )
        calendar_pass(crm)
        view = crm.mailbox().view(local(zone, first, 0), local(zone, first + timedelta(weeks=6), 0))
        assert local_times(view, zone) == [(first + timedelta(weeks=n), time(10)) for n in range(5)]
        assert len({i.props["Start"].astimezone(UTC).hour for i in view}) == 2  # the UTC hour moves
        (series,) = crm.mailbox().events()
        assert series.props["StartTimeZone"] == WINDOWS[zone]
        # The CRM expands its activity the same way.
        crm_starts = list(Series(activity.recurrence, activity.start, zone).starts())
        assert crm_starts == [i.props["Start"] for i in view]
        quiet(crm)
        before_dst.set(local(zone, DST[zone] + timedelta(days=2), 12), frozen=True)
        quiet(crm)

    def test_k10_an_occurrence_after_the_change_is_found_by_its_local_time(self, crm, before_dst, zone):
        first = self.first_monday(zone)
        activity = f.activity(
            crm.env,
            subject="Weekly",
            start=local(zone, first, 10),
            end=local(zone, first, 11),
            time_zone=zone,
            organizer=crm.alice.employee,
            recurrence="FREQ=WEEKLY;COUNT=5",
        )
        calendar_pass(crm)
        after = first + timedelta(weeks=3)
        activity.recurrence_exdates = [local(zone, after, 10).isoformat()]
        activity.save()
        calendar_pass(crm)
        view = crm.mailbox().view(local(zone, first, 0), local(zone, first + timedelta(weeks=6), 0))
        assert [d for d, _ in local_times(view, zone)] == [first + timedelta(weeks=n) for n in (0, 1, 2, 4)]
        quiet(crm)

    def test_k10_an_outlook_series_across_the_change_is_imported_in_its_zone(self, crm, before_dst, zone):
        first = self.first_monday(zone)
        crm.mailbox().create_event(
            "Outlook weekly",
            local(zone, first, 9),
            local(zone, first, 9) + timedelta(minutes=30),
            time_zone=WINDOWS[zone],
            Recurrence={
                "pattern": {"type": "WeeklyRecurrence", "Interval": 1, "DaysOfWeek": "Monday"},
                "range": {"type": "NumberedRecurrence", "StartDate": first.isoformat(), "NumberOfOccurrences": 4},
            },
        )
        calendar_pass(crm)
        activity = Activity.objects.get(subject="Outlook weekly")
        assert activity.time_zone == zone
        starts = list(Series(activity.recurrence, activity.start, activity.time_zone).starts())
        assert [s.astimezone(ZoneInfo(zone)).time() for s in starts] == [time(9)] * 4
        quiet(crm)


class TestUnknownTimeZone:
    def test_k10_a_crm_activity_in_an_unknown_zone_is_an_item_error_and_the_pass_goes_on(self, crm, clock):
        start = clock.now() + timedelta(days=2)
        bad = f.activity(crm.env, subject="Mars", start=start, time_zone="Mars/Olympus", organizer=crm.alice.employee)
        f.activity(crm.env, subject="Earth", start=start, organizer=crm.alice.employee)
        run = calendar_pass(crm)
        assert (run.created, run.skipped, run.outcome) == (1, 1, Outcome.PARTIAL)
        assert [e.props["Subject"] for e in crm.mailbox().events()] == ["Earth"]
        link = ItemLink.objects.get(activity=bad)
        assert link.state == LinkState.SKIPPED and "Mars/Olympus" in link.last_error

    def test_k10_an_outlook_event_in_an_unknown_zone_is_skipped_not_imported_shifted(self, crm, clock):
        start = clock.now() + timedelta(days=2)
        crm.mailbox().create_event("Mars call", start, start + timedelta(hours=1), time_zone="Mars Standard Time")
        crm.mailbox().create_event("Earth call", start, start + timedelta(hours=1))
        run = calendar_pass(crm)
        assert (run.created, run.skipped) == (1, 1)
        assert "Mars call" in run.error and "time zone" in run.error
        assert list(Activity.objects.values_list("subject", flat=True)) == ["Earth call"]


class TestAllDay:
    ZONE = "Europe/Berlin"

    def midnight(self, day: date) -> datetime:
        return local(self.ZONE, day, 0)

    @pytest.mark.parametrize("days", [1, 2, 3])
    def test_k10_crm_all_day_and_multi_day_events_keep_their_days(self, crm, before_dst, days):
        # Across the DST change; with two days, the last day is the 23-hour one.
        first = DST[self.ZONE] - timedelta(days=1)
        f.activity(
            crm.env,
            subject=f"Fair {days}",
            all_day=True,
            time_zone=self.ZONE,
            start=self.midnight(first),
            end=self.midnight(first + timedelta(days=days)),
            organizer=crm.alice.employee,
        )
        calendar_pass(crm)
        (event,) = crm.mailbox().events()
        assert event.props["IsAllDayEvent"]
        assert event.props["Start"] == self.midnight(first)
        assert event.props["End"] == self.midnight(first + timedelta(days=days))
        quiet(crm)
        crm.mailbox().touch(event)  # read back from Exchange: the same days, no change
        quiet(crm)

    def test_k10_an_occurrence_of_an_all_day_series_renamed_in_outlook_keeps_its_day(self, crm, clock):
        # Graph gives an all-day occurrence as midnights whatever zone it is asked in: the
        # occurrence is read in the series' own zone, so it stays on its day (found in New York).
        zone = "America/New_York"
        first = clock.now().astimezone(ZoneInfo(zone)).date() + timedelta(days=2)
        activity = f.activity(
            crm.env,
            subject="Trade fair",
            all_day=True,
            time_zone=zone,
            start=local(zone, first, 0),
            end=local(zone, first + timedelta(days=1), 0),
            organizer=crm.alice.employee,
            recurrence="FREQ=WEEKLY;COUNT=4",
        )
        calendar_pass(crm)
        mailbox = crm.mailbox()
        mailbox.edit(mailbox.occurrence(mailbox.events()[0], 2), Subject="Trade fair (hall B)")
        calendar_pass(crm)
        activity.refresh_from_db()
        (exception,) = activity.recurrence_exceptions
        assert exception["subject"] == "Trade fair (hall B)"
        assert datetime.fromisoformat(exception["original_start"]) == local(zone, first + timedelta(weeks=1), 0)
        assert exception["start"] == exception["original_start"]  # not moved: the day of its slot
        quiet(crm)

    @pytest.mark.parametrize("days", [2, 3])
    def test_k10_an_outlook_multi_day_event_becomes_a_multi_day_activity(self, crm, before_dst, days):
        first = DST[self.ZONE] - timedelta(days=1)
        crm.mailbox().create_event(
            "Trade fair",
            self.midnight(first),
            self.midnight(first + timedelta(days=days)),
            time_zone="W. Europe Standard Time",
            IsAllDayEvent=True,
        )
        calendar_pass(crm)
        activity = Activity.objects.get(subject="Trade fair")
        assert activity.all_day and activity.time_zone == self.ZONE
        assert (activity.start, activity.end) == (self.midnight(first), self.midnight(first + timedelta(days=days)))
        quiet(crm)


class TestSlidingWindow:
    @pytest.fixture
    def window(self, crm, clock):
        """A 14-day horizon seen from 1 March 2027 at noon: the window ends at 16 March, 00:00 UTC."""
        crm.configure(calendar_horizon_days=14)
        clock.set(datetime(2027, 3, 1, 12, tzinfo=UTC), frozen=True)
        return clock

    def test_k15_the_window_slides_a_day_and_each_new_slice_is_read_once(self, crm, window):
        beyond = datetime(2027, 3, 17, 10, tzinfo=UTC)
        crm.mailbox().create_event("Far Outlook", beyond, beyond + timedelta(hours=1))
        f.activity(crm.env, subject="Far CRM", start=beyond, organizer=crm.alice.employee)
        weekly = f.activity(
            crm.env,
            subject="Weekly",
            start=datetime(2027, 3, 2, 9, tzinfo=UTC),
            organizer=crm.alice.employee,
            recurrence="FREQ=WEEKLY;COUNT=8",
        )
        first = calendar_pass(crm)
        assert first.created == 1  # the series; the far items are outside the window
        assert not Activity.objects.filter(subject="Far Outlook").exists()

        # Over Graph the delta round itself is bounded to the window: on the day it slides the
        # backend also starts a new round and checks the series masters' change keys (GETs).
        reads = "GetItem" if crm.backend == "ews" else None
        window.advance(timedelta(days=1))  # the window now ends at 17 March: nothing new in it
        crm.sim.counters.reset()
        run = calendar_pass(crm)
        assert (run.created, run.updated) == (0, 0)
        assert crm.sim.counters[crm.op("calendar_slice")] == 1
        assert reads is None or crm.sim.counters[reads] == 0

        window.advance(timedelta(days=1))  # ends at 18 March: the 17th came into range
        crm.sim.counters.reset()
        run = calendar_pass(crm)
        assert (run.created, run.updated, run.deleted) == (2, 0, 0)
        # Over Domino the slice is taken from the pass's one listing; the second listing is the
        # one after the pass's own writes (docs/domino.md).
        assert crm.sim.counters[crm.op("calendar_slice")] == (2 if crm.backend == "domino" else 1)
        assert reads is None or crm.sim.counters[reads] == 1
        assert Activity.objects.filter(subject="Far Outlook").count() == 1
        assert sorted(e.props["Subject"] for e in crm.mailbox().events()) == ["Far CRM", "Far Outlook", "Weekly"]

        crm.sim.counters.reset()
        run = calendar_pass(crm)  # the same day again: the slice is not read twice
        listings = 1 if crm.backend == "domino" else 0  # over Domino: the pass's own listing
        assert crm.sim.counters[crm.op("calendar_slice")] == listings and run.requests <= 2
        assert ItemLink.objects.get(activity=weekly).remote_change_key  # merely in range: untouched

    def test_k15_a_linked_event_moved_beyond_the_horizon_in_the_crm_follows(self, crm, window):
        edge = datetime(2027, 3, 15, 10, tzinfo=UTC)  # in the window, which ends at 16 March
        activity = f.activity(crm.env, subject="Edge", start=edge, organizer=crm.alice.employee)
        calendar_pass(crm)
        activity.start, activity.end = edge + timedelta(days=2), edge + timedelta(days=2, hours=1)
        activity.save()
        calendar_pass(crm)
        (event,) = crm.mailbox().events()
        assert event.props["Start"] == edge + timedelta(days=2)
        quiet(crm)

    def test_k15_an_outlook_edit_of_a_linked_event_beyond_the_horizon_comes_back(self, crm, window):
        beyond = datetime(2027, 3, 17, 10, tzinfo=UTC)
        activity = f.activity(crm.env, subject="Edge", start=datetime(2027, 3, 15, 10, tzinfo=UTC), organizer=crm.alice.employee)
        calendar_pass(crm)
        activity.start, activity.end = beyond, beyond + timedelta(hours=1)
        activity.save()
        calendar_pass(crm)
        crm.mailbox().edit(crm.mailbox().events()[0], Location="Hall 3")
        calendar_pass(crm)
        activity.refresh_from_db()
        assert activity.location == "Hall 3"
        quiet(crm)

    def test_k15_an_event_moved_beyond_the_horizon_in_outlook_moves_the_activity_and_is_not_deleted(
        self, crm, window
    ):
        soon = datetime(2027, 3, 4, 10, tzinfo=UTC)
        activity = f.activity(crm.env, subject="Visit", start=soon, organizer=crm.alice.employee)
        calendar_pass(crm)
        later = datetime(2027, 3, 25, 10, tzinfo=UTC)  # beyond the window, which ends at 16 March
        crm.mailbox().edit(crm.mailbox().events()[0], Start=later, End=later + timedelta(hours=1))
        run = calendar_pass(crm)
        assert (run.updated, run.deleted) == (1, 0)
        activity.refresh_from_db()
        assert activity.deleted_at is None and activity.start == later
        quiet(crm)

    def test_k10_k15_an_outlook_edit_of_an_occurrence_beyond_the_horizon_comes_back(self, crm, window):
        weekly = f.activity(
            crm.env,
            subject="Weekly",
            start=datetime(2027, 3, 2, 9, tzinfo=UTC),
            organizer=crm.alice.employee,
            recurrence="FREQ=WEEKLY;COUNT=6",
        )
        calendar_pass(crm)
        mailbox = crm.mailbox()
        (master,) = mailbox.events()
        mailbox.edit(mailbox.occurrence(master, 5), Location="Hall 3")  # 30 March: beyond the window
        run = calendar_pass(crm)
        assert run.updated == 1
        weekly.refresh_from_db()
        (exception,) = weekly.recurrence_exceptions
        assert exception["location"] == "Hall 3"
        assert datetime.fromisoformat(exception["original_start"]) == datetime(2027, 3, 30, 9, tzinfo=UTC)
        quiet(crm)

    def test_k15_a_refused_sync_token_does_not_delete_linked_events_beyond_the_horizon(self, crm, window):
        # The folder is read again from scratch (EWS ErrorInvalidSyncStateData, Graph 410 Gone);
        # over Graph that read covers only the window, yet what lies beyond it is still there.
        edge = datetime(2027, 3, 15, 10, tzinfo=UTC)
        meeting = f.activity(crm.env, subject="Edge", start=edge, organizer=crm.alice.employee)
        Attendee.objects.create(activity=meeting, email="carol@contoso.example", type="other", invite=True)
        personal = f.activity(crm.env, subject="Desk", start=edge, organizer=crm.alice.employee)
        cancelled = f.activity(crm.env, subject="Cancelled", start=edge, organizer=crm.alice.employee)
        Attendee.objects.create(activity=cancelled, email="carol@contoso.example", type="other", invite=True)
        calendar_pass(crm)
        for activity in (meeting, personal, cancelled):
            activity.start, activity.end = edge + timedelta(days=5), edge + timedelta(days=5, hours=1)
            activity.save()
        calendar_pass(crm)
        mailbox = crm.mailbox()
        mailbox.delete(mailbox.find("calendar", Subject="Cancelled")[0])  # to Deleted Items
        crm.invalidate_sync_tokens()
        run = calendar_pass(crm)
        assert (run.deleted, run.outcome) == (1, Outcome.SUCCESS)
        assert not Activity.objects.filter(pk=cancelled.pk).exists()
        assert Activity.objects.filter(pk__in=[meeting.pk, personal.pk]).count() == 2
        assert set(ItemLink.objects.values_list("state", flat=True)) == {LinkState.SYNCED}
        quiet(crm)

    def test_k2_k15_items_leaving_the_window_are_never_deleted(self, crm, window):
        soon = datetime(2027, 3, 2, 10, tzinfo=UTC)
        ours = f.activity(crm.env, subject="CRM visit", start=soon, organizer=crm.alice.employee)
        crm.mailbox().create_event("Outlook visit", soon, soon + timedelta(hours=1))
        calendar_pass(crm)
        theirs = Activity.objects.get(subject="Outlook visit")
        window.advance(timedelta(days=3))
        run = calendar_pass(crm)
        assert (run.deleted, run.updated) == (0, 0)
        assert ItemLink.objects.count() == 2
        # Deleting either side once it is over does not reach the other (K2).
        ours.delete()
        crm.mailbox().delete(crm.mailbox().find("calendar", Subject="Outlook visit")[0], hard=True)
        run = calendar_pass(crm)
        assert run.deleted == 0
        assert [e.props["Subject"] for e in crm.mailbox().events()] == ["CRM visit"]
        assert Activity.objects.filter(pk=theirs.pk).exists()
