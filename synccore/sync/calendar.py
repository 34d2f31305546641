"""One calendar pass for one sync user, both directions (rules K1–K16, DESIGN §4 and §5).

Per pass: read what changed in the mailbox's calendar since the folder token (plus the slice of
the horizon that came into the window since yesterday, K15), select the CRM activities this
mailbox carries (K1, K3), then take each item through the decision table — create, adopt,
import, ignore an invitee copy, make the stub, push, pull, three-way merge, delete or cancel.

The pass reads and orchestrates; the table is ``calendar_plan.CalendarPlanner`` (decisions as
``Step``\\ s, never a write) and the writes are ``calendar_write.CalendarWriter``'s. Each item
is decided from what was read, then its steps are written, item after item in the order the
pass has always gone: foreign Exchange items, linked items, new CRM activities; the queued
creates and deletes are written at the end.

A link's snapshot holds the normal form (``events.py``) last agreed on both sides; a side has
changed only where its normal form differs from the snapshot, so moved change keys, HTML
bodies and our own writes never come back as changes (K8: no ping-pong).
"""

from __future__ import annotations

import logging

from synccore import mapping
from synccore.mailbox.base import (
    CalendarEvent,
    InvalidItem,
    InvalidSyncToken,
    ItemNotFound,
    MailboxBackend,
    MailboxError,
    RemoteRef,
)
from synccore.models import (
    Activity,
    FolderState,
    ItemLink,
    SyncDirection,
    SyncKind,
    SyncRun,
    SyncUser,
)
from synccore.sync import limits
from synccore.sync.calendar_plan import (
    CALENDAR_TYPES,
    CalendarPlanner,
    CalendarScope,
    Target,
)
from synccore.sync.calendar_write import CalendarWriter
from synccore.sync.runs import PassContext, execute_pass, unconfirmed_links

__all__ = ["CALENDAR_TYPES", "CalendarPass", "CalendarSyncDisabled", "Target", "run_calendar_pass"]

log = logging.getLogger(__name__)


PROGRESS_EVERY = 100  # linked items between two progress reports


class CalendarSyncDisabled(Exception):
    pass


