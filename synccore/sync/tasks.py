"""One task pass for one sync user: CRM activities of type Task ⇄ the mailbox's tasks (T1–T6).

EWS: the default Tasks folder; Graph: the default Microsoft To Do list. Per pass: read what
changed in the task folder since its token, select the CRM tasks this mailbox carries (T1: the
responsible employee's sync user), decide every item first — ``tasks_plan.TaskPlanner`` gives
``Step``\\ s, each with its plain-data ``Action`` for a preview — and only then write
(``tasks_write.TaskWrites``): the CRM side at once, the mailbox side in batches.
"""

from __future__ import annotations

import logging

from django.db.models import Q
from django.utils import timezone

from synccore import mapping
from synccore.mailbox.base import (
    InvalidSyncToken,
    ItemNotFound,
    MailboxBackend,
    MailboxError,
    RemoteRef,
    TaskItem,
)
from synccore.models import (
    Activity,
    ActivityType,
    FolderState,
    ItemLink,
    LinkState,
    SyncDirection,
    SyncKind,
    SyncRun,
    SyncUser,
)
from synccore.sync import actions, custom_rows
from synccore.sync.runs import PassContext, execute_pass, unconfirmed_links
from synccore.sync.tasks_plan import Step, TaskPlanner, mapping_rows
from synccore.sync.tasks_write import TaskWrites

__all__ = ["TaskPass", "TaskSyncDisabled", "run_task_pass"]

log = logging.getLogger(__name__)


class TaskSyncDisabled(Exception):
    pass

# --- The pass -----------------------------------------------------------------------------------


