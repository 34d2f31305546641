"""One contact pass for one sync user: CRM → Exchange, one way (rules C1–C9, DESIGN §5).

The pass recomputes the user's selection every time (C9) and compares it with the link rows by
a hash of the mapped fields, so changes that never touch a contact row (sales-group membership,
favorites, filters, mappings) are not missed. Outlook-side changes are seen through the
folder's sync token and overwritten (C6); our own writes are recognised by their change keys.

Crash safety: a link row with a fresh sync id is committed *before* the remote create; a create
that reached Exchange but whose link was not updated is found again by that sync id.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import reduce
from operator import or_

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from synccore import mapping
from synccore.mailbox.base import (
    ContactCard,
    InvalidItem,
    InvalidSyncToken,
    ItemNotFound,
    ItemResult,
    MailboxBackend,
    MailboxError,
    RemoteRef,
)
from synccore.models import (
    Company,
    Contact,
    FolderState,
    Health,
    ItemLink,
    LinkState,
    SyncKind,
    SyncRun,
    SyncSettings,
    SyncUser,
)
from synccore.models.bulk import insert_keyed_rows
from synccore.sync import actions, cards
from synccore.sync.actions import Action, ItemKey
from synccore.sync.connection import open_user_backend
from synccore.sync.runs import PassContext, execute_pass

log = logging.getLogger(__name__)

LINK_FIELDS = [
    "remote_id",
    "remote_change_key",
    "remote_folder_id",
    "crm_hash",
    "snapshot",
    "state",
    "last_error",
    "last_error_at",
    "synced_at",
    "updated_at",
]


def save_links(links: list[ItemLink]) -> None:
    """Write the sync fields of existing link rows back, in one statement.

    An upsert on the primary key (INSERT … ON CONFLICT (id) DO UPDATE, PostgreSQL and SQLite),
    not `bulk_update`: that builds a CASE expression per field over every row, which for a batch
    of 20 links cost twelve times the CPU in the worker and more again in the database
    (bench/scale.py), and a worker's throughput is bounded by its CPU.
    """
    if links:
        ItemLink.objects.bulk_create(links, update_conflicts=True, unique_fields=["id"], update_fields=LINK_FIELDS)


class ContactSyncDisabled(Exception):
    pass


# --- Selection (C2–C4, C9) --------------------------------------------------------------------


def qualifying_contacts(user: SyncUser, sync_settings: SyncSettings) -> QuerySet[Contact]:
    """Synchronized contacts this user gets: all, or the union of the enabled filters (C3)."""
    contacts = Contact.objects.filter(environment_id=user.environment_id, synchronize=True)
    filters = []
    if sync_settings.filter_by_rep:
        filters.append(Q(rep_id=user.employee_id))
    if sync_settings.filter_by_sales_group:
        filters.append(Q(sales_groups__members=user.employee_id))
    if sync_settings.filter_by_favorites:
        filters.append(Q(favorite_of=user.employee_id))
    if filters:
        selected = Contact.objects.filter(reduce(or_, filters)).values("pk")
        contacts = contacts.filter(pk__in=selected)
    return contacts


def qualifying_companies(user: SyncUser, sync_settings: SyncSettings) -> QuerySet[Company]:
    """With “synchronize companies” (C4): synchronized companies; with filters, those of the
    user's selected contacts."""
    if not sync_settings.synchronize_companies:
        return Company.objects.none()
    companies = Company.objects.filter(environment_id=user.environment_id, synchronize=True)
    if (
        sync_settings.filter_by_rep
        or sync_settings.filter_by_sales_group
        or sync_settings.filter_by_favorites
    ):
        companies = companies.filter(pk__in=qualifying_contacts(user, sync_settings).values("company_id"))
    return companies


# --- The plan ---------------------------------------------------------------------------------


@dataclass
class Desired:
    kind: str
    record_id: int
    card: ContactCard
    values: dict
    hash: str
    error: str = ""