class CalendarPass(CalendarScope):
    """Reads both sides, then takes each item through the planner and the writer."""

    def __init__(self, user: SyncUser, backend: MailboxBackend, ctx: PassContext, run: SyncRun) -> None:
        super().__init__(user)
        self.backend = backend
        self.ctx = ctx
        self.run = run
        self.full = ctx.full
        if mapping.ACTIVITY not in backend.PROPERTY_KINDS:
            self.flow = self.flow.without_properties()  # the settings check says so (Domino)
        self.planner = CalendarPlanner(self)
        self.writer = CalendarWriter(self, self.planner, backend, ctx, run)

    # --- Reading ------------------------------------------------------------------------------

    def read_changes(
        self, state: FolderState, links_by_remote: dict[str, ItemLink]
    ) -> tuple[list[RemoteRef], set[str]]:
        """Changed refs worth reading (not our own writes) and ids deleted, since the token. A
        full pass reads the folder from the start, and every linked item with it."""
        try:
            if self.full:
                raise InvalidSyncToken("a full pass reads the folder again")
            known = {i: link.remote_change_key for i, link in links_by_remote.items()}
            page = self.backend.calendar_changes(self.mailbox, state.remote_folder_id, state.sync_token, known)
        except InvalidSyncToken:
            if not self.full:
                log.warning("calendar sync token of %s rejected; reading the folder again", self.mailbox)
            page = self.backend.calendar_changes(self.mailbox, state.remote_folder_id, "")
            known = {ref.item_id for ref in page.changed}
            state.sync_token, state.pending_changes = page.token, []  # read with the rest
            # A first read may cover only the window (Graph): what it lacks is looked up, and only
            # what is no longer in the calendar is gone.
            missing = [i for i in links_by_remote if i not in known]
            present = self.backend.calendar_present(self.mailbox, state.remote_folder_id, missing)
            changed = list(page.changed)
            changed += [RemoteRef(i, key, state.remote_folder_id) for i, key in present.items()]
            return changed, set(missing) - present.keys()
        state.sync_token = page.token
        # What the last pass saw of others while reading back its own writes: the token has
        # moved past it. Listed again (or deleted) since, the page's word is newer.
        reported = {ref.item_id for ref in page.changed} | set(page.deleted)
        pending = [
            RemoteRef(item_id, change_key, state.remote_folder_id)
            for item_id, change_key in state.pending_changes
            if item_id not in reported
        ]
        state.pending_changes = []
        changed = [
            ref
            for ref in [*page.changed, *pending]
            if ref.item_id not in links_by_remote
            or links_by_remote[ref.item_id].remote_change_key != ref.change_key
        ]
        deleted = set(page.deleted)
        seen = {ref.item_id for ref in changed} | deleted
        return changed + unconfirmed_links(self.run, state.remote_folder_id, links_by_remote, seen), deleted

    # --- The pass ----------------------------------------------------------------------------

    def execute(self) -> bool:
        state, _ = FolderState.objects.get_or_create(
            sync_user=self.user, kind=SyncKind.CALENDAR, folder_name=""
        )
        if not state.remote_folder_id:
            state.remote_folder_id = self.backend.ensure_calendar_folder(self.mailbox)
            state.sync_token, state.window_end, state.pending_changes = "", None, []
        self.writer.folder_id = state.remote_folder_id
        # Their activities are loaded with this mailbox's own (``my_activities``), once read.
        links = list(ItemLink.objects.filter(sync_user=self.user, kind=mapping.ACTIVITY))
        links_by_remote = {link.remote_id: link for link in links if link.remote_id}
        links_by_activity = {link.activity_id: link for link in links}

        changed_refs, deleted_ids = self.read_changes(state, links_by_remote)
        if state.window_end and state.window_end < self.horizon_end:
            fresh = self.backend.calendar_slice(
                self.mailbox, state.remote_folder_id, state.window_end, self.horizon_end
            )
            seen = {ref.item_id for ref in changed_refs}
            changed_refs += [
                ref for ref in fresh if ref.item_id not in seen and ref.item_id not in links_by_remote
            ]
        state.window_end = self.horizon_end

        remote: dict[str, CalendarEvent] = {}
        for start in range(0, len(changed_refs), max(1, self.settings.batch_size)):
            batch = changed_refs[start : start + self.settings.batch_size]
            read = self.backend.get_events(self.mailbox, batch, self.flow.properties())
            for ref, event in zip(batch, read, strict=True):
                if isinstance(event, ItemNotFound):
                    deleted_ids.add(ref.item_id)
                elif isinstance(event, InvalidItem):
                    self.writer.unreadable(links_by_remote.get(ref.item_id), event)
                elif isinstance(event, MailboxError):
                    log.warning("could not read %s in %s: %s", ref.item_id, self.mailbox, event)
                else:
                    remote[ref.item_id] = event

        mine = self.my_activities(links)
        held = self.decide_and_write(links, links_by_remote, links_by_activity, mine, remote, deleted_ids)
        if held and self.writer.crm_deletes:
            # Exchange reports a deletion once: the token stays where it was, so the next pass
            # (after an administrator confirmed) reads the deletions it held again.
            return False
        if self.writer.wrote:
            self.writer.absorb_own_writes(state)
        state.save()
        return not held

    def decide_and_write(
        self,
        links: list[ItemLink],
        links_by_remote: dict[str, ItemLink],
        links_by_activity: dict[int, ItemLink],
        mine: dict[int, tuple[Activity, Target]],
        remote: dict[str, CalendarEvent],
        deleted_ids: set[str],
    ) -> bool:
        """Every item through the table, then the queued writes; True when the safety limit
        held the deletions."""
        planner, writer = self.planner, self.writer

        # Exchange → CRM for items we know nothing of (K6, K7), and adoption by sync id.
        pending_by_sync_id = {str(link.sync_id): link for link in links if not link.remote_id}
        for item_id, event in remote.items():
            if item_id in links_by_remote:
                continue
            step = planner.foreign(event, pending_by_sync_id)
            if step is None:
                continue
            writer.carry_out([step])
            if step.link is not None:  # adopted: compared as linked below
                links_by_remote[item_id] = step.link
        writer.mark_ignored()

        # Linked items: both ways.
        new = [pair for pk, pair in mine.items() if pk not in links_by_activity]
        self.progress(0, len(links) + len(new))
        for done, link in enumerate(links, 1):
            if done % PROGRESS_EVERY == 0:
                self.progress(done)
            self.ctx.checkpoint()
            try:
                entry = mine.get(link.activity_id)
                event = remote.get(link.remote_id)
                writer.carry_out(planner.linked(link, entry, event, link.remote_id in deleted_ids))
            except InvalidItem as exc:  # bad input on this item (e.g. an unknown time zone)
                writer.item_failed(link, exc)

        # CRM → Exchange for activities of mine without a link (K3).
        for activity, target in new:
            step = planner.new(activity, target)
            if step is not None:
                writer.carry_out([step])

        writer.save_new_links()  # before any write, held ones too (as each was queued)
        messages_held = limits.hold_meeting_messages(writer)  # P4
        writer.write_creates()
        held = writer.write_deletes(links)
        limits.consume_confirmation(writer)
        self.progress(self.run.progress_total)
        return held or messages_held

    def progress(self, done: int, total: int | None = None) -> None:
        """Items done of the pass's total, as the contact pass reports them (console, API)."""
        fields = {"progress_done": done}
        self.run.progress_done = done
        if total is not None:
            self.run.progress_total = fields["progress_total"] = total
        SyncRun.objects.filter(pk=self.run.pk).update(**fields)
        if self.ctx.on_progress:
            self.ctx.on_progress(done, self.run.progress_total)


def run_calendar_pass(
    user_id: int, ctx: PassContext | None = None, backend: MailboxBackend | None = None
) -> SyncRun:
    """One calendar pass for one sync user. Never raises for mailbox trouble: the run says it."""
    ctx = ctx or PassContext()
    user = SyncUser.objects.select_related("environment__settings", "employee").get(pk=user_id)
    if not user.environment.settings.synchronize_activities:
        raise CalendarSyncDisabled(f"Activity synchronization is off in {user.environment.name}.")
    if user.environment.settings.calendar_direction == SyncDirection.OFF:
        raise CalendarSyncDisabled(f"The calendar's direction is off in {user.environment.name} (T5).")
    if not (user.active and user.calendar_enabled):
        raise CalendarSyncDisabled(
            f"{user.mailbox_email} does not synchronize its calendar (inactive or turned off)."
        )
    return execute_pass(
        user, SyncKind.CALENDAR, ctx, backend, lambda run, b: CalendarPass(user, b, ctx, run).execute()
    )