class TaskPass(TaskWrites):
    """Reads both sides, plans every item, then writes (CRM at once, the mailbox in batches)."""

    def __init__(self, user: SyncUser, backend: MailboxBackend, ctx: PassContext, run: SyncRun) -> None:
        self.user = user
        self.env = user.environment
        self.settings = self.env.settings
        self.backend = backend
        self.ctx = ctx
        self.run = run
        self.mailbox = user.mailbox_email
        self.now = timezone.now()
        # Custom rows to an extended property only where the backend's tasks have them (not To Do).
        self.custom = custom_rows.load(self.env.pk, mapping.TASK, backend.PROPERTY_KINDS)
        self.planner = TaskPlanner(user, mapping_rows(self.env.pk), self.custom)
        self.rows = self.planner.rows
        self.folder_id = ""
        self.wrote = False
        self.removed: set[str] = set()
        self._companies: list[tuple[int, str]] | None = None

    # --- Reading ------------------------------------------------------------------------------

    def my_tasks(self) -> dict[int, Activity]:
        """T1: synchronized CRM tasks whose responsible employee is this sync user's."""
        responsible = Q(responsible_id=self.user.employee_id)
        if self.mailbox:
            responsible |= Q(responsible__email__iexact=self.mailbox)
        found = Activity.objects.filter(
            environment=self.env, type=ActivityType.TASK, synchronize=True, is_stub=False
        ).filter(responsible)
        return {activity.pk: activity for activity in found}

    def read_changes(self, state: FolderState, by_remote: dict[str, ItemLink]) -> tuple[list[RemoteRef], set[str]]:
        """Changed refs worth reading (not our own writes) and the ids gone, since the token."""
        token = state.sync_token
        try:
            page = self.backend.task_changes(self.mailbox, state.remote_folder_id, token)
        except InvalidSyncToken:
            log.warning("task sync token of %s rejected; reading the folder again", self.mailbox)
            token = ""
            page = self.backend.task_changes(self.mailbox, state.remote_folder_id, "")
        state.sync_token = page.token
        changed = [
            ref
            for ref in page.changed
            if ref.item_id not in by_remote or by_remote[ref.item_id].remote_change_key != ref.change_key
        ]
        if not token:
            # A read from the start lists the folder whole: a linked task it lacks is gone (also one
            # created after the token a crashed pass left, whose deletion no token reports).
            return changed, set(by_remote) - {ref.item_id for ref in page.changed}
        deleted = set(page.deleted)
        seen = {ref.item_id for ref in changed} | deleted
        return changed + unconfirmed_links(self.run, state.remote_folder_id, by_remote, seen), deleted

    def read_tasks(self, refs: list[RemoteRef], by_remote: dict[str, ItemLink], deleted: set[str]) -> dict[str, TaskItem]:
        out: dict[str, TaskItem] = {}
        size = max(1, self.settings.batch_size)
        for start in range(0, len(refs), size):
            batch = refs[start : start + size]
            read = self.backend.get_tasks(self.mailbox, batch, custom_rows.property_names(self.custom))
            for ref, task in zip(batch, read, strict=True):
                if isinstance(task, ItemNotFound):
                    deleted.add(ref.item_id)
                elif isinstance(task, MailboxError):
                    link = by_remote.get(ref.item_id)
                    if link is not None:
                        self.item_failed(link, task)
                    else:
                        log.warning("could not read task %s of %s: %s", ref.item_id, self.mailbox, task)
                else:
                    if task.ref is not None and not task.ref.folder_id:
                        task.ref = RemoteRef(task.ref.item_id, task.ref.change_key, self.folder_id)
                    out[ref.item_id] = task
        return out

    def plan(
        self, links: list[ItemLink], mine: dict[int, Activity], remote: dict[str, TaskItem], deleted: set[str]
    ) -> list[Step]:
        """Every item through the table; nothing is written here."""
        planner = self.planner
        steps = self.plan_foreign(links, remote)
        adopted = {step.link.pk: step.task for step in steps if step.kind == actions.ADOPT}
        for link in links:
            task = adopted.get(link.pk) or remote.get(link.remote_id)
            if link.pk in adopted:
                # Adopted: compared as a linked task (both sides against an empty agreement).
                steps += planner.compare(link, mine[link.activity_id], task) if link.activity_id in mine else []
                continue
            steps += planner.linked(link, mine.get(link.activity_id), task, link.remote_id in deleted)
        linked_ids = {link.activity_id for link in links}
        for activity_id, activity in mine.items():
            if activity_id not in linked_ids:
                step = planner.new(activity)
                if step is not None:
                    steps.append(step)
        return steps

    def plan_foreign(self, links: list[ItemLink], remote: dict[str, TaskItem]) -> list[Step]:
        """Mailbox → CRM for the tasks no link knows (T4), and adoption by sync id."""
        by_remote = {link.remote_id for link in links if link.remote_id}
        pending = {str(link.sync_id): link for link in links if not link.remote_id}
        known = {str(link.sync_id) for link in links}
        # Lost in a move to Graph (H2): a task EWS wrote carries its sync id where To Do cannot
        # see it. Found again by subject and due day as last agreed, never imported a second time.
        lost = {
            (link.snapshot.get("subject"), link.snapshot.get("due")): link
            for link in links
            if link.state == LinkState.NOT_FOUND and link.snapshot
        }
        steps = []
        for item_id, task in remote.items():
            if item_id in by_remote:
                continue
            key = ((task.subject or "").strip(), task.due.isoformat() if task.due else None)
            link = lost.pop(key, None) if not task.sync_id else None
            if link is not None:
                reason = "Found again by subject and due day after a change of backend."
                steps.append(Step(actions.ADOPT, "H2", reason, link=link, task=task))
                continue
            step = self.planner.foreign(task, pending, known)
            if step is not None:
                steps.append(step)
        return steps

    def execute(self) -> bool:
        state, _ = FolderState.objects.get_or_create(sync_user=self.user, kind=SyncKind.TASKS, folder_name="")
        if not state.remote_folder_id:
            state.remote_folder_id = self.backend.ensure_task_folder(self.mailbox)
            state.sync_token = ""
        self.folder_id = state.remote_folder_id
        links = self.links()
        by_remote = {link.remote_id: link for link in links if link.remote_id}
        # A mailbox never read and nothing linked (a new user): its first read comes after the
        # writes, so one delta round gives both Outlook's own tasks and a token past ours.
        fresh = not state.sync_token and not links
        changed, deleted = ([], set()) if fresh else self.read_changes(state, by_remote)
        remote = self.read_tasks(changed, by_remote, deleted)
        steps = self.plan(links, self.my_tasks(), remote, deleted)
        steps = [step for step in steps if self.ctx.decided(step.action())]  # held back: not written (P3)
        allowed = self.write(steps, links)
        if fresh:
            links = self.links()
            by_remote = {link.remote_id: link for link in links if link.remote_id}
            changed, deleted = self.read_changes(state, by_remote)
            foreign = self.plan_foreign(links, self.read_tasks(changed, by_remote, deleted))
            foreign = [step for step in foreign if self.ctx.decided(step.action())]
            self.write(foreign, links)
        elif self.wrote:
            self.absorb_own_writes(state)
        state.save()
        if allowed and any(s.kind == actions.DELETE and s.side == actions.EXCHANGE for s in steps):
            self.user.use_confirmation(SyncKind.TASKS)
        return allowed

    def links(self) -> list[ItemLink]:
        return list(ItemLink.objects.filter(sync_user=self.user, kind=mapping.TASK).select_related("activity"))


def run_task_pass(user_id: int, ctx: PassContext | None = None, backend: MailboxBackend | None = None) -> SyncRun:
    """One task pass for one sync user. Never raises for mailbox trouble: the run says it."""
    ctx = ctx or PassContext()
    user = SyncUser.objects.select_related("environment__settings", "employee").get(pk=user_id)
    sync_settings = user.environment.settings
    if not sync_settings.synchronize_tasks or sync_settings.tasks_direction == SyncDirection.OFF:
        raise TaskSyncDisabled(f"Task synchronization is off in {user.environment.name}.")
    if not (user.active and user.tasks_enabled):
        raise TaskSyncDisabled(f"{user.mailbox_email} does not synchronize tasks (inactive or turned off).")
    return execute_pass(user, SyncKind.TASKS, ctx, backend, lambda run, b: TaskPass(user, b, ctx, run).execute())