@dataclass
class Plan:
    creates: list[tuple[ItemLink, Desired]] = field(default_factory=list)
    updates: list[tuple[ItemLink, Desired, list[str]]] = field(default_factory=list)
    moves: list[ItemLink] = field(default_factory=list)
    deletes: list[ItemLink] = field(default_factory=list)
    skips: list[tuple[ItemLink | None, Desired]] = field(default_factory=list)
    rehash: list[tuple[ItemLink, Desired]] = field(default_factory=list)

    def size(self) -> int:
        return len(self.creates) + len(self.updates) + len(self.moves) + len(self.deletes)

    def actions(self) -> list[Action]:
        """The plan in plain data (``sync/actions.py``), in the order the pass writes it."""
        out = [
            Action(actions.SKIP, _item_key(link, item), actions.EXCHANGE, reason=item.error)
            for link, item in self.skips
        ]
        out += [
            Action(
                actions.DELETE if link.remote_id else actions.DROP_LINK,
                _item_key(link, None),
                actions.EXCHANGE,
                reason="No longer qualifies for this mailbox, or deleted in the CRM.",
                rule="C7",
            )
            for link in self.deletes
        ]
        out += [
            Action(
                actions.MOVE,
                _item_key(link, None),
                actions.EXCHANGE,
                reason="Into the categorization folder.",
                rule="C5",
            )
            for link in self.moves
        ]
        out += [
            Action(
                actions.CREATE,
                _item_key(link, item),
                actions.EXCHANGE,
                actions.field_changes(set(item.values), {}, item.values),
                "Qualifies for this mailbox and is not in it.",
                "C2",
            )
            for link, item in self.creates
        ]
        out += [
            Action(
                actions.UPDATE,
                _item_key(link, item),
                actions.EXCHANGE,
                actions.field_changes(set(names), link.snapshot or {}, item.values),
                "Changed in the CRM, or edited in Outlook (overwritten).",
                "C6",
            )
            for link, item, names in self.updates
        ]
        return out


    def hold_back(self, keys: set[tuple[str, int | None]]) -> None:
        """Leave out the items held back (by CRM kind and record)."""
        if not keys:
            return
        self.creates = [(link, item) for link, item in self.creates if (item.kind, item.record_id) not in keys]
        self.updates = [entry for entry in self.updates if (entry[1].kind, entry[1].record_id) not in keys]
        self.moves = [link for link in self.moves if _record_key(link) not in keys]
        self.deletes = [link for link in self.deletes if _record_key(link) not in keys]


def _item_key(link: ItemLink | None, item: Desired | None) -> ItemKey:
    record_id = item.record_id if item is not None else None
    if record_id is None and link is not None:
        record_id = link.contact_id if link.kind == mapping.CONTACT else link.company_id
    if item is not None:
        name = item.card.display_name or item.card.file_as
    else:  # a removal or a move names the card as last written (no record read for it)
        snapshot = (link.snapshot or {}) if link is not None else {}
        name = snapshot.get("display_name") or snapshot.get("file_as") or ""
    entity = item.kind if item is not None else link.kind if link is not None else ""
    return ItemKey(record_id, link.remote_id if link is not None else "", name, entity)


def _record_key(link: ItemLink) -> tuple[str, int]:
    return (link.kind, link.contact_id if link.kind == mapping.CONTACT else link.company_id)


