"""HCL Domino mail files (D1–D3): the calendar over the Domino REST API, against exchange_sim's
Domino front end. What every backend shares is in tests/test_calendar_sync.py (run over Domino
too); here is what is Domino's own: JWTs, the seed 002 deletion rule in Notes' words, the cost of
an idle pass, and what the backend does not offer yet."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from django.utils import timezone

from synccore.mailbox import base
from synccore.mailbox.domino import client as domino_client
from synccore.models import Activity, Attendee, Outcome
from synccore.sync.calendar import run_calendar_pass
from synccore.sync.connection import check_user_connection, open_backend
from synccore.sync.events import moment as ev_moment
from tests.fixtures import factories as f

pytestmark = [pytest.mark.django_db, pytest.mark.backends("domino")]
ALICE = "alice@contoso.example"
BOB = "bob@contoso.example"


@pytest.fixture
def start():
    return timezone.now().replace(second=0, microsecond=0) + timedelta(days=2)


@pytest.fixture
def waits(monkeypatch) -> list[float]:
    recorded: list[float] = []
    monkeypatch.setattr(domino_client, "sleep", recorded.append)
    return recorded


def meeting(crm, start, *, invite=(BOB,), **fields):
    activity = f.activity(crm.env, start=start, organizer=crm.alice.employee, **fields)
    Attendee.objects.create(
        activity=activity, email=crm.alice.employee.email, type="employee", meeting_organizer=True
    )
    for email in invite:
        Attendee.objects.create(activity=activity, email=email, type="employee", invite=True)
    return activity


def calendar_pass(crm, user=None):
    return run_calendar_pass((user or crm.alice).pk)


def notes(crm, address: str = ALICE) -> httpx.Client:
    """Act as the mail file's owner in Notes: their own login to the REST API."""
    client = httpx.Client(base_url=crm.sim.domino_url)
    answer = client.post(
        "/v1/auth", json={"username": address, "password": address.split("@")[0] + "-password"}
    )
    client.headers["Authorization"] = f"Bearer {answer.json()['bearer']}"
    return client


def test_d1_a_crm_appointment_becomes_a_notes_entry_with_the_sync_id_and_comes_back_unchanged(crm, start):
    activity = f.activity(
        crm.env, subject="Visit", start=start, organizer=crm.alice.employee, location="Oslo"
    )
    run = calendar_pass(crm)
    assert run.outcome == Outcome.SUCCESS and run.created == 1
    (entry,) = (
        notes(crm)
        .get(
            "/pim-v1/calendar/default",
            params={"startdate": start.date().isoformat(), "enddate": start.date().isoformat()},
        )
        .json()
    )
    assert entry["title"] == "Visit" and entry["locations"]
    link = activity.links.get()
    assert entry["AdditionalFields"]["CrmSyncId"] == str(link.sync_id)
    assert link.remote_id == entry["uid"]
    again = calendar_pass(crm)
    assert (again.created, again.updated, again.deleted) == (0, 0, 0)


def test_d1_an_entry_edited_in_notes_updates_the_crm_activity(crm, start):
    activity = f.activity(crm.env, subject="Visit", start=start, organizer=crm.alice.employee)
    calendar_pass(crm)
    uid = activity.links.get().remote_id
    notes(crm).put(
        f"/pim-v1/calendar/default/{uid}",
        json={
            "title": "Visit (moved)",
            "start": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S"),
            "timeZone": "UTC",
        },
    )
    run = calendar_pass(crm)
    assert run.updated == 1
    activity.refresh_from_db()
    assert activity.subject == "Visit (moved)" and activity.start == start + timedelta(hours=1)


def test_d2_invitations_go_out_from_the_organizers_mail_file(crm, start):
    meeting(crm, start, subject="Kick-off")
    calendar_pass(crm)
    (copy,) = crm.mailbox(crm.bob).events()
    assert copy.props["Subject"] == "Kick-off"
    assert copy.props["Organizer"]["EmailAddress"] == ALICE


