"""The task synchronization converges, whatever people do on either side (T1–T6).

A hypothesis ``RuleBasedStateMachine`` (the calendar machine's sibling) plays CRM users and
Outlook / To Do / Notes users against two sync users' task folders in exchange_sim (over EWS, Graph
and Domino): creates, edits,
completions and reopenings, deletions, un-synchronizing and handing a task to the other employee,
with the clock moving on, interleaved with task passes — some of them hit by faults (Exchange busy,
a dropped connection, a crash right after a remote write, before the link is committed).

After every fault-free pass:
- every linked task holds equal mapped fields on both sides (the normal form);
- every open synchronized CRM task of a sync user is in that user's mailbox once (unless Outlook
  deleted it: kept under the default policy), every task in a mailbox is linked (unless it was
  completed before it was ever synchronized), and no task is linked twice;
- a second pass changes nothing, on either side.

One simulator per test function; each example starts from the same empty mailboxes (a store
snapshot) and rolls the database back to a savepoint. ``CI=true`` runs 200 examples.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from django.db import transaction
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from synccore import mapping
from synccore.mailbox import domino, graph
from synccore.mailbox.base import RemoteRef, TaskItem
from synccore.models import Activity, ItemLink, LinkState, SyncRun
from synccore.sync.connection import backend_for, connection_config
from synccore.sync.runs import PassContext
from synccore.sync.tasks import run_task_pass
from synccore.sync.tasks_plan import TaskPlanner, mapping_rows
from tests.conftest import IN_CI

pytestmark = [pytest.mark.django_db, pytest.mark.backends("ews", "graph", "domino")]

BASE = datetime(2027, 3, 22, 7, 0, tzinfo=UTC)
EXAMPLES = int(os.environ.get("TASKS_EXAMPLES", 200 if IN_CI else 15))
PROFILE = settings(
    max_examples=EXAMPLES,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    database=None if IN_CI else settings.default.database,
    phases=[p for p in Phase if p != Phase.shrink] if os.environ.get("TASKS_NO_SHRINK") else tuple(Phase),
)
FAULT_OPERATIONS = {
    "ews": {"changes": "SyncFolderItems", "read": "GetItem", "create": "CreateItem", "update": "UpdateItem", "delete": "DeleteItem"},
    "graph": {
        "changes": "graph.todoTasks.delta",
        "read": "graph.todoTasks.get",
        "create": "graph.todoTasks.create",
        "update": "graph.todoTasks.update",
        "delete": "graph.todoTasks.delete",
    },
    # Domino To Do items: listed by search, read and updated as pim items, made and deleted in the calendar.
    "domino": {"changes": "domino.search", "read": "domino.pimitem.get", "create": "domino.calendar.create",
               "update": "domino.pimitem.update", "delete": "domino.calendar.delete"},
}  # fmt: skip
GRAPH_BATCHED = ("read", "create", "update", "delete")
TASK_WRITES = {
    "ews": ("CreateItem", "UpdateItem", "DeleteItem"),
    "graph": ("graph.todoTasks.create", "graph.todoTasks.update", "graph.todoTasks.delete"),
    "domino": ("domino.calendar.create", "domino.pimitem.update", "domino.calendar.delete"),
}
IMPORTANCE = {"low": "Low", "normal": "Normal", "high": "High"}


class Crash(Exception):
    """Injected: the process died right after a remote write, before the link was committed."""


class CrashingBackend:
    """The real backend, except that the n-th task write of a pass raises after it reached Exchange."""

    WRITES = ("create_tasks", "update_tasks", "delete_tasks")

    def __init__(self, backend) -> None:
        self._backend = backend
        self.crash_after: int | None = None

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._backend, name)
        if name not in self.WRITES:
            return attribute

        def write(*args, **kwargs):
            result = attribute(*args, **kwargs)
            if self.crash_after is not None:
                if self.crash_after == 0:
                    self.crash_after = None
                    raise Crash("injected crash after a remote write")
                self.crash_after -= 1
            return result

        return write


class TaskMachine(RuleBasedStateMachine):
    crm: Any = None
    clock: Any = None
    backend: Any = None
    pristine: dict[str, Any] = {}

    def __init__(self) -> None:
        super().__init__()
        self.savepoint = transaction.atomic()
        self.savepoint.__enter__()
        self.sim = self.crm.sim
        self.sim.store.load_json(self.pristine)
        self.sim.faults.clear()
        self.clock.set(BASE, frozen=True)
        self.forget_tokens_and_waits()
        self.users = {u.mailbox_email: u for u in (self.crm.alice, self.crm.bob)}
        self.numbers = iter(range(1, 10_000))

    def teardown(self) -> None:
        self.sim.faults.clear()
        transaction.set_rollback(True)
        self.savepoint.__exit__(None, None, None)

    # --- helpers ------------------------------------------------------------------------------

    def forget_tokens_and_waits(self) -> None:
        if self.crm.is_graph:
            graph.forget_process_state()
            self.backend.client.drop_token()
        if self.crm.backend == "domino":
            domino.forget_process_state()

    def tasks(self) -> list[Activity]:
        return list(Activity.objects.filter(type="task").order_by("pk"))

    def outlook(self, address: str) -> list:
        return self.sim.user(address).tasks()

    def pick(self, items: list, index: int):
        return items[index % len(items)] if items else None

    def due(self, days: int | None) -> date | None:
        return None if days is None else (BASE + timedelta(days=days)).date()

    # --- CRM users ----------------------------------------------------------------------------

    @precondition(lambda self: len(self.tasks()) < 6)
    @rule(
        who=st.sampled_from(["alice@contoso.example", "bob@contoso.example"]),
        days=st.one_of(st.none(), st.integers(-3, 20)),
        completed=st.booleans(),
        priority=st.sampled_from(["low", "normal", "high"]),
    )
    def crm_creates(self, who, days, completed, priority):
        due = self.due(days)
        start = datetime.combine(due, time.min, UTC) if due else self.clock.now()
        Activity.objects.create(
            environment=self.crm.env,
            type="task",
            subject=f"Task {next(self.numbers)}",
            comment="From the CRM",
            due=due,
            priority=priority,
            status="completed" if completed else "open",
            completed_at=self.clock.now() if completed else None,
            responsible=self.users[who].employee,
            start=start,
            end=start,
        )

    @rule(
        pick=st.integers(0, 99),
        what=st.sampled_from(["subject", "priority", "due", "comment", "complete", "reopen", "start"]),
    )
    def crm_edits(self, pick, what):
        activity = self.pick(self.tasks(), pick)
        if activity is None:
            return
        if what == "subject":
            activity.subject = f"Task {next(self.numbers)} (CRM)"
        elif what == "priority":
            activity.priority = {"low": "high", "normal": "low", "high": "normal"}[activity.priority]
        elif what == "due":
            activity.due = (activity.due or BASE.date()) + timedelta(days=2)
        elif what == "comment":
            activity.comment = f"Comment {next(self.numbers)}"
        elif what == "complete":
            activity.status, activity.completed_at = "completed", self.clock.now()
        elif what == "reopen":
            activity.status, activity.completed_at = "open", None
        elif what == "start" and activity.due:
            activity.start = activity.end = datetime.combine(activity.due - timedelta(days=3), time.min, UTC)
        activity.save()

    @rule(pick=st.integers(0, 99), how=st.sampled_from(["delete", "unsync", "resync", "reassign"]))
    def crm_deletes(self, pick, how):
        if how == "resync":
            activity = self.pick(list(Activity.objects.filter(type="task", synchronize=False)), pick)
            if activity is not None:
                activity.synchronize = True
                activity.save()
            return
        activity = self.pick(self.tasks(), pick)
        if activity is None:
            return
        if how == "delete":
            activity.retire()
        elif how == "unsync":
            activity.synchronize = False
            activity.save()
        else:
            others = [u.employee for u in self.users.values() if u.employee_id != activity.responsible_id]
            activity.responsible = others[0]
            activity.save()

    # --- Outlook / To Do users ----------------------------------------------------------------

    @precondition(lambda self: sum(len(self.outlook(a)) for a in self.users) < 8)
    @rule(
        who=st.sampled_from(["alice@contoso.example", "bob@contoso.example"]),
        days=st.one_of(st.none(), st.integers(-3, 20)),
        completed=st.booleans(),
    )
    def outlook_creates(self, who, days, completed):
        props: dict[str, Any] = {}
        if days is not None:
            props["DueDate"] = datetime.combine(self.due(days), time.min, UTC)
        item = self.sim.user(who).create_task(f"Outlook {next(self.numbers)}", **props)
        if completed:
            self.sim.user(who).complete_task(item)

    @rule(
        who=st.sampled_from(["alice@contoso.example", "bob@contoso.example"]),
        pick=st.integers(0, 99),
        what=st.sampled_from(["subject", "importance", "due", "body", "complete", "reopen", "start"]),
    )
    def outlook_edits(self, who, pick, what):
        item = self.pick(self.outlook(who), pick)
        if item is None:
            return
        user = self.sim.user(who)
        if what == "subject":
            user.edit(item, Subject=f"Outlook {next(self.numbers)} (edited)")
        elif what == "importance":
            user.edit(item, Importance="High" if item.props.get("Importance") != "High" else "Low")
        elif what == "due":
            user.edit(item, DueDate=BASE + timedelta(days=5 + next(self.numbers) % 9))
        elif what == "body":
            user.edit(item, Body={"type": "Text", "content": f"[/]Said in Outlook {next(self.numbers)}[\\]"})
        elif what == "complete":
            user.complete_task(item)
        elif what == "reopen":
            user.edit(item, Status="NotStarted")
        elif what == "start" and item.props.get("DueDate"):
            user.edit(item, StartDate=item.props["DueDate"] - timedelta(days=2))

    @rule(who=st.sampled_from(["alice@contoso.example", "bob@contoso.example"]), pick=st.integers(0, 99))
    def outlook_deletes(self, who, pick):
        item = self.pick(self.outlook(who), pick)
        if item is not None:
            self.sim.user(who).delete(item)

    @rule(hours=st.sampled_from([1, 20, 49]))
    def time_passes(self, hours):
        self.clock.advance(timedelta(hours=hours))
        self.forget_tokens_and_waits()

    # --- Passes -------------------------------------------------------------------------------

    def run_passes(self) -> list[SyncRun]:
        return [run_task_pass(user.pk, PassContext(), self.backend) for user in self.users.values()]

    @rule(
        fault=st.sampled_from(["busy", "slow busy", "drop", "crash"]),
        aim=st.sampled_from([None, "changes", "read", "create", "update", "delete"]),
        nth=st.integers(0, 2),
    )
    def faulty_pass(self, fault, aim, nth):
        operation = FAULT_OPERATIONS[self.crm.backend][aim] if aim else None
        if fault == "drop" and self.crm.is_graph and aim in GRAPH_BATCHED:
            operation = "graph.$batch"
        if fault == "busy":
            self.sim.faults.server_busy(times=nth + 1, back_off_ms=1, operation=operation)
        elif fault == "slow busy":
            self.sim.faults.server_busy(times=1, back_off_ms=5000, operation=operation)
        elif fault == "drop":
            self.sim.faults.drop_connection(times=1, operation=operation)
        else:
            self.backend.crash_after = nth
        try:
            for run in self.run_passes():
                assert run.outcome != "running"
        finally:
            self.sim.faults.clear()
            self.backend.crash_after = None
            self.forget_tokens_and_waits()
        self.check_no_duplicates()

    @rule()
    def sync(self):
        for run in self.run_passes():
            assert run.outcome in ("success", "partial"), (run.outcome, run.error)
            assert not run.failed, run.error
        self.check_converged()
        self.check_no_duplicates()
        self.check_quiet()

    # --- Checks -------------------------------------------------------------------------------

    @invariant()
    def one_link_per_task_and_mailbox(self):
        pairs = list(ItemLink.objects.filter(kind=mapping.TASK).values_list("sync_user_id", "activity_id"))
        assert len(pairs) == len(set(pairs))

    def check_no_duplicates(self) -> None:
        for address in self.users:
            ids = Counter(
                value
                for item in self.outlook(address)
                for key, value in item.extended.items()
                if key.name == "CrmSyncId"
            )
            ids += Counter(
                link.get("ExternalId") or link.get("externalId")
                for item in self.outlook(address)
                for link in item.props.get("_LinkedResources") or []
                if isinstance(link, dict)
            )
            doubled = [k for k, n in ids.items() if k and n > 1]
            assert not doubled, f"a sync id twice in {address}'s tasks: {doubled}"
        remote_ids = [r for r in ItemLink.objects.filter(kind=mapping.TASK).values_list("remote_id", flat=True) if r]
        assert len(remote_ids) == len(set(remote_ids)), "one task linked twice"

    def check_converged(self) -> None:
        for address, user in self.users.items():
            planner = TaskPlanner(user, mapping_rows(self.crm.env.pk))
            folder = self.backend.ensure_task_folder(address)
            links = list(ItemLink.objects.filter(sync_user=user, kind=mapping.TASK).select_related("activity"))
            linked = {}
            for link in links:
                if link.state not in (LinkState.SYNCED, LinkState.AMBIGUOUS):
                    continue
                (task,) = self.backend.get_tasks(address, [RemoteRef(link.remote_id, "", folder)])
                assert isinstance(task, TaskItem), (link.activity, task)
                assert planner.crm(link.activity) == planner.remote(task), link.activity
                linked[link.remote_id] = link
            for item in self.outlook(address):
                remote_id = self.crm.remote_id(item)
                if remote_id not in linked and item.props.get("Status") == "Completed":
                    continue  # completed before any pass saw it open: never imported (T4, as T2)
                assert remote_id in linked, (
                    f"Outlook's “{item.props.get('Subject')}” ({item.props.get('Status')}) in {address} has no "
                    f"CRM task; links: {list(ItemLink.objects.filter(kind=mapping.TASK).values())}"
                )
            kept = {link.activity_id for link in links if link.state == LinkState.DELETED_REMOTE}
            for activity in Activity.objects.filter(type="task", synchronize=True, responsible=user.employee):
                if activity.pk in kept or (activity.status == "completed" and not any(
                    link.activity_id == activity.pk for link in links
                )):
                    continue
                assert any(link.activity_id == activity.pk and link.remote_id for link in links), (
                    f"the CRM task “{activity.subject}” is not in {address}"
                )

    def snapshot(self) -> tuple:
        items = sorted(
            (i.id, i.changekey) for address in self.users for i in self.sim.store.all_items(address, "Task")
        )
        activities = list(
            Activity.all_objects.filter(type="task").order_by("pk").values_list(
                "pk", "subject", "comment", "status", "due", "start", "priority", "deleted_at", "updated_at"
            )
        )
        return items, activities

    def check_quiet(self) -> None:
        before = self.snapshot()
        self.sim.counters.reset()
        for run in self.run_passes():
            assert (run.created, run.updated, run.deleted, run.conflicts) == (0, 0, 0, 0), run.counts()
        ops = TASK_WRITES[self.crm.backend]
        writes = sum(self.sim.counters[op] for op in ops)
        if self.crm.is_graph:
            writes += sum(self.sim.counters.sub_requests(op) for op in ops)
        assert not writes, self.sim.counters.snapshot()
        assert self.snapshot() == before, "a pass right after a pass changed something"


def test_task_sync_converges(crm, clock):
    crm.configure(synchronize_tasks=True, safety_limit_minimum=1000)
    config = dataclasses.replace(connection_config(crm.settings), max_wait_s=0.5)
    TaskMachine.crm = crm
    TaskMachine.clock = clock
    TaskMachine.backend = CrashingBackend(backend_for(config))
    TaskMachine.pristine = crm.sim.store.to_json()
    try:
        run_state_machine_as_test(TaskMachine, settings=PROFILE)
    finally:
        TaskMachine.backend._backend.close()
