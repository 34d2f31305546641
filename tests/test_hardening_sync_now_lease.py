"""Issue 16, finding 2: ``manage.py sync_now`` takes the mailbox's lease, as every pass does.

Two sync_now at once, or one beside a worker's pass, collided on ``itemlink_one_per_contact`` /
``itemlink_one_per_activity`` and left the user unhealthy. Now each foreground pass holds its
mailbox's lease (a worker's pass finding it held asks for a re-run); one that finds the lease held
waits, then says "another pass holds this mailbox" and writes nothing; and a database error is
never reported as a mailbox failure."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import IntegrityError

from synccore.models import Health, ItemLink, Outcome, SyncRun, SyncUser, Trigger, UserLease
from synccore.runtime import leases, passes
from synccore.sync import relink
from tests.fixtures import factories as f

pytestmark = pytest.mark.django_db


def sync_now(*args: str) -> tuple[int, dict, str]:
    out, err = StringIO(), StringIO()
    code = 0
    try:
        call_command("sync_now", *args, stdout=out, stderr=err)
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, json.loads(out.getvalue().strip().splitlines()[-1]), err.getvalue()


def test_finding_2_sync_now_runs_each_pass_under_the_mailbox_lease(crm, monkeypatch):
    f.contact(crm.env, last_name="One")
    held_during_pass = []
    runner = passes.pass_runner

    def watched(kind):
        def run(user_id, ctx):
            held_during_pass.append(UserLease.objects.get(sync_user_id=user_id).holder)
            return runner(kind)(user_id, ctx)

        return run

    monkeypatch.setattr(passes, "pass_runner", watched)
    code, result, _ = sync_now("--environment", crm.env.name, "--kind", "contacts")
    assert (code, result["users"], result["busy"]) == (0, 2, 0)
    assert len(held_during_pass) == 2 and all(held_during_pass)
    assert not UserLease.objects.exclude(holder="").exists()  # released after each pass
    assert set(SyncRun.objects.values_list("worker", flat=True)) == {leases.worker_name()}


def test_finding_2_sync_now_says_another_pass_holds_this_mailbox_and_writes_nothing(crm, settings):
    settings.SYNC_NOW_WAIT_SECONDS = 0
    f.contact(crm.env, last_name="One")
    assert leases.acquire(crm.alice.pk, "a-worker", ttl_s=60)
    code, result, err = sync_now(
        "--environment", crm.env.name, "--kind", "contacts", "--user", crm.alice.mailbox_email
    )
    assert code == 1
    assert (result["users"], result["busy"], result["created"]) == (0, 1, 0)
    assert f"{crm.alice.mailbox_email} contacts: another pass holds this mailbox" in err
    assert not SyncRun.objects.filter(sync_user=crm.alice).exists()
    assert not ItemLink.objects.filter(sync_user=crm.alice).exists()
    assert UserLease.objects.get(sync_user=crm.alice).holder == "a-worker"  # left alone


def test_finding_2_sync_now_waits_for_a_pass_that_holds_the_mailbox(crm, settings, monkeypatch):
    settings.SYNC_NOW_WAIT_SECONDS = 30
    f.contact(crm.env, last_name="One")
    assert leases.acquire(crm.alice.pk, "a-worker", ttl_s=60)
    waits = []

    def the_worker_finishes(seconds):
        waits.append(seconds)
        leases.release(crm.alice.pk, "a-worker")

    monkeypatch.setattr(passes.time, "sleep", the_worker_finishes)
    code, result, _ = sync_now(
        "--environment", crm.env.name, "--kind", "contacts", "--user", crm.alice.mailbox_email
    )
    assert (code, result["busy"], result["created"]) == (0, 0, 1)
    assert len(waits) == 1


def test_finding_2_a_worker_pass_meanwhile_asks_for_a_rerun_instead_of_colliding(crm, monkeypatch):
    """A scheduled pass arriving while sync_now holds the mailbox does not run beside it: it is
    deferred and handed to the workers once sync_now is done."""
    crm.env.state = "running"
    crm.env.save()
    f.contact(crm.env, last_name="One")
    answers, enqueued = [], []
    monkeypatch.setattr(passes.queue, "enqueue", lambda *args, **kw: enqueued.append(args))
    runner = passes.pass_runner

    def with_a_worker_arriving(kind):
        def run(user_id, ctx):
            answers.append(passes.run_pass(user_id, "contacts", Trigger.SCHEDULE))
            return runner(kind)(user_id, ctx)

        return run

    monkeypatch.setattr(passes, "pass_runner", with_a_worker_arriving)
    code, result, _ = sync_now(
        "--environment", crm.env.name, "--kind", "contacts", "--user", crm.alice.mailbox_email
    )
    assert code == 0 and result["created"] == 1
    assert answers == ["deferred: another worker holds this mailbox"]
    assert [args[1:3] for args in enqueued] == [(crm.alice.pk, "contacts")]
    assert SyncRun.objects.filter(sync_user=crm.alice).count() == 1


def test_finding_2_a_database_error_is_not_reported_as_a_mailbox_failure(crm, monkeypatch):
    def collide(user, backend):
        raise IntegrityError("UNIQUE constraint failed: itemlink_one_per_contact")

    monkeypatch.setattr(relink, "follow_backend", collide)
    code, result, err = sync_now(
        "--environment", crm.env.name, "--kind", "contacts", "--user", crm.alice.mailbox_email
    )
    assert code == 1 and result["failed"] == 1 and "database error" in err
    run = SyncRun.objects.get(sync_user=crm.alice)
    assert run.outcome == Outcome.FAILED and "database error" in run.error
    alice = SyncUser.objects.get(pk=crm.alice.pk)
    assert alice.health == Health.HEALTHY and not alice.last_error
    assert "contacts" not in (alice.kind_health or {})


def test_finding_2_removing_synchronized_items_takes_the_lease_too(crm, monkeypatch):
    from synccore.runtime import service as runtime
    from synccore.sync import contacts

    removed = []
    monkeypatch.setattr(
        contacts,
        "remove_synchronized_items",
        lambda user_id, confirm: removed.append(UserLease.objects.get(sync_user_id=user_id).holder) or 1,
    )
    SyncUser.objects.filter(pk=crm.alice.pk).update(active=False)
    assert leases.acquire(crm.alice.pk, "a-worker", ttl_s=60)
    with pytest.raises(runtime.MailboxBusy, match="Another pass holds"):
        runtime.remove_synchronized_items(crm.alice.pk)
    assert removed == []
    leases.release(crm.alice.pk, "a-worker")
    assert runtime.remove_synchronized_items(crm.alice.pk) == 1
    assert removed and removed[0]  # done while holding the lease
    assert UserLease.objects.get(sync_user=crm.alice).holder == ""