def test_d1_an_invitees_response_in_notes_reaches_the_organizers_entry_and_changes_nothing_else(crm, start):
    activity = meeting(crm, start, subject="Kick-off")
    calendar_pass(crm)
    calendar_pass(crm, crm.bob)
    uid = activity.links.get(sync_user=crm.alice).remote_id
    path = f"/pim-v1/calendarresponse/default/{uid}"
    assert notes(crm, BOB).post(path, json={"participantAction": "accepted"}).status_code == 200
    backend = open_backend(crm.settings)
    (event,) = backend.get_events(ALICE, [base.RemoteRef(uid, "", "default")])
    assert [(a.email, a.response) for a in event.attendees] == [(BOB, "Accept")]
    crm.sim.counters.reset()
    for user in (crm.alice, crm.bob):  # a response is not a change (the decision table)
        run = calendar_pass(crm, user)
        assert (run.outcome, run.created, run.updated, run.deleted) == (Outcome.SUCCESS, 0, 0, 0), run.error
    assert not crm.event_writes()
    assert notes(crm, BOB).post(path, json={"participantAction": "declined"}).status_code == 200
    for user in (crm.alice, crm.bob):
        run = calendar_pass(crm, user)
        assert (run.outcome, run.created, run.updated, run.deleted) == (Outcome.SUCCESS, 0, 0, 0), run.error
    assert not crm.event_writes()
    activity.refresh_from_db()
    assert activity.subject == "Kick-off" and activity.attendees.filter(email=BOB).exists()
    statuses = {p["email"]: p["participationStatus"] for p in notes(crm).get(path).json()["participants"].values()}
    assert statuses[BOB] == "declined"


def test_d1_a_meeting_deleted_in_notes_with_invitees_deletes_the_crm_activity(crm, start):
    activity = meeting(crm, start, subject="Review")
    calendar_pass(crm)
    uid = activity.links.get().remote_id
    assert notes(crm).delete(f"/pim-v1/calendar/default/{uid}").status_code == 200
    run = calendar_pass(crm)
    assert run.outcome == Outcome.SUCCESS
    assert not Activity.objects.filter(pk=activity.pk).exists()


def test_d1_a_personal_appointment_deleted_in_notes_keeps_the_crm_activity(crm, start):
    activity = f.activity(crm.env, subject="Dentist", start=start, organizer=crm.alice.employee)
    calendar_pass(crm)
    uid = activity.links.get().remote_id
    assert notes(crm).delete(f"/pim-v1/calendar/default/{uid}").status_code == 200
    calendar_pass(crm)
    assert Activity.objects.filter(pk=activity.pk).exists()


