"""Push over EWS (K14) for tasks (T1) and e-mail filing (E1): each sync user's one streaming
subscription watches its Tasks folder while task sync is on for it, and its mail folders while it
files e-mail; the folder an event names tells its kind, and the listener enqueues a targeted pass
of that kind for that user alone. A real listener runs against the simulator over loopback; every
wait has a deadline and no timing is asserted."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from django_q.models import OrmQ
from django_q.signing import SignedPackage
from exchangelib.properties import (
    CreatedEvent,
    FolderId,
    ItemId,
    ModifiedEvent,
    MovedEvent,
    OldParentFolderId,
    ParentFolderId,
    StatusEvent,
)

from synccore.mailbox.ews.streaming import event_kinds
from synccore.models import Activity, ActivityType, SynchronizerState
from synccore.runtime import service as runtime
from synccore.runtime.push import ews as push
from synccore.sync.connection import open_backend
from tests.fixtures import factories as f

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ANN = "ann@fabrikam.example"


def wait_for(predicate, timeout: float = 60):
    # Only a fact that never comes true ends here; how long it took is never asserted.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    raise AssertionError("timed out")


def push_passes() -> set[tuple]:
    """(user id, kind) of every queued push pass."""
    found = set()
    for row in OrmQ.objects.all():
        task = SignedPackage.loads(row.payload)
        if task["func"] == "synccore.tasks.run_pass" and task["args"][2] == "push":
            found.add(tuple(task["args"][:2]))
    return found


def run_queued_passes() -> None:
    """Do what a worker does with the queued passes (the cluster tests prove workers do)."""
    from synccore import tasks

    for row in OrmQ.objects.order_by("id"):
        task = SignedPackage.loads(row.payload)
        if task["func"] == "synccore.tasks.run_pass":
            tasks.run_pass(*task["args"], **task.get("kwargs", {}))
        row.delete()


def watched(crm, user) -> set[str] | str | None:
    """The folders the user's one streaming subscription watches (None: every folder); while a
    group subscribes anew, the old subscription and the new may both be there for a moment."""
    found = [s for s in crm.sim.subscriptions.all() if s.mailbox == user.mailbox_email]
    return found[0].folder_ids if len(found) == 1 else f"{len(found)} subscriptions"


def folder(crm, user, name: str) -> str:
    return crm.mailbox(user).folder(name).id


def user_status(crm, user) -> dict:
    (found,) = [u for u in runtime.status(crm.env.pk)["users"] if u["email"] == user.mailbox_email]
    return found


def caught_up(crm, kinds: dict) -> None:
    """Wait for the catch-up passes after subscribing ({user: kinds}), then forget them."""
    wanted = {(user.pk, kind) for user, user_kinds in kinds.items() for kind in user_kinds}
    wait_for(lambda: push_passes() >= wanted)
    OrmQ.objects.all().delete()


@pytest.fixture
def listener(crm_ews):
    """A running environment with push on (calendar too), a listener reading its stream."""
    crm = crm_ews
    crm.configure(push_enabled=True, pull_interval=1, pull_interval_unit="days")
    crm.sim.streaming.seconds_per_minute = 2  # a stream notices the listener's stop within 2 s
    stop = threading.Event()

    def start() -> None:
        crm.env.set_state(SynchronizerState.RUNNING)
        thread = threading.Thread(target=push.run_listener, args=(stop,), kwargs={"poll_s": 0.3}, daemon=True)
        thread.start()
        threads.append(thread)

    threads: list[threading.Thread] = []
    crm.start_listener = start
    yield crm
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    wait_for(lambda: crm.sim.streaming.open_streams == 0)


def test_k14_t1_a_task_made_in_outlook_enqueues_a_task_pass_for_that_user_alone(listener):
    crm = listener
    crm.configure(synchronize_tasks=True)
    crm.start_listener()
    caught_up(crm, {crm.alice: ("calendar", "tasks"), crm.bob: ("calendar", "tasks")})
    # Named folders, not every folder: the calendar and the Tasks folder.
    assert watched(crm, crm.alice) == {folder(crm, crm.alice, "calendar"), folder(crm, crm.alice, "tasks")}
    # The status shows the stream under each kind it carries (published at the listener's poll).
    active = {"state": "active", "expires_at": None, "error": ""}
    wait_for(lambda: user_status(crm, crm.alice)["tasks"]["push"] == active)
    kinds = user_status(crm, crm.alice)["kinds"]
    assert kinds["calendar"]["push"] == active
    assert kinds["email"]["push"] is None  # filing is off: no e-mail push

    crm.mailbox().create_task("Call Ann from Outlook")
    wait_for(lambda: push_passes())
    assert push_passes() == {(crm.alice.pk, "tasks")}  # no calendar pass, nothing for Bob
    run_queued_passes()
    made = Activity.objects.get(subject="Call Ann from Outlook")
    assert (made.type, made.created_by_erp) == (ActivityType.TASK, False)

    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    crm.mailbox(crm.bob).create_event("Lunch", start, start + timedelta(hours=1))
    wait_for(lambda: push_passes())
    assert push_passes() == {(crm.bob.pk, "calendar")}  # and a calendar change is a calendar pass


def test_k14_t1_a_user_with_tasks_off_is_not_subscribed_to_tasks_and_a_switch_resubscribes(listener):
    crm = listener
    crm.configure(synchronize_tasks=True)
    crm.bob.tasks_enabled = False
    crm.bob.save()
    crm.start_listener()
    caught_up(crm, {crm.alice: ("calendar", "tasks"), crm.bob: ("calendar",)})
    assert watched(crm, crm.bob) == {folder(crm, crm.bob, "calendar")}

    # Bob's task is in no folder his subscription watches: Alice's, made after it, comes alone.
    crm.mailbox(crm.bob).create_task("Bob's own")
    crm.mailbox().create_task("Alice's")
    wait_for(lambda: push_passes())
    assert push_passes() == {(crm.alice.pk, "tasks")}
    OrmQ.objects.all().delete()

    # Turned on for Bob: the listener subscribes him anew (and catches up his tasks).
    crm.bob.tasks_enabled = True
    crm.bob.save()
    wait_for(
        lambda: watched(crm, crm.bob) == {folder(crm, crm.bob, "calendar"), folder(crm, crm.bob, "tasks")}
    )
    wait_for(lambda: (crm.bob.pk, "tasks") in push_passes())
    OrmQ.objects.all().delete()
    crm.mailbox(crm.bob).create_task("Bob's next")
    wait_for(lambda: (crm.bob.pk, "tasks") in push_passes())

    # Turned off for the environment: nobody watches a Tasks folder any more.
    crm.configure(synchronize_tasks=False)
    wait_for(lambda: watched(crm, crm.alice) == {folder(crm, crm.alice, "calendar")})
    wait_for(lambda: watched(crm, crm.bob) == {folder(crm, crm.bob, "calendar")})


def test_k14_e1_a_marked_message_enqueues_an_email_pass_in_the_inbox_its_sub_folders_and_sent_items(listener):
    crm = listener
    crm.configure(file_emails=True)
    f.contact(crm.env, first_name="Ann", last_name="Lee", email1=ANN)
    crm.bob.email_enabled = False
    crm.bob.save()
    alice = crm.mailbox()
    alice.create_folder("Customers", "inbox", "IPF.Note")
    crm.start_listener()
    caught_up(crm, {crm.alice: ("calendar", "email"), crm.bob: ("calendar",)})
    assert watched(crm, crm.alice) is None  # every folder: the mail folders' sub-folders too
    assert watched(crm, crm.bob) == {folder(crm, crm.bob, "calendar")}
    active = {"state": "active", "expires_at": None, "error": ""}
    wait_for(lambda: user_status(crm, crm.alice)["kinds"]["email"]["push"] == active)
    assert user_status(crm, crm.bob)["kinds"]["email"]["push"] is None

    def passes_for(change) -> set[tuple]:
        """The push passes one change enqueues: a calendar event made after it comes through the
        same stream after it, so once that event's pass is queued, the change's are too."""
        OrmQ.objects.all().delete()
        change()
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
        alice.create_event("After the change", start, start + timedelta(hours=1))
        wait_for(lambda: (crm.alice.pk, "calendar") in push_passes())
        return push_passes() - {(crm.alice.pk, "calendar")}

    email = {(crm.alice.pk, "email")}
    # Every folder is watched, yet a change in a folder no kind is told by enqueues nothing.
    assert passes_for(lambda: alice.create_contact(GivenName="Pat")) == set()
    assert passes_for(lambda: alice.receive_message("Pushed offer", ANN, categories=["CRM"])) == email
    assert passes_for(lambda: alice.receive_message("Not marked", ANN)) == email  # the pass decides (E2)
    receive = partial(alice.receive_message, sender=ANN, categories=["CRM"])
    assert passes_for(partial(receive, "Filed by a rule", folder="inbox/Customers")) == email
    assert passes_for(lambda: alice.send_message("Our reply", [ANN], categories=["CRM"])) == email
    # A folder made after subscribing is learnt from its own event.
    assert passes_for(lambda: alice.create_folder("Later", "inbox", "IPF.Note")) == email
    assert passes_for(partial(receive, "In a new folder", folder="inbox/Later")) == email

    run_queued_passes()  # the last e-mail pass files what came
    filed = set(Activity.objects.filter(type=ActivityType.EMAIL).values_list("subject", flat=True))
    assert filed >= {"Pushed offer", "Filed by a rule", "Our reply"}

    # Filing turned off: back to the calendar alone.
    crm.configure(file_emails=False)
    wait_for(lambda: watched(crm, crm.alice) == {folder(crm, crm.alice, "calendar")})


def test_k14_subscribing_costs_one_get_folder_one_find_folder_when_filing_and_one_subscribe(crm_ews):
    crm = crm_ews
    crm.sim.streaming.seconds_per_minute = 2
    backend = open_backend(crm.settings)
    subscribed, stop = threading.Event(), threading.Event()
    counts: dict[str, int] = {}
    before = {name: crm.sim.counters[name] for name in ("GetFolder", "FindFolder", "Subscribe")}

    def on_subscribed() -> None:
        counts.update({name: crm.sim.counters[name] - was for name, was in before.items()})
        subscribed.set()

    changes: list[tuple[str, str]] = []

    def read() -> None:
        watches = {
            crm.alice.mailbox_email: ("calendar", "tasks", "email"),
            crm.bob.mailbox_email: ("calendar",),
        }
        for change in backend.stream_changes(watches, on_subscribed=on_subscribed, should_stop=stop.is_set):
            changes.append(change)
            stop.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert subscribed.wait(60)
        # Per mailbox: the watched folders' ids in one GetFolder, the Subscribe; and for the
        # mailbox that files e-mail one FindFolder (the sub-folders of the Inbox and Sent Items).
        assert counts == {"GetFolder": 2, "FindFolder": 1, "Subscribe": 2}
        crm.mailbox().create_task("Told by its folder")
        reader.join(timeout=60)
        assert changes == [(crm.alice.mailbox_email, "tasks")]
    finally:
        stop.set()
        reader.join(timeout=30)
        backend.close()
    wait_for(lambda: crm.sim.streaming.open_streams == 0)
    assert crm.sim.subscriptions.all() == []  # unsubscribed when the stream ended


def test_an_events_kind_is_its_parent_folders_or_for_a_move_the_folder_it_left():
    folders = {"cal": "calendar", "tasks": "tasks", "inbox": "email"}
    item = ItemId(id="item", changekey="ck")
    assert event_kinds(CreatedEvent(item_id=item, parent_folder_id=ParentFolderId(id="tasks")), folders) == {
        "tasks"
    }
    deleted = MovedEvent(
        item_id=item,
        parent_folder_id=ParentFolderId(id="deleteditems"),
        old_parent_folder_id=OldParentFolderId(id="cal"),
    )
    assert event_kinds(deleted, folders) == {"calendar"}  # deleted in Outlook: moved out of the calendar
    assert (
        event_kinds(ModifiedEvent(item_id=item, parent_folder_id=ParentFolderId(id="contacts")), folders)
        == set()
    )
    assert event_kinds(StatusEvent(), folders) == set()
    # A folder made in a mail folder is a mail folder from then on.
    made = CreatedEvent(folder_id=FolderId(id="later"), parent_folder_id=ParentFolderId(id="inbox"))
    assert event_kinds(made, folders) == {"email"}
    assert folders["later"] == "email"
    assert event_kinds(CreatedEvent(item_id=item, parent_folder_id=ParentFolderId(id="later")), folders) == {
        "email"
    }