class ContactPass:
    def __init__(self, user: SyncUser, backend: MailboxBackend, ctx: PassContext, run: SyncRun) -> None:
        self.user = user
        self.settings = user.environment.settings
        self.backend = backend
        self.ctx = ctx
        self.run = run
        self.mailbox = user.mailbox_email
        self.now = timezone.now()
        self.property_names: list[str] = []

    # Folders -------------------------------------------------------------------------------

    def target_folder_name(self) -> str:
        return self.user.contact_folder_name.strip() if self.user.categorize_contacts else ""

    def folder_state(self, name: str) -> FolderState:
        state, _ = FolderState.objects.get_or_create(
            sync_user=self.user, kind=SyncKind.CONTACTS, folder_name=name
        )
        if not state.remote_folder_id:
            state.remote_folder_id = self.backend.ensure_contact_folder(self.mailbox, name)
            state.sync_token = ""
            state.save(update_fields=["remote_folder_id", "sync_token", "updated_at"])
        return state

    # Remote changes (C6) -----------------------------------------------------------------------

    def absorb_remote_changes(
        self, state: FolderState, links_by_remote: dict[str, ItemLink]
    ) -> tuple[set[int], set[int]]:
        """Read the folder's changes since its token. Returns (links edited in Outlook, links
        whose item was deleted in Outlook). Our own writes come back with the change key we
        recorded and are not changes."""
        edited: set[int] = set()
        gone: set[int] = set()
        try:
            page = self.backend.contact_changes(self.mailbox, state.remote_folder_id, state.sync_token)
        except InvalidSyncToken:
            log.warning("sync token of %s rejected; reconciling through the link rows", state)
            return self.reconcile(state, links_by_remote)
        for ref in page.changed:
            link = links_by_remote.get(ref.item_id)
            if link is not None and ref.change_key != link.remote_change_key:
                edited.add(link.pk)
        for item_id in page.deleted:
            link = links_by_remote.get(item_id)
            if link is not None:
                gone.add(link.pk)
        state.sync_token = page.token
        return edited, gone

    def reconcile(
        self, state: FolderState, links_by_remote: dict[str, ItemLink]
    ) -> tuple[set[int], set[int]]:
        """A lost or invalid token: compare the folder's items carrying our sync ids with the
        link rows, never re-create blindly (DESIGN §5)."""
        present = self.backend.list_synced_items(self.mailbox, state.remote_folder_id)
        edited: set[int] = set()
        gone: set[int] = set()
        for link in links_by_remote.values():
            if link.remote_folder_id != state.remote_folder_id:
                continue
            ref = present.get(str(link.sync_id))
            if ref is None:
                gone.add(link.pk)
            elif ref.item_id != link.remote_id or ref.change_key != link.remote_change_key:
                link.remote_id, link.remote_change_key = ref.item_id, ref.change_key
                edited.add(link.pk)
        state.sync_token = self.backend.contact_changes(self.mailbox, state.remote_folder_id, "").token
        return edited, gone

    # Plan ----------------------------------------------------------------------------------

    def desired(self) -> dict[tuple[str, int], Desired]:
        rows = cards.Mapping.load(self.user.environment)
        self.property_names = sorted(
            {mapping.property_name(e) for m in rows.values() for e, _ in m.rows if mapping.is_property(e)}
        )
        wanted: dict[tuple[str, int], Desired] = {}
        contacts = qualifying_contacts(self.user, self.settings).select_related("company", "country")
        for contact in contacts:
            wanted[(mapping.CONTACT, contact.pk)] = self._desired(
                mapping.CONTACT, contact.pk, cards.contact_card(contact, rows[mapping.CONTACT])
            )
        for company in qualifying_companies(self.user, self.settings).select_related("country"):
            wanted[(mapping.COMPANY, company.pk)] = self._desired(
                mapping.COMPANY, company.pk, cards.company_card(company, rows[mapping.COMPANY])
            )
        return wanted

    @staticmethod
    def _desired(kind: str, record_id: int, card: ContactCard) -> Desired:
        values = card.mapped_values()
        item = Desired(kind, record_id, card, values, cards.card_hash(values))
        try:
            cards.validate_card(card, is_company=kind == mapping.COMPANY)
        except cards.BadInput as exc:
            item.error = str(exc)
        return item

    def plan(
        self,
        wanted: dict[tuple[str, int], Desired],
        links: list[ItemLink],
        target_folder_id: str,
        edited: set[int],
        gone: set[int],
    ) -> Plan:
        plan = Plan()
        linked: set[tuple[str, int]] = set()
        for link in links:
            key = _record_key(link)
            linked.add(key)
            if link.state == LinkState.NOT_FOUND:
                continue  # lost in a change of backend (H2): left alone until an administrator retries
            item = wanted.get(key)
            if item is None:
                if link.pk in gone:
                    link.remote_id = ""  # already deleted in Outlook: only the link goes
                plan.deletes.append(link)  # C7: stopped qualifying, or deleted in the CRM
                continue
            if item.error:
                plan.skips.append((link, item))
                continue
            if not link.remote_id or link.pk in gone:
                plan.creates.append((link, item))  # pending (found by sync id first) or deleted in Outlook
                continue
            dropped = cards.dropped_fields(item.values, link.snapshot)
            if link.pk in edited or self.ctx.full or link.state == LinkState.FAILED or not link.crm_hash:
                # C6: overwrite everything mapped (and only that: an unmapped field is Outlook's)
                plan.updates.append((link, item, [*item.values, *dropped]))
            elif item.hash != link.crm_hash:
                names = [*cards.changed_fields(item.values, link.snapshot), *dropped]
                if names:
                    plan.updates.append((link, item, names))
                else:  # a row disabled whose field was empty: nothing to write, only to agree on
                    plan.rehash.append((link, item))
            if self.user.categorize_contacts and link.remote_folder_id != target_folder_id:
                plan.moves.append(link)  # C5: existing contacts move into the categorization folder
        for key, item in wanted.items():
            if key in linked:
                continue
            if item.error:
                plan.skips.append((None, item))
            else:
                link = ItemLink(
                    environment_id=self.user.environment_id,
                    sync_user=self.user,
                    kind=item.kind,
                    contact_id=item.record_id if item.kind == mapping.CONTACT else None,
                    company_id=item.record_id if item.kind == mapping.COMPANY else None,
                    state=LinkState.PENDING,
                )
                plan.creates.append((link, item))
        return plan

    # Safety (DESIGN §5) ----------------------------------------------------------------------

    def deletions_allowed(self, plan: Plan, synced_count: int) -> bool:
        remote_deletes = sum(1 for link in plan.deletes if link.remote_id)
        share = remote_deletes * 100 / max(synced_count, 1)
        over = (
            remote_deletes > self.settings.safety_limit_minimum and share > self.settings.safety_limit_percent
        )
        if not over:
            return True
        if self.user.limit_confirmed(SyncKind.CONTACTS):
            return True
        self.ctx.held_deletions.add(actions.EXCHANGE)
        self.run.error = (
            f"Held: this pass would delete {remote_deletes} of {synced_count} synchronized contacts "
            f"({share:.0f} %), more than the safety limit of {self.settings.safety_limit_percent} % and "
            f"{self.settings.safety_limit_minimum} items. An administrator must confirm the deletions."
        )
        return False

    # Writes --------------------------------------------------------------------------------

    def _progress(self, done: int) -> None:
        self.run.progress_done = done
        SyncRun.objects.filter(pk=self.run.pk).update(progress_done=done)
        if self.ctx.on_progress:
            self.ctx.on_progress(done, self.run.progress_total)

    def _batches(self, items: Sequence) -> Iterable[Sequence]:
        size = max(1, self.settings.batch_size)
        for start in range(0, len(items), size):
            self.ctx.checkpoint()
            yield items[start : start + size]

    def _agree(self, link: ItemLink, item: Desired, ref: RemoteRef) -> None:
        link.remote_id, link.remote_change_key, link.remote_folder_id = (
            ref.item_id,
            ref.change_key,
            ref.folder_id or link.remote_folder_id,
        )
        link.crm_hash, link.snapshot = item.hash, item.values
        link.state, link.last_error, link.last_error_at, link.synced_at = LinkState.SYNCED, "", None, self.now

    def _item_failed(self, link: ItemLink, error: MailboxError) -> None:
        link.state = LinkState.SKIPPED if isinstance(error, InvalidItem) else LinkState.FAILED
        link.last_error, link.last_error_at = str(error), self.now
        if isinstance(error, InvalidItem):
            self.run.skipped += 1
        else:
            self.run.failed += 1

    def write_deletes(self, deletes: list[ItemLink]) -> None:
        remote = [link for link in deletes if link.remote_id]
        for batch in self._batches(remote):
            results = self.backend.delete_items(
                self.mailbox, [RemoteRef(link.remote_id, link.remote_change_key) for link in batch]
            )
            done = [link.pk for link, result in zip(batch, results, strict=True) if result.ok]
            failed = [(link, result) for link, result in zip(batch, results, strict=True) if not result.ok]
            for link, result in failed:
                self._item_failed(link, result.error)
            with transaction.atomic():
                ItemLink.objects.filter(pk__in=done).delete()
                save_links([link for link, _ in failed])
            self._carried([link for link, result in zip(batch, results, strict=True) if result.ok])
            self.run.deleted += len(done)
            self._progress(self.run.progress_done + len(batch))
        ItemLink.objects.filter(pk__in=[link.pk for link in deletes if not link.remote_id]).delete()
        self._carried([link for link in deletes if not link.remote_id])

    def write_moves(self, moves: list[ItemLink], folder_id: str) -> None:
        for batch in self._batches(moves):
            results = self.backend.move_items(
                self.mailbox,
                [RemoteRef(link.remote_id, link.remote_change_key) for link in batch],
                folder_id,
                self.property_names,
            )
            for link, result in zip(batch, results, strict=True):
                if result.ok:
                    link.remote_id, link.remote_change_key, link.remote_folder_id = (
                        result.ref.item_id,
                        result.ref.change_key,
                        folder_id,
                    )
                    self.run.updated += 1
                else:
                    self._item_failed(link, result.error)
            save_links(batch)
            self._carried([link for link, result in zip(batch, results, strict=True) if result.ok])
            self._progress(self.run.progress_done + len(batch))

    def write_creates(
        self, creates: list[tuple[ItemLink, Desired]], folder_id: str, watched: list[str]
    ) -> None:
        if not creates:
            return
        # Commit fresh links (with their sync ids) before anything reaches Exchange.
        new_links = [link for link, _ in creates if link.pk is None]
        insert_keyed_rows(ItemLink, new_links, "sync_id")
        # A create of an earlier pass may have reached Exchange before a crash (or before a
        # transport error): find it by its sync id and adopt it instead of duplicating.
        fresh = {id(link) for link in new_links}
        pending = [
            link
            for link, _ in creates
            if id(link) not in fresh
            and not link.remote_id
            and link.state in (LinkState.PENDING, LinkState.FAILED)
        ]
        found = (
            self.backend.find_by_sync_ids(self.mailbox, watched, [str(link.sync_id) for link in pending])
            if pending
            else {}
        )
        to_create: list[tuple[ItemLink, Desired]] = []
        for link, item in creates:
            ref = found.get(str(link.sync_id))
            if ref is not None:
                link.remote_id, link.remote_change_key, link.remote_folder_id = (
                    ref.item_id,
                    ref.change_key,
                    ref.folder_id,
                )
                self._adopted.append((link, item, ref))
            else:
                to_create.append((link, item))
        for batch in self._batches(to_create):
            for link, item in batch:
                item.card.sync_id = str(link.sync_id)
            results = self.backend.create_contacts(self.mailbox, folder_id, [item.card for _, item in batch])
            self._apply(batch, results, counter="created")

    def write_updates(self, updates: list[tuple[ItemLink, Desired, list[str]]]) -> None:
        for batch in self._batches(updates):
            calls = []
            for link, item, names in batch:
                item.card.sync_id = str(link.sync_id)
                calls.append(
                    (
                        RemoteRef(link.remote_id, link.remote_change_key, link.remote_folder_id),
                        item.card,
                        names,
                    )
                )
            results = self.backend.update_contacts(self.mailbox, calls)
            recreate = []
            for (link, item, _), result in zip(batch, results, strict=True):
                if not result.ok and isinstance(result.error, ItemNotFound):
                    link.remote_id = ""  # deleted in Outlook meanwhile: create it again
                    recreate.append((link, item))
            self._apply(
                [(link, item) for link, item, _ in batch],
                results,
                counter="updated",
                skip={id(pair[0]) for pair in recreate},
            )
            if recreate:
                results = self.backend.create_contacts(
                    self.mailbox, self.target_folder_id, [item.card for _, item in recreate]
                )
                self._apply(recreate, results, counter="created")

    def _apply(self, batch, results: list[ItemResult], *, counter: str, skip: set[int] = frozenset()) -> None:
        changed = []
        for (link, item), result in zip(batch, results, strict=True):
            if id(link) in skip:
                continue
            if result.ok:
                self._agree(link, item, result.ref)
                setattr(self.run, counter, getattr(self.run, counter) + 1)
            else:
                self._item_failed(link, result.error)
            changed.append(link)
        save_links(changed)
        self._carried([link for (link, _), result in zip(batch, results, strict=True) if result.ok and id(link) not in skip])
        self._progress(self.run.progress_done + len(batch))

    def _carried(self, links: list[ItemLink]) -> None:
        """These links' decisions were written: done even if the pass fails later (P2)."""
        for link in links:
            kind, record_id = _record_key(link)
            self.ctx.carried_out(ItemKey(record_id, entity=kind))

    def record_skips(self, skips: list[tuple[ItemLink | None, Desired]]) -> None:
        links = []
        for link, item in skips:
            self.run.skipped += 1
            if link is None:
                link = ItemLink(
                    environment_id=self.user.environment_id,
                    sync_user=self.user,
                    kind=item.kind,
                    contact_id=item.record_id if item.kind == mapping.CONTACT else None,
                    company_id=item.record_id if item.kind == mapping.COMPANY else None,
                )
            link.state, link.last_error, link.last_error_at = LinkState.SKIPPED, item.error, self.now
            links.append(link)
        # A skipped item keeps a link row so the reason shows in the console; it has no remote item.
        ItemLink.objects.bulk_create([link for link in links if link.pk is None])
        save_links([link for link in links if link.pk is not None])
        self._carried(links)

    # The pass --------------------------------------------------------------------------------

    def execute(self) -> bool:
        """Run the pass; returns False when the safety limit held the deletions."""
        target = self.folder_state(self.target_folder_name())
        self.target_folder_id = target.remote_folder_id
        self._adopted: list[tuple[ItemLink, Desired, RemoteRef]] = []
        links = list(
            ItemLink.objects.filter(sync_user=self.user, kind__in=[mapping.CONTACT, mapping.COMPANY])
        )
        links_by_remote = {link.remote_id: link for link in links if link.remote_id}

        states = self.watched_states(target, links)
        edited: set[int] = set()
        gone: set[int] = set()
        for state in states:
            if not state.sync_token and not any(
                link.remote_folder_id == state.remote_folder_id for link in links
            ):
                continue  # nothing of ours there yet: the read after the writes sets the token
            state_edited, state_gone = self.absorb_remote_changes(state, links_by_remote)
            edited |= state_edited
            gone |= state_gone

        wanted = self.desired()
        plan = self.plan(wanted, links, target.remote_folder_id, edited, gone)
        synced_count = sum(1 for link in links if link.remote_id)
        allowed = self.deletions_allowed(plan, synced_count)
        self.run.progress_total = plan.size() if allowed else plan.size() - len(plan.deletes)
        SyncRun.objects.filter(pk=self.run.pk).update(progress_total=self.run.progress_total)

        held = {(a.item.entity, a.item.record_id) for a in plan.actions() if not self.ctx.decided(a)}
        plan.hold_back(held)  # the loop detector's items are not written (P3)
        self.record_skips(plan.skips)
        if allowed:
            self.write_deletes(plan.deletes)
        self.write_moves(plan.moves, target.remote_folder_id)
        self.write_creates(plan.creates, target.remote_folder_id, [s.remote_folder_id for s in states])
        self.write_adopted()
        self.write_updates(plan.updates)
        self.write_rehash(plan.rehash)

        wrote = plan.size() > 0 or bool(gone)
        for state in states:
            if wrote:
                # Swallow our own writes so the next idle pass costs one request; an Outlook edit
                # that slipped in meanwhile still shows as a change key we did not write.
                self.absorb_after_writes(state)
            state.save(update_fields=["sync_token", "updated_at"])
        if allowed:
            self.user.use_confirmation(SyncKind.CONTACTS)
        purge_unlinked_tombstones(self.user.environment_id)
        return allowed

    def watched_states(self, target: FolderState, links: list[ItemLink]) -> list[FolderState]:
        """The target folder and every folder that still holds linked items of this user."""
        folder_ids = {link.remote_folder_id for link in links if link.remote_folder_id} - {
            target.remote_folder_id
        }
        others = list(
            FolderState.objects.filter(
                sync_user=self.user, kind=SyncKind.CONTACTS, remote_folder_id__in=folder_ids
            )
        )
        return [target, *others]

    def write_rehash(self, rehash: list[tuple[ItemLink, Desired]]) -> None:
        """Links whose mapped values changed shape but not content: the new hash, no write."""
        for link, item in rehash:
            link.crm_hash, link.snapshot = item.hash, item.values
        save_links([link for link, _ in rehash])

    def write_adopted(self) -> None:
        """Items found by sync id after a crash: linked now, then brought up to date."""
        if not self._adopted:
            return
        for link, item, _ in self._adopted:
            item.card.sync_id = str(link.sync_id)
        calls = [(ref, item.card, list(item.values)) for _, item, ref in self._adopted]
        results = self.backend.update_contacts(self.mailbox, calls)
        # Counted as created: the create of a pass that crashed completes now.
        self._apply([(link, item) for link, item, _ in self._adopted], results, counter="created")

    def absorb_after_writes(self, state: FolderState) -> None:
        links = {
            link.remote_id: link
            for link in ItemLink.objects.filter(
                sync_user=self.user, remote_folder_id=state.remote_folder_id
            ).exclude(remote_id="")
        }
        try:
            page = self.backend.contact_changes(self.mailbox, state.remote_folder_id, state.sync_token)
        except InvalidSyncToken:
            state.sync_token = ""
            return
        outlook_edits = [
            links[ref.item_id].pk
            for ref in page.changed
            if ref.item_id in links and ref.change_key != links[ref.item_id].remote_change_key
        ]
        if outlook_edits:
            # Forget the agreed hash: the next pass overwrites these with CRM data (C6).
            ItemLink.objects.filter(pk__in=outlook_edits).update(crm_hash="")
        state.sync_token = page.token


