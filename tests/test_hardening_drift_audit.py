"""Issue 16, finding 9: an Exchange-side loss is noticed by the periodic drift audit.

A mailbox restored from an older backup (or reset) loses items the product wrote, and its change
feed reports nothing: incremental passes never notice. The drift audit compares the linked items
with the mailbox, shows what is missing in "Needs attention" and the next pass writes it again
(found by its sync id first, never twice); a deletion the feed reports is left to the passes'
rules. It runs per mailbox under the lease, on a schedule per running environment
(``SYNC_DRIFT_AUDIT_HOURS``, default daily; 0 turns it off)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from django_q.models import Schedule

from synccore.models import ItemLink, LinkState, SynchronizerState, SyncKind, UserLease
from synccore.runtime import leases, passes, scheduling
from synccore.sync.calendar import run_calendar_pass
from synccore.sync.drift import audit_mailbox
from tests.fixtures import factories as f
from tests.fixtures.api import client_for, user_with_role

pytestmark = [pytest.mark.django_db, pytest.mark.backends("ews", "graph")]


def attention(crm) -> list[dict]:
    viewer = client_for(user_with_role("viewer"))
    return viewer.get(f"/api/v1/environments/{crm.env.pk}/attention/").json()["results"]


def by_kind(found) -> dict[str, tuple[int, int]]:
    return {d.kind: (d.checked, len(d.missing)) for d in found}


def test_finding_9_contacts_lost_by_exchange_are_found_shown_and_written_again(crm):
    for name in ("One", "Two", "Three"):
        f.contact(crm.env, last_name=name)
    assert crm.contacts_pass().created == 3
    lost = next(c for c in crm.mailbox().contacts() if c.props.get("Surname") == "Two")
    crm.mailbox().lose(lost)
    assert crm.contacts_pass().created == 0  # the feed says nothing: incremental passes never notice

    assert by_kind(audit_mailbox(crm.alice))[SyncKind.CONTACTS] == (3, 1)
    listed = attention(crm)
    assert [(i["state"], i["user"]) for i in listed] == [("failed", crm.alice.mailbox_email)]
    assert "Missing from the mailbox" in listed[0]["last_error"]

    assert crm.contacts_pass().created == 1
    assert sorted(c.props.get("Surname") for c in crm.mailbox().contacts()) == ["One", "Three", "Two"]
    assert attention(crm) == []
    assert by_kind(audit_mailbox(crm.alice))[SyncKind.CONTACTS] == (3, 0)


# Graph's calendar delta compares the window with the snapshot its token carries, so an event gone
# from the view comes as "@removed" (exchange_sim does the same): there the loss is not silent, and
# the pass takes it as a deletion in Exchange (K9). The contacts test covers the audit over Graph.
@pytest.mark.backends("ews")
def test_finding_9_a_lost_calendar_item_is_written_again_once(crm):
    first = date.today() + timedelta(days=2)
    start = datetime(first.year, first.month, first.day, 9, tzinfo=UTC)
    for subject in ("Kept", "Lost"):
        f.activity(
            crm.env, subject=subject, start=start, end=start + timedelta(hours=1), organizer=crm.alice.employee
        )
    assert run_calendar_pass(crm.alice.pk).created == 2
    lost = next(e for e in crm.mailbox().items("calendar") if e.props.get("Subject") == "Lost")
    crm.mailbox().lose(lost)
    assert run_calendar_pass(crm.alice.pk).created == 0

    assert by_kind(audit_mailbox(crm.alice))[SyncKind.CALENDAR] == (2, 1)
    assert [i["state"] for i in attention(crm)] == ["failed"]
    assert run_calendar_pass(crm.alice.pk).created == 1
    subjects = sorted(e.props.get("Subject") for e in crm.mailbox().items("calendar"))
    assert subjects == ["Kept", "Lost"]
    assert attention(crm) == []
    assert by_kind(audit_mailbox(crm.alice))[SyncKind.CALENDAR] == (2, 0)


def test_finding_9_a_deletion_the_feed_reports_is_not_drift(crm):
    f.contact(crm.env, last_name="One")
    crm.contacts_pass()
    crm.mailbox().delete(crm.mailbox().contacts()[0])  # a person's deletion, in the feed
    assert by_kind(audit_mailbox(crm.alice))[SyncKind.CONTACTS] == (1, 0)
    assert ItemLink.objects.get(sync_user=crm.alice).state == LinkState.SYNCED  # the pass decides


def test_finding_9_the_audit_runs_under_the_lease_and_enqueues_the_repair(crm, monkeypatch):
    crm.env.state = SynchronizerState.RUNNING
    crm.env.save()
    f.contact(crm.env, last_name="One")
    crm.contacts_pass()
    crm.mailbox().lose(crm.mailbox().contacts()[0])
    enqueued = []
    monkeypatch.setattr(passes.queue, "enqueue", lambda *args, **kw: enqueued.append(args))

    assert leases.acquire(crm.alice.pk, "a-worker", ttl_s=60)
    assert passes.audit_mailbox(crm.alice.pk) == "deferred: another worker holds this mailbox"
    assert ItemLink.objects.get(sync_user=crm.alice).state == LinkState.SYNCED
    leases.release(crm.alice.pk, "a-worker")

    assert passes.audit_mailbox(crm.alice.pk).startswith("audited: contacts 1 missing of 1")
    assert (passes.RUN_PASS, crm.alice.pk, "contacts") in [args[:3] for args in enqueued]
    assert not UserLease.objects.exclude(holder="").exists()


@pytest.mark.backends("ews")  # scheduling only: the same whatever the backend
def test_finding_9_a_running_environment_is_audited_on_a_configurable_schedule(crm, settings, monkeypatch):
    enqueued = []
    monkeypatch.setattr(scheduling.queue, "enqueue", lambda *args, **kw: enqueued.append(args))
    monkeypatch.setattr(scheduling.push, "schedule", lambda env: None)
    settings.SYNC_DRIFT_AUDIT_HOURS = 6
    crm.env.state = SynchronizerState.RUNNING
    crm.env.save()
    scheduling.schedule_environment(crm.env)
    audit = Schedule.objects.get(name=scheduling.drift_audit_schedule_name(crm.env))
    assert (audit.func, audit.minutes) == (scheduling.DRIFT_AUDIT, 360)

    enqueued.clear()
    assert scheduling.audit_environment(crm.env.pk) == 2
    assert sorted(args for args in enqueued) == sorted(
        (scheduling.AUDIT_MAILBOX, user.pk) for user in (crm.alice, crm.bob)
    )
    scheduling.unschedule_environment(crm.env)
    assert not Schedule.objects.filter(name=scheduling.drift_audit_schedule_name(crm.env)).exists()

    settings.SYNC_DRIFT_AUDIT_HOURS = 0  # off
    scheduling.schedule_environment(crm.env)
    assert not Schedule.objects.filter(name=scheduling.drift_audit_schedule_name(crm.env)).exists()


def test_finding_9_a_lost_task_is_written_again_once(crm):
    from synccore.sync.tasks import run_task_pass

    crm.configure(synchronize_tasks=True)
    due = date.today() + timedelta(days=5)
    for subject in ("Kept", "Lost"):
        f.activity(
            crm.env,
            type="task",
            subject=subject,
            due=due,
            responsible=crm.alice.employee,
            start=datetime(due.year, due.month, due.day, tzinfo=UTC),
        )
    assert run_task_pass(crm.alice.pk).created == 2
    lost = next(t for t in crm.mailbox().tasks() if t.props.get("Subject") == "Lost")
    crm.mailbox().lose(lost)
    assert run_task_pass(crm.alice.pk).created == 0

    assert by_kind(audit_mailbox(crm.alice))[SyncKind.TASKS] == (2, 1)
    assert [i["state"] for i in attention(crm)] == ["failed"]
    assert run_task_pass(crm.alice.pk).created == 1
    assert sorted(t.props.get("Subject") for t in crm.mailbox().tasks()) == ["Kept", "Lost"]
    assert attention(crm) == []