def test_d1_an_entry_moved_beyond_the_window_in_notes_is_a_change_not_a_deletion(crm, start):
    activity = meeting(crm, start, subject="Later")
    calendar_pass(crm)
    uid = activity.links.get().remote_id
    later = start + timedelta(days=crm.settings.calendar_horizon_days + 30)
    notes(crm).put(
        f"/pim-v1/calendar/default/{uid}",
        json={"start": later.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
    )
    run = calendar_pass(crm)
    assert run.deleted == 0
    activity.refresh_from_db()
    assert activity.start == later


def test_an_idle_calendar_pass_costs_at_most_two_requests_per_user(crm, start):
    for i in range(3):
        f.activity(crm.env, subject=f"A{i}", start=start + timedelta(hours=i), organizer=crm.alice.employee)
    meeting(crm, start + timedelta(days=1), subject="M")
    calendar_pass(crm)
    calendar_pass(crm, crm.bob)
    counters = crm.sim.counters
    counters.reset()
    assert calendar_pass(crm).outcome == Outcome.SUCCESS
    assert calendar_pass(crm, crm.bob).outcome == Outcome.SUCCESS
    assert counters.total(protocol="domino") <= 2 * 2
    assert counters["domino.calendar.list"] == 2


def test_a_backend_kept_across_passes_reads_what_changed_since_its_last_listing(crm, start):
    """The entries a listing answered serve that pass's reads; the next pass's listing replaces
    them, so a read by id (no stamp to compare) does not answer an older version."""
    activity = f.activity(crm.env, subject="Visit", start=start, organizer=crm.alice.employee)
    backend = open_backend(crm.settings)
    run_calendar_pass(crm.alice.pk, backend=backend)
    uid = activity.links.get().remote_id
    notes(crm).put(f"/pim-v1/calendar/default/{uid}", json={"title": "Visit (Notes)"})
    notes(crm).delete(f"/pim-v1/calendar/default/{uid}")
    run_calendar_pass(crm.alice.pk, backend=backend)
    (gone,) = backend.get_events(ALICE, [base.RemoteRef(uid, "", "default")])
    assert isinstance(gone, base.ItemNotFound)


def test_a_token_expired_on_the_server_is_renewed_once_and_the_pass_completes(crm, start):
    calendar_pass(crm)
    crm.sim.domino.expire_tokens()
    f.activity(crm.env, subject="After expiry", start=start, organizer=crm.alice.employee)
    run = calendar_pass(crm)
    assert run.outcome == Outcome.SUCCESS and run.created == 1
    assert crm.sim.counters["domino.auth"] == 2


def test_a_token_close_to_its_expiry_is_renewed_before_it_is_used(crm):
    crm.sim.domino.token_seconds = 30  # under the minute the client keeps in hand
    calendar_pass(crm)
    calendar_pass(crm)
    assert crm.sim.counters["domino.auth"] >= 2
    assert crm.sim.counters["domino.calendar.list"] >= 2


def test_a_401_burst_is_survived_but_a_persistent_401_fails_the_pass_as_permanent(crm, start):
    calendar_pass(crm)
    crm.sim.faults.unauthorized(times=1, operation="domino.calendar.list")
    assert calendar_pass(crm).outcome == Outcome.SUCCESS
    crm.sim.faults.unauthorized(times=0, operation="domino.calendar.list")
    run = calendar_pass(crm)
    assert run.outcome == Outcome.FAILED
    backend = open_backend(crm.settings)
    with pytest.raises(base.AuthenticationFailed) as failure:
        backend.calendar_changes(ALICE, "default", "")
    assert failure.value.permanent
    crm.sim.faults.clear()


def test_a_wrong_password_is_a_permanent_authentication_failure(crm):
    crm.configure(service_password="wrong")
    with pytest.raises(base.AuthenticationFailed):
        open_backend(crm.settings).ensure_calendar_folder(ALICE)


def test_a_busy_server_is_waited_out_and_the_pass_completes(crm, start, waits):
    f.activity(crm.env, subject="Busy", start=start, organizer=crm.alice.employee)
    crm.sim.faults.http_503(times=1, operation="domino.calendar.list", retry_after=2)
    run = calendar_pass(crm)
    assert run.outcome == Outcome.SUCCESS and run.created == 1
    assert waits == [2.0]


def test_a_dropped_connection_on_a_read_is_retried(crm):
    crm.sim.faults.drop_connection(times=1, operation="domino.calendar.list")
    assert calendar_pass(crm).outcome == Outcome.SUCCESS


def test_the_connection_check_logs_in_and_opens_the_calendar(crm):
    report = check_user_connection(crm.alice)
    assert report.ok, report.error
    assert any("logged in" in line for line in report.tried)


def test_contacts_and_e_mail_filing_refuse_with_a_clear_message(crm):
    backend = open_backend(crm.settings)
    with pytest.raises(base.PermanentMailboxError, match="not synchronized with HCL Domino"):
        backend.ensure_contact_folder(ALICE, "")
    with pytest.raises(base.PermanentMailboxError, match="E-mail filing"):
        backend.message_changes(ALICE, "inbox", "")


def test_k10_a_crm_series_is_a_repeating_notes_entry_with_its_changed_and_removed_occurrences(crm, start):
    weekly = f.activity(crm.env, subject="Weekly", start=start, organizer=crm.alice.employee, recurrence="FREQ=WEEKLY;COUNT=3")
    assert calendar_pass(crm).created == 1
    uid = weekly.links.get().remote_id
    entry = notes(crm).get(f"/pim-v1/calendar/default/{uid}").json()
    assert entry["recurrenceRules"][0]["frequency"] == "weekly" and entry["recurrenceRules"][0]["count"] == 3
    assert "recurrenceOverrides" not in entry
    quiet = calendar_pass(crm)
    assert (quiet.created, quiet.updated) == (0, 0)
    second, third = start + timedelta(weeks=1), start + timedelta(weeks=2)
    weekly.recurrence_exdates = [second.isoformat()]
    weekly.recurrence_exceptions = [{"original_start": third.isoformat(), "subject": "Weekly (special)"}]
    weekly.save()
    run = calendar_pass(crm)
    assert run.outcome == Outcome.SUCCESS and run.updated == 1, (run.outcome, run.error)
    overrides = notes(crm).get(f"/pim-v1/calendar/default/{uid}").json()["recurrenceOverrides"]
    zone = ZoneInfo(entry["timeZone"])
    local = {when.astimezone(zone).strftime("%Y-%m-%dT%H:%M:%S"): when for when in (second, third)}
    assert overrides == {
        next(k for k, v in local.items() if v == second): {"excluded": True},
        next(k for k, v in local.items() if v == third): {"title": "Weekly (special)"},
    }
    # The same series over EWS: the same exceptions (one store).
    view = crm.mailbox().view(start - timedelta(hours=1), start + timedelta(weeks=4))
    assert [(i.props["Start"], i.props["Subject"]) for i in view] == [(start, "Weekly"), (third, "Weekly (special)")]
    quiet = calendar_pass(crm)
    assert (quiet.created, quiet.updated, quiet.conflicts) == (0, 0, 0)


def test_k10_occurrences_changed_and_removed_in_notes_reach_the_crm(crm, start):
    weekly = f.activity(crm.env, subject="Weekly", start=start, organizer=crm.alice.employee, recurrence="FREQ=WEEKLY;COUNT=3")
    calendar_pass(crm)
    uid = weekly.links.get().remote_id
    client = notes(crm)
    entry = client.get(f"/pim-v1/calendar/default/{uid}").json()
    zone = ZoneInfo(entry["timeZone"])
    second, third = start + timedelta(weeks=1), start + timedelta(weeks=2)

    def key(when):
        return when.astimezone(zone).strftime("%Y-%m-%dT%H:%M:%S")

    moved = third + timedelta(hours=2)
    overrides = {key(second): {"excluded": True}, key(third): {"start": key(moved), "title": "Weekly (moved)"}}
    answer = client.put(f"/pim-v1/calendar/default/{uid}", json={"recurrenceOverrides": overrides})
    assert answer.status_code == 200, answer.text
    assert answer.json()["recurrenceOverrides"][key(third)] == {"start": key(moved), "duration": "PT1H", "title": "Weekly (moved)"}
    run = calendar_pass(crm)
    assert run.outcome == Outcome.SUCCESS, (run.outcome, run.error)
    weekly.refresh_from_db()
    assert [ev_moment(d) for d in weekly.recurrence_exdates] == [second]
    (exception,) = weekly.recurrence_exceptions
    assert ev_moment(exception["original_start"]) == third and ev_moment(exception["start"]) == moved
    assert exception["subject"] == "Weekly (moved)"
    quiet = calendar_pass(crm)
    assert (quiet.created, quiet.updated, quiet.conflicts) == (0, 0, 0)


def test_test_and_enable_reaches_a_domino_mail_file_and_names_a_missing_one(crm):
    from synccore.runtime import service

    assert service.test_mailbox(crm.alice.pk).ok
    aaron = f.sync_user(crm.env, "aaron@contoso.example")
    report = service.test_mailbox(aaron.pk)
    assert not report.ok and report.code == "mailbox_not_found", report


def test_contacts_or_e_mail_filing_on_for_a_domino_environment_is_a_clear_settings_problem_tasks_are_not(crm):
    assert crm.settings.connection_problems() == []
    crm.configure(synchronize_tasks=True)
    assert crm.settings.connection_problems() == []  # To Do items sync over Domino (tests/test_tasks_sync.py)
    crm.configure(synchronize_contacts=True, file_emails=True)
    problems = " ".join(crm.settings.connection_problems())
    assert "Contacts cannot be synchronized with HCL Domino" in problems and "E-mail filing" in problems


def test_k10_a_notes_entry_with_several_rules_is_reported_not_read_by_its_first():
    from synccore.mailbox.domino.translation import event_from_entry

    rules = [{"@type": "RecurrenceRule", "frequency": "weekly"}, {"@type": "RecurrenceRule", "frequency": "monthly"}]
    entry = {"uid": "U1", "title": "Twice", "start": "2030-05-06T10:00:00", "timeZone": "UTC", "duration": "PT1H"}
    with pytest.raises(base.InvalidItem, match="several rules"):
        event_from_entry({**entry, "recurrenceRules": rules}, ALICE, "default")
    one = event_from_entry({**entry, "recurrenceRules": rules[:1]}, ALICE, "default")
    assert "FREQ=WEEKLY" in one.recurrence