def purge_unlinked_tombstones(environment_id: int) -> None:
    """CRM records deleted while linked: gone for good once no mailbox holds them."""
    for model in (Contact, Company):
        for record in model.all_objects.filter(
            environment_id=environment_id, deleted_at__isnull=False, links__isnull=True
        ):
            record.purge()


# --- Entry points -------------------------------------------------------------------------------


def run_contact_pass(
    user_id: int, ctx: PassContext | None = None, backend: MailboxBackend | None = None
) -> SyncRun:
    """One contact pass for one sync user. Never raises for mailbox trouble: the run says it."""
    ctx = ctx or PassContext()
    user = SyncUser.objects.select_related("environment__settings", "employee").get(pk=user_id)
    sync_settings = user.environment.settings
    if not sync_settings.synchronize_contacts:
        raise ContactSyncDisabled(f"Contact synchronization is off in {user.environment.name}.")
    if not (user.active and user.contacts_enabled):
        raise ContactSyncDisabled(
            f"{user.mailbox_email} does not synchronize contacts (inactive or turned off)."
        )
    return execute_pass(
        user, SyncKind.CONTACTS, ctx, backend, lambda run, b: ContactPass(user, b, ctx, run).execute()
    )


def allow_deletions_beyond_limit(user_id: int) -> None:
    """An administrator allows the next contact pass to delete beyond the safety limit."""
    SyncUser.objects.filter(pk=user_id).update(
        contacts_limit_confirmed=True, health=Health.HEALTHY, updated_at=timezone.now()
    )


