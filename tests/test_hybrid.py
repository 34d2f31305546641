"""Hybrid organisations and the move to Microsoft Graph (DESIGN §4, H1–H3), against exchange_sim,
which serves one store over EWS and Graph: alice's mailbox may be reached over EWS while bob's is
reached over Graph, and a mailbox synchronized over one protocol can be moved to the other.

A move must write nothing anywhere: no item created, updated or deleted in any mailbox (every
item's change key is compared), no meeting message sent (the simulator's deliveries are counted),
no CRM record changed; and the pass after it is idle."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from exchange_sim.meetings import meetings_for
from synccore.mailbox.base import PROPERTY_SET_ID, SYNC_ID_PROPERTY
from synccore.models import (
    Activity,
    Attendee,
    Contact,
    FolderState,
    ItemLink,
    LinkState,
    SyncSettings,
    SyncUser,
)
from synccore.runtime import service as runtime
from synccore.sync.calendar import run_calendar_pass
from synccore.sync.contacts import run_contact_pass
from synccore.sync.tasks import run_task_pass
from tests.fixtures import factories as f
from tests.fixtures.crm import connection_fields, make_crm

pytestmark = pytest.mark.django_db

ADDRESSES = ("alice@contoso.example", "bob@contoso.example")
WRITES = (
    "CreateItem",
    "UpdateItem",
    "DeleteItem",
    "SendItem",
    "MoveItem",
    "graph.contacts.create",
    "graph.contacts.update",
    "graph.contacts.delete",
    "graph.events.create",
    "graph.events.update",
    "graph.events.delete",
    "graph.events.cancel",
    "graph.todoTasks.create",
    "graph.todoTasks.update",
    "graph.todoTasks.delete",
    "graph.todoLinkedResources.create",
)


@pytest.fixture
def hybrid(exchange_sim, _graph_process_state):
    """The `crm` organisation over EWS, its settings holding the Graph connection as well."""
    crm = make_crm(exchange_sim, "ews")
    graph = connection_fields(exchange_sim, "graph")
    graph.pop("backend")
    crm.configure(**graph)
    return crm


@pytest.fixture
def messages(exchange_sim, monkeypatch):
    """Meeting messages the simulator sends (invitations and updates, cancellations)."""
    sent: list[str] = []
    meetings = meetings_for(exchange_sim.store)
    deliver, cancel = meetings.deliver, meetings.cancel_copies

    def counted_deliver(item_id, cancel_for=frozenset()):
        sent.append("deliver")
        return deliver(item_id, cancel_for)

    def counted_cancel(item):
        sent.append("cancel")
        return cancel(item)

    monkeypatch.setattr(meetings, "deliver", counted_deliver)
    monkeypatch.setattr(meetings, "cancel_copies", counted_cancel)
    return sent


def monday(weeks_ahead: int = 1) -> datetime:
    day = timezone.now().astimezone(UTC).date() + timedelta(days=2)
    day += timedelta(days=(7 - day.weekday()) % 7 + 7 * (weeks_ahead - 1))
    return datetime(day.year, day.month, day.day, 9, 0, tzinfo=UTC)


def week(start: datetime, n: int) -> datetime:
    return start + timedelta(weeks=n)


def meeting(crm, start, *, organizer, invite, **fields) -> Activity:
    activity = f.activity(crm.env, start=start, end=start + timedelta(hours=1), organizer=organizer, **fields)
    Attendee.objects.create(activity=activity, email=organizer.email, type="employee", meeting_organizer=True)
    for email in invite:
        Attendee.objects.create(activity=activity, email=email, type="employee", invite=True)
    return activity


def synchronized(crm, *, tasks: bool = False) -> dict[str, object]:
    """Contacts, a recurring meeting with exceptions and attendees, single events (and tasks),
    all synchronized."""
    crm.configure(synchronize_tasks=tasks)
    for n in range(3):
        f.contact(crm.env, first_name=f"Ann {n}")
    due = (monday() + timedelta(days=3)).date()
    for n, user in enumerate((crm.alice, crm.bob) if tasks else ()):
        f.activity(
            crm.env,
            type="task",
            subject=f"Follow up {n}",
            due=due,
            start=datetime(due.year, due.month, due.day, tzinfo=UTC),
            responsible=user.employee,
        )
    start = monday()
    series = meeting(
        crm,
        start,
        organizer=crm.alice.employee,
        invite=("bob@contoso.example", "carol@contoso.example"),
        subject="Jour fixe",
        recurrence="FREQ=WEEKLY;COUNT=6",
        recurrence_exdates=[week(start, 2).isoformat()],
        recurrence_exceptions=[{"original_start": week(start, 1).isoformat(), "subject": "Jour fixe (long)"}],
    )
    single = meeting(crm, start + timedelta(days=1), organizer=crm.bob.employee, invite=("alice@contoso.example",))
    personal = f.activity(crm.env, subject="Dentist", start=start + timedelta(days=2), organizer=crm.alice.employee)
    all_passes(crm)
    all_passes(crm)
    return {"series": series, "single": single, "personal": personal}


def all_passes(crm) -> list:
    runs = []
    for user in SyncUser.objects.filter(environment=crm.env).order_by("mailbox_email"):
        runs.append(run_contact_pass(user.pk))
        runs.append(run_calendar_pass(user.pk))
        if crm.env.settings.synchronize_tasks:
            runs.append(run_task_pass(user.pk))
    return runs


def mailboxes(sim) -> dict[str, dict[str, str]]:
    """Every item of every mailbox with its change key (a write anywhere moves one)."""
    out = {}
    for address in (*ADDRESSES, "carol@contoso.example"):
        box = sim.user(address)
        out[address] = {item.id: item.changekey for item in [*box.all_contacts(), *box.events(), *box.tasks()]}
    return out


def crm_records() -> list:
    return [
        *Activity.all_objects.order_by("pk").values_list("pk", "updated_at", "subject", "deleted_at"),
        *Contact.all_objects.order_by("pk").values_list("pk", "updated_at", "deleted_at"),
    ]


def writes(sim) -> int:
    counters = sim.counters
    return sum(counters[op] for op in WRITES) + sum(counters.sub_requests(op) for op in WRITES)


def assert_moved_without_writing(crm, messages, before_boxes, before_crm) -> None:
    crm.sim.counters.reset()
    messages.clear()
    runs = all_passes(crm)
    for run in runs:
        assert (run.created, run.updated, run.deleted, run.failed, run.conflicts) == (0, 0, 0, 0, 0), (
            run.sync_user,
            run.kind,
            run.error,
        )
    assert writes(crm.sim) == 0
    assert messages == []
    assert mailboxes(crm.sim) == before_boxes
    assert crm_records() == before_crm
    # The pass after is idle: a token request per folder, nothing read, nothing written.
    crm.sim.counters.reset()
    for run in all_passes(crm):
        assert (run.created, run.updated, run.deleted) == (0, 0, 0)
        assert run.requests <= 3, (run.sync_user, run.kind, run.requests)
    assert writes(crm.sim) == 0
    assert mailboxes(crm.sim) == before_boxes


# --- H1: a backend per sync user ----------------------------------------------------------------


def test_h1_a_user_without_a_backend_of_its_own_follows_the_environment(hybrid):
    assert hybrid.alice.effective_backend == "ews"
    hybrid.bob.backend = "graph"
    hybrid.bob.save()
    assert SyncUser.objects.get(pk=hybrid.bob.pk).effective_backend == "graph"
    on_graph = SyncUser.objects.filter(SyncUser.on_backend("graph"))
    assert [u.mailbox_email for u in on_graph] == ["bob@contoso.example"]
    hybrid.configure(backend="graph")
    assert SyncUser.objects.filter(SyncUser.on_backend("graph")).count() == 2


def test_h1_the_connection_test_reaches_each_backend_in_use(hybrid):
    hybrid.bob.backend = "graph"
    hybrid.bob.save()
    report = runtime.test_connection(hybrid.env.pk)
    assert report.ok, report.error
    assert any("Microsoft Graph" in line for line in report.tried)
    assert any("EWS" in line or hybrid.sim.url in line for line in report.tried) or len(report.tried) > 2


def test_h1_a_hybrid_environment_needs_both_connections(hybrid):
    hybrid.bob.backend = "graph"
    hybrid.bob.save()
    hybrid.configure(oauth_client_secret="")
    problems = SyncSettings.objects.get(pk=hybrid.settings.pk).connection_problems()
    assert any("client secret" in p for p in problems)


def test_h1_k3_k7_a_meeting_between_an_ews_and_a_graph_mailbox(hybrid, messages):
    hybrid.bob.backend = "graph"
    hybrid.bob.save()
    activity = meeting(
        hybrid, monday(), organizer=hybrid.alice.employee, invite=("bob@contoso.example",), subject="Review"
    )
    hybrid.sim.counters.reset()
    assert run_calendar_pass(hybrid.alice.pk).created == 1
    assert hybrid.sim.counters.total(protocol="graph") == 0  # alice is reached over EWS only
    (organizer_copy,) = hybrid.mailbox().events()
    assert messages == ["deliver"]  # bob is invited once
    bob_run = run_calendar_pass(hybrid.bob.pk)
    assert (bob_run.created, bob_run.updated) == (0, 0)
    assert hybrid.sim.counters.total(protocol="graph") > 0
    (bob_copy,) = hybrid.mailbox(hybrid.bob).events()
    assert bob_copy.props["UID"] == organizer_copy.props["UID"]
    assert Activity.objects.count() == 1  # K7: bob's copy is not a second activity
    assert messages == ["deliver"]

    activity.subject = "Review (moved)"
    activity.save()
    assert run_calendar_pass(hybrid.alice.pk).updated == 1
    assert run_calendar_pass(hybrid.bob.pk).updated == 0
    assert hybrid.mailbox().events()[0].props["Subject"] == "Review (moved)"
    assert hybrid.mailbox(hybrid.bob).events()[0].props["Subject"] == "Review (moved)"
    assert Activity.objects.count() == 1


def test_h1_contacts_of_a_graph_user_and_an_ews_user_in_one_environment(hybrid):
    hybrid.bob.backend = "graph"
    hybrid.bob.save()
    f.contact(hybrid.env, first_name="Ann")
    hybrid.sim.counters.reset()
    assert run_contact_pass(hybrid.alice.pk).created == 1
    ews_only = hybrid.sim.counters.total(protocol="graph")
    assert run_contact_pass(hybrid.bob.pk).created == 1
    assert ews_only == 0 and hybrid.sim.counters.total(protocol="graph") > 0
    for user in (hybrid.alice, hybrid.bob):
        assert [c.props.get("GivenName") for c in hybrid.mailbox(user).contacts()] == ["Ann"]


# --- H2: moving keeps every link ----------------------------------------------------------------


@pytest.mark.parametrize("first,second", [("ews", "graph"), ("graph", "ews")])
def test_h2_an_environment_switched_writes_nothing_and_sends_nothing(hybrid, messages, first, second):
    hybrid.configure(backend=first)
    synchronized(hybrid, tasks=True)
    before_boxes, before_crm = mailboxes(hybrid.sim), crm_records()
    links = ItemLink.objects.count()
    assert links >= 9 and ItemLink.objects.filter(kind="task").count() == 2

    hybrid.configure(backend=second)
    assert_moved_without_writing(hybrid, messages, before_boxes, before_crm)
    assert set(SyncUser.objects.values_list("linked_backend", flat=True)) == {second}
    assert ItemLink.objects.count() == links
    assert not ItemLink.objects.exclude(state=LinkState.SYNCED).exists()
    assert all(state.sync_token for state in FolderState.objects.all())

    # And back again.
    hybrid.configure(backend=first)
    assert_moved_without_writing(hybrid, messages, before_boxes, before_crm)
    assert set(SyncUser.objects.values_list("linked_backend", flat=True)) == {first}


def test_h2_one_user_moves_while_the_others_stay(hybrid, messages):
    synchronized(hybrid, tasks=True)
    before_boxes, before_crm = mailboxes(hybrid.sim), crm_records()
    hybrid.bob.backend = "graph"
    hybrid.bob.save()
    assert_moved_without_writing(hybrid, messages, before_boxes, before_crm)
    linked = dict(SyncUser.objects.values_list("mailbox_email", "linked_backend"))
    assert linked == {"alice@contoso.example": "ews", "bob@contoso.example": "graph"}
    # A change in the CRM still reaches both: alice over EWS, bob (invitee) sees Exchange's update.
    series = Activity.objects.get(subject="Jour fixe")
    series.location = "Room 4"
    series.save()
    messages.clear()
    assert run_calendar_pass(hybrid.alice.pk).updated == 1
    assert messages == ["deliver"]
    assert run_calendar_pass(hybrid.bob.pk).updated == 0
    (bob_copy,) = [e for e in hybrid.mailbox(hybrid.bob).events() if e.props.get("Subject") == "Jour fixe"]
    assert bob_copy.props.get("Location") == "Room 4"


def test_h2_an_item_deleted_meanwhile_is_listed_not_recreated(hybrid, messages):
    items = synchronized(hybrid)
    contact_link = ItemLink.objects.filter(sync_user=hybrid.alice, kind="contact").order_by("pk").first()
    event_link = ItemLink.objects.get(sync_user=hybrid.alice, activity=items["personal"])
    alice = hybrid.mailbox()
    alice.delete(contact_link.remote_id, hard=True)
    alice.delete(event_link.remote_id, hard=True)
    contacts_left, events_left = len(alice.all_contacts()), len(alice.events())

    hybrid.configure(backend="graph")
    crm_before = crm_records()
    messages.clear()
    for _ in range(2):
        for run in all_passes(hybrid):
            assert (run.created, run.updated, run.deleted) == (0, 0, 0), (run.sync_user, run.kind, run.error)
    assert (len(alice.all_contacts()), len(alice.events())) == (contacts_left, events_left)
    assert messages == []
    assert crm_records() == crm_before

    contact_link.refresh_from_db()
    assert contact_link.state == LinkState.NOT_FOUND
    assert "after the move from ews" in contact_link.last_error
    attention = ItemLink.objects.filter(environment=hybrid.env, state__in=runtime.ATTENTION_LINK_STATES)
    assert contact_link in attention
    event_link.refresh_from_db()
    assert event_link.state == LinkState.NOT_FOUND and event_link in attention
    assert Activity.objects.filter(pk=items["personal"].pk).exists()  # the CRM keeps it


def test_h2_retry_of_an_item_not_found_re_creates_it(hybrid):
    synchronized(hybrid)
    link = ItemLink.objects.filter(sync_user=hybrid.alice, kind="contact").order_by("pk").first()
    hybrid.mailbox().delete(link.remote_id, hard=True)
    hybrid.configure(backend="graph")
    all_passes(hybrid)
    link.refresh_from_db()
    assert link.state == LinkState.NOT_FOUND
    runtime.retry_item(link.pk)  # the administrator's confirmation (enqueues the user's pass)
    assert run_contact_pass(hybrid.alice.pk).created == 1
    link.refresh_from_db()
    assert link.state == LinkState.SYNCED and link.remote_id
    found = hybrid.mailbox().find_by_extended(SYNC_ID_PROPERTY, str(link.sync_id))
    assert len(found) == 1


def test_h2_retry_of_an_event_not_found_re_creates_it(hybrid):
    items = synchronized(hybrid)
    link = ItemLink.objects.get(sync_user=hybrid.alice, activity=items["personal"])
    hybrid.mailbox().delete(link.remote_id, hard=True)
    hybrid.configure(backend="graph")
    all_passes(hybrid)
    link.refresh_from_db()
    assert link.state == LinkState.NOT_FOUND
    runtime.retry_item(link.pk)
    assert run_calendar_pass(hybrid.alice.pk).created == 1
    link.refresh_from_db()
    assert link.state == LinkState.SYNCED
    assert [e.props["Subject"] for e in hybrid.mailbox().events()].count("Dentist") == 1


# --- H3: the preview and the switch ---------------------------------------------------------------


def database() -> list:
    return [
        *ItemLink.objects.order_by("pk").values_list(
            "pk", "remote_id", "remote_change_key", "remote_folder_id", "state", "updated_at"
        ),
        *FolderState.objects.order_by("pk").values_list("pk", "remote_folder_id", "sync_token", "updated_at"),
        *SyncUser.objects.order_by("pk").values_list("pk", "backend", "linked_backend", "updated_at"),
        *SyncSettings.objects.order_by("pk").values_list("pk", "backend", "updated_at"),
        *crm_records(),
    ]


def switch(*args: str) -> tuple[list[str], dict]:
    out = StringIO()
    call_command("switch_backend", *args, stdout=out)
    lines = out.getvalue().strip().splitlines()
    return lines, json.loads(lines[-1])


def test_h3_dry_run_changes_nothing_and_names_what_it_cannot_find(hybrid):
    synchronized(hybrid)
    link = ItemLink.objects.filter(sync_user=hybrid.alice, kind="contact").order_by("pk").first()
    hybrid.mailbox().delete(link.remote_id, hard=True)
    before_db, before_boxes = database(), mailboxes(hybrid.sim)
    hybrid.sim.counters.reset()

    lines, report = switch("--environment", hybrid.env.name, "--to", "graph", "--dry-run")

    assert database() == before_db
    assert mailboxes(hybrid.sim) == before_boxes
    assert writes(hybrid.sim) == 0
    assert set(report) >= {"users", "links", "found", "not_found", "dry_run"}
    assert report["dry_run"] is True
    assert report["links"] == ItemLink.objects.exclude(remote_id="").count()
    assert report["not_found"] == 1 and report["found"] == report["links"] - 1
    alice = next(u for u in report["users"] if u["user"] == "alice@contoso.example")
    assert [lost["sync_id"] for lost in alice["not_found"]] == [str(link.sync_id)]
    assert any("not found" in line and str(link.sync_id) in line for line in lines)


def test_h3_the_switch_of_one_user_changes_its_backend_and_its_next_pass_relinks(hybrid, messages):
    synchronized(hybrid)
    before_boxes, before_crm = mailboxes(hybrid.sim), crm_records()
    _, report = switch("--environment", hybrid.env.name, "--user", "bob@contoso.example", "--to", "graph")
    assert report["dry_run"] is False and report["not_found"] == 0
    assert [u["user"] for u in report["users"]] == ["bob@contoso.example"]
    bob = SyncUser.objects.get(pk=hybrid.bob.pk)
    assert (bob.backend, bob.linked_backend) == ("graph", "ews")
    assert SyncUser.objects.get(pk=hybrid.alice.pk).backend == ""
    assert_moved_without_writing(hybrid, messages, before_boxes, before_crm)
    assert SyncUser.objects.get(pk=hybrid.bob.pk).linked_backend == "graph"


def test_h3_the_switch_of_an_environment_moves_every_user(hybrid):
    synchronized(hybrid)
    hybrid.bob.backend = "ews"
    hybrid.bob.save()
    _, report = switch("--environment", hybrid.env.name, "--to", "graph")
    assert report["found"] == report["links"] and report["not_found"] == 0
    assert SyncSettings.objects.get(pk=hybrid.settings.pk).backend == "graph"
    assert set(SyncUser.objects.values_list("backend", flat=True)) == {""}


def test_h3_an_unknown_user_is_a_usage_error(hybrid):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError) as raised:
        switch("--environment", hybrid.env.name, "--user", "nobody@contoso.example", "--to", "graph")
    assert raised.value.returncode == 2


def test_h3_the_api_previews_and_switches(hybrid):
    from tests.fixtures.api import client_for, user_with_role

    synchronized(hybrid)
    api = client_for(user_with_role(None, superuser=True))
    url = f"/api/v1/environments/{hybrid.env.pk}/switch-backend/"
    before = database()
    answer = api.post(url, {"to": "graph", "user": None, "dry_run": True}, format="json")
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["dry_run"] is True and body["not_found"] == 0 and body["links"] == body["found"] > 0
    assert database() == before
    answer = api.post(url, {"to": "graph", "user": "bob@contoso.example", "dry_run": False}, format="json")
    assert answer.status_code == 200, answer.content
    assert SyncUser.objects.get(pk=hybrid.bob.pk).backend == "graph"
    assert api.post(url, {"to": "graph", "user": "x@contoso.example"}, format="json").status_code == 404
    assert api.post(url, {"to": "domino"}, format="json").status_code == 400


def test_h1_the_api_shows_and_sets_a_users_backend(hybrid):
    from tests.fixtures.api import client_for, user_with_role

    api = client_for(user_with_role(None, superuser=True))
    url = f"/api/v1/environments/{hybrid.env.pk}/users/{hybrid.bob.pk}/"
    body = api.get(url).json()
    assert (body["backend"], body["effective_backend"]) == ("", "ews")
    answer = api.patch(url, {"backend": "graph"}, format="json")
    assert answer.status_code == 200, answer.content
    assert (answer.json()["backend"], answer.json()["effective_backend"]) == ("graph", "graph")
    assert api.patch(url, {"backend": "lotus"}, format="json").status_code == 400


def test_sync_id_property_is_the_same_on_both_protocols():
    # The relinking relies on it: EWS named property = Graph singleValueExtendedProperties id.
    from synccore.mailbox.graph.translation import SYNC_ID_PROPERTY_ID

    expected = f"String {{{PROPERTY_SET_ID}}} Name {SYNC_ID_PROPERTY}"
    assert expected == SYNC_ID_PROPERTY_ID


@pytest.mark.parametrize("first,second", [("ews", "graph"), ("graph", "ews")])
def test_h2_contacts_in_a_categorization_folder_are_found_again(hybrid, messages, first, second):
    hybrid.configure(backend=first, categorize_contacts=True, contact_folder_name="CRM Contacts")
    for n in range(2):
        f.contact(hybrid.env, first_name=f"Ann {n}")
    for _ in range(2):
        run_contact_pass(hybrid.alice.pk)
    before = mailboxes(hybrid.sim)
    folders = sorted(folder.id for folder in hybrid.mailbox().folders())
    hybrid.configure(backend=second)
    hybrid.sim.counters.reset()
    run = run_contact_pass(hybrid.alice.pk)
    assert (run.created, run.updated, run.deleted, run.failed) == (0, 0, 0, 0), run.error
    assert writes(hybrid.sim) == 0 and mailboxes(hybrid.sim) == before
    assert not ItemLink.objects.exclude(state=LinkState.SYNCED).exists()
    assert sorted(folder.id for folder in hybrid.mailbox().folders()) == folders  # no folder made either


def test_h1_the_console_previews_a_move_then_makes_it(hybrid, client):
    from tests.fixtures.api import user_with_role

    synchronized(hybrid)
    client.force_login(user_with_role(None, superuser=True))
    url = f"/environments/{hybrid.env.pk}/switch-backend/"
    before = database()
    page = client.post(url, {"to": "graph", "user": ""})
    assert page.status_code == 200
    assert b"confirm-switch" in page.content and b"alice@contoso.example" in page.content
    assert database() == before
    done = client.post(url, {"to": "graph", "user": "", "confirm": "1"})
    assert done.status_code == 302
    assert SyncSettings.objects.get(pk=hybrid.settings.pk).backend == "graph"


@pytest.mark.parametrize("first, second", [("ews", "graph"), ("graph", "ews")])
def test_h2_personal_appointments_made_in_outlook_are_found_again_by_what_they_hold(hybrid, messages, first, second):
    # Imported from Outlook, they carry no sync id of ours and no meeting UID is kept for them:
    # the move finds each by its subject, start and end, when exactly one event matches.
    hybrid.configure(backend=first)
    start = monday()
    alice = hybrid.mailbox()
    alice.create_event("Dentist", start, start + timedelta(hours=1))
    alice.create_event("Gym", start + timedelta(days=1), start + timedelta(days=1, hours=1))
    alice.create_event("Twin", start + timedelta(days=2), start + timedelta(days=2, hours=1))
    alice.create_event("Twin", start + timedelta(days=2), start + timedelta(days=2, hours=1))
    run_calendar_pass(hybrid.alice.pk)
    assert Activity.objects.filter(subject__in=("Dentist", "Gym")).count() == 2
    before_boxes, before_crm = mailboxes(hybrid.sim), crm_records()
    hybrid.configure(backend=second)
    assert_moved_without_writing(hybrid, messages, before_boxes, before_crm)
    found = {link.activity.subject: link.state for link in ItemLink.objects.filter(sync_user=hybrid.alice)}
    assert found["Dentist"] == found["Gym"] == LinkState.SYNCED
    # Two identical events cannot be told apart: listed, never guessed.
    assert set(ItemLink.objects.filter(activity__subject="Twin").values_list("state", flat=True)) == {LinkState.NOT_FOUND}