def remove_synchronized_items(user_id: int, *, confirm: bool, backend: MailboxBackend | None = None) -> int:
    """Remove every contact this product wrote into the user's mailbox (explicit, confirmed)."""
    if not confirm:
        raise ValueError("Removing synchronized items must be confirmed.")
    user = SyncUser.objects.select_related("environment__settings").get(pk=user_id)
    own_backend = backend is None
    backend = backend or open_user_backend(user)
    removed = 0
    try:
        links = list(ItemLink.objects.filter(sync_user=user, kind__in=[mapping.CONTACT, mapping.COMPANY]))
        remote = [link for link in links if link.remote_id]
        size = max(1, user.environment.settings.batch_size)
        for start in range(0, len(remote), size):
            batch = remote[start : start + size]
            results = backend.delete_items(user.mailbox_email, [RemoteRef(link.remote_id) for link in batch])
            ok = [link.pk for link, result in zip(batch, results, strict=True) if result.ok]
            ItemLink.objects.filter(pk__in=ok).delete()
            removed += len(ok)
        ItemLink.objects.filter(pk__in=[link.pk for link in links if not link.remote_id]).delete()
        FolderState.objects.filter(sync_user=user, kind=SyncKind.CONTACTS).update(sync_token="")
    finally:
        if own_backend:
            backend.close()
    purge_unlinked_tombstones(user.environment_id)
    return removed
