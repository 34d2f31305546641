"""One e-mail filing pass for one sync user: mailbox → CRM only (DESIGN §4 E1–E6, issue 19).

The pass reads what changed in the Inbox and Sent Items since its tokens (headers only), decides
which messages to file (`plan`), then carries the decisions out (`execute`): it reads the bodies of
the messages to file in batches, makes one CRM activity of type E-mail per Internet message id,
and adds the filed category to every filed message in one batch.

* E1: only while the environment files e-mails and the user's filing is on; messages sent or
  received before the environment's start day are left alone; drafts are never filed.
* E2: a message is filed when it carries the filing category, or (track all) when a CRM contact or
  company address is among its sender and recipients.
* E3: direction, subject, time, sender, recipients, body as text capped at the settings' limit,
  attachment names only.
* E4: outbound messages (sent from the organisation's domains) match by their first To recipient,
  inbound ones by their sender: a contact by address, else a company by address, else by domain;
  several candidates of the same rank file the message without a link, its candidates kept on the
  activity (``filing_candidates``) for "Needs attention".
* E5: the Internet message id is the key across every mailbox of the environment (a unique
  constraint, tombstones included): the sender's and each recipient's copies file one activity,
  and a message filed once is never filed again.
* E6: filed messages (and marked copies of messages filed from another mailbox) get the filed
  category; nothing else is ever written to the mailbox, and nothing is unfiled.

A message that cannot be filed (no Internet message id, an unreadable body) is an item error with
its reason, never a failed pass. Those a person can act on are listed one by one in "Needs
attention" (``UnfiledMessage``, see ``note_unfiled``): the message has no Internet message id, the
mailbox would not give it (too large, damaged: an item error), or the CRM refused its activity. A
message deleted between the two reads is not listed (nothing is left to file), nor is any message
the rules simply do not file (no category, a draft, before the start day, no CRM address under
track all): those are the normal case, not a problem.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.db.models.functions import Lower
from django.utils import timezone

from synccore.mailbox.base import (
    MAIL_FOLDERS,
    InvalidSyncToken,
    ItemNotFound,
    MailAddress,
    MailboxBackend,
    MailboxError,
    MailFolder,
    MailMessage,
    RemoteRef,
)
from synccore.models import (
    Activity,
    ActivityType,
    Company,
    Contact,
    FolderState,
    SyncKind,
    SyncRun,
    SyncSettings,
    SyncUser,
    UnfiledMessage,
)
from synccore.sync import actions, events
from synccore.sync.actions import Action, ItemKey
from synccore.sync.runs import PassContext, execute_pass

log = logging.getLogger(__name__)

SUBJECT_LIMIT = 255

NO_MESSAGE_ID = (
    "It has no Internet message id, so it cannot be filed once for every mailbox that holds it. "
    "Enter it in the CRM by hand, then dismiss it here."
)


def unreadable(error: MailboxError) -> str:
    return (
        f"Exchange would not give the message to the synchronizer ({error}). If it is very large or "
        "damaged, enter it in the CRM by hand and dismiss it here; to try again, take its category off "
        "and set it again in Outlook."
    )


def refused(error: Exception) -> str:
    return (
        f"The CRM refused the activity made of it ({error}). Fix what it names, then take the "
        "message's category off and set it again in Outlook; or enter it by hand and dismiss it here."
    )


class EmailFilingDisabled(Exception):
    """E-mail filing is off for this environment or user."""


def filing_enabled(sync_settings: SyncSettings, user: SyncUser) -> bool:
    return bool(sync_settings.file_emails and user.email_enabled)


# --- Matching (E4) -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    kind: str  # contact | company
    pk: int
    external_id: str
    name: str

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "external_id": self.external_id, "name": self.name}


@dataclass
class Match:
    contact: Candidate | None = None
    company: Candidate | None = None
    ambiguous: list[Candidate] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return bool(self.contact or self.company or self.ambiguous)


class Matcher:
    """CRM contacts and companies by address, then companies by domain; one query per address."""

    def __init__(self, environment_id: int, own_domains: set[str]) -> None:
        self.environment_id = environment_id
        self.own_domains = own_domains
        self._cache: dict[str, Match] = {}

    def match(self, address: str) -> Match:
        key = address.strip().lower()
        if key not in self._cache:
            self._cache[key] = self._lookup(key) if "@" in key else Match()
        return self._cache[key]

    def _lookup(self, address: str) -> Match:
        contacts = [
            Candidate("contact", c.pk, c.external_id, c.full_name or address)
            for c in Contact.objects.filter(environment_id=self.environment_id)
            .annotate(e1=Lower("email1"), e2=Lower("email2"), e3=Lower("email3"))
            .filter(Q(e1=address) | Q(e2=address) | Q(e3=address))
            .order_by("pk")
        ]
        if len(contacts) == 1:
            contact = Contact.objects.get(pk=contacts[0].pk)
            company = contact.company
            return Match(
                contact=contacts[0],
                company=Candidate("company", company.pk, company.external_id, company.name) if company else None,
            )
        if contacts:
            return Match(ambiguous=contacts)
        companies = Company.objects.filter(environment_id=self.environment_id).order_by("pk")
        by_address = [
            Candidate("company", c.pk, c.external_id, c.name)
            for c in companies.annotate(e=Lower("email")).filter(e=address)
        ]
        domain = address.rpartition("@")[2]
        by_domain: list[Candidate] = []
        if not by_address and domain not in self.own_domains:
            by_domain = [
                Candidate("company", c.pk, c.external_id, c.name)
                for c in companies.filter(Q(email__iendswith=f"@{domain}") | Q(website__icontains=domain))
                if _domain_of(c) == domain
            ]
        for rank in (by_address, by_domain):
            if len(rank) == 1:
                return Match(company=rank[0])
            if rank:
                return Match(ambiguous=rank)
        return Match()


def _domain_of(company: Company) -> str:
    if company.email and "@" in company.email:
        return company.email.rpartition("@")[2].lower()
    host = company.website.lower().split("://")[-1].split("/")[0]
    return host.removeprefix("www.")


# --- Deciding (plan) -----------------------------------------------------------------------------


@dataclass
class Filing:
    """A message to file: its headers now, its body once read."""

    header: MailMessage
    direction: str
    match: Match


@dataclass
class EmailPlan:
    to_file: list[Filing] = field(default_factory=list)
    # Copies of messages filed before (from this or another mailbox) that still lack the filed category.
    to_mark: list[MailMessage] = field(default_factory=list)
    errors: list[tuple[MailMessage, str]] = field(default_factory=list)
    ignored: int = 0


def has_category(message: MailMessage, name: str) -> bool:
    wanted = name.strip().lower()
    return any(c.strip().lower() == wanted for c in message.categories)


def when_of(message: MailMessage) -> datetime | None:
    return message.sent_at if message.folder == "sentitems" else (message.received_at or message.sent_at)


def plan(
    messages: Iterable[MailMessage], sync_settings: SyncSettings, matcher: Matcher, already_filed: set[str]
) -> EmailPlan:
    """The decisions of E1, E2, E4 and E5 for the messages read; nothing is written."""
    out = EmailPlan()
    seen: set[str] = set()
    start: date | None = sync_settings.file_emails_from
    for message in messages:
        marked = has_category(message, sync_settings.email_filing_category)
        if message.is_draft or has_category(message, sync_settings.email_filed_category):
            out.ignored += 1
            continue
        moment = when_of(message)
        if start and (moment is None or moment.date() < start):
            out.ignored += 1
            continue
        if not (marked or sync_settings.track_all_emails):
            out.ignored += 1
            continue
        if not message.message_id:
            if marked:
                out.errors.append((message, "The message has no Internet message id, so it cannot be filed once."))
            continue
        if message.message_id in already_filed or message.message_id in seen:
            if marked:
                out.to_mark.append(message)
            continue
        direction = "out" if _own(message.sender, matcher.own_domains) else "in"
        match = _match(message, direction, matcher)
        if not marked and not _tracked(message, matcher):
            out.ignored += 1
            continue
        seen.add(message.message_id)
        out.to_file.append(Filing(message, direction, match))
    return out


def _own(address: MailAddress | None, own_domains: set[str]) -> bool:
    return bool(address) and address.address.rpartition("@")[2].lower() in own_domains


def _match(message: MailMessage, direction: str, matcher: Matcher) -> Match:
    if direction == "out":
        first = message.to[0] if message.to else None
        return matcher.match(first.address) if first else Match()
    return matcher.match(message.sender.address) if message.sender else Match()


def _tracked(message: MailMessage, matcher: Matcher) -> bool:
    """Track all (E2): a CRM contact or company is among the sender and recipients."""
    people = [message.sender, *message.to, *message.cc]
    return any(p is not None and matcher.match(p.address).found for p in people)


# --- Carrying out (execute) ----------------------------------------------------------------------


def _address_json(address: MailAddress | None) -> dict[str, str]:
    return {"address": address.address, "name": address.name or address.address} if address else {}


def activity_for(
    filing: Filing, message: MailMessage, user: SyncUser, sync_settings: SyncSettings
) -> Activity:
    """The CRM activity of a message (E3), not saved."""
    moment = when_of(message) or when_of(filing.header) or timezone.now()
    body = events.body_text(message.body)[: sync_settings.email_body_limit]
    match = filing.match
    return Activity(
        environment_id=user.environment_id,
        type=ActivityType.EMAIL,
        synchronize=False,
        created_by_erp=False,
        subject=(message.subject or filing.header.subject or "(no subject)")[:SUBJECT_LIMIT],
        start=moment,
        end=moment,
        time_zone="UTC",
        organizer=user.employee if filing.direction == "out" else None,
        direction=filing.direction,
        message_id=filing.header.message_id,
        sender=_address_json(message.sender or filing.header.sender),
        recipients=[{**_address_json(a), "type": "to"} for a in message.to]
        + [{**_address_json(a), "type": "cc"} for a in message.cc],
        sent_at=message.sent_at or moment,
        body=body,
        attachment_names=[name for name in message.attachment_names if name],
        contact_id=match.contact.pk if match.contact else None,
        company_id=match.company.pk if match.company else None,
        filing_candidates=[c.as_dict() for c in match.ambiguous],
    )


class EmailPass:
    def __init__(self, user: SyncUser, backend: MailboxBackend, ctx: PassContext, run: SyncRun) -> None:
        self.user = user
        self.backend = backend
        self.ctx = ctx
        self.run = run
        self.settings = user.environment.settings
        self.mailbox = user.mailbox_email
        self.item_errors: list[str] = []
        # Messages a person can act on, for "Needs attention": (headers, why and what to do).
        self.unfiled: list[tuple[MailMessage, str]] = []
        self.gone: set[str] = set()  # item ids the mailbox reported deleted

    def execute(self) -> bool:
        states, messages = self.read_changes()
        matcher = Matcher(self.user.environment_id, self.settings.organisation_domains())
        ids = {m.message_id for m in messages if m.message_id}
        already = set(
            Activity.all_objects.filter(environment_id=self.user.environment_id, message_id__in=ids).values_list(
                "message_id", flat=True
            )
        ) if ids else set()  # fmt: skip
        decided = plan(messages, self.settings, matcher, already)
        self.tell(decided)
        self.run.skipped += len(decided.errors)
        self.item_errors += [f"{m.subject or m.message_id}: {reason}" for m, reason in decided.errors]
        self.unfiled += [(m, NO_MESSAGE_ID) for m, _ in decided.errors]
        self.run.progress_total = len(decided.to_file)
        filed = self.file(decided.to_file)
        note_unfiled(self.user, self.backend, self.unfiled, [*filed, *decided.to_mark], self.gone)
        written = self.mark([*filed, *decided.to_mark])
        for state in states:
            key = state.remote_folder_id or state.folder_name
            if key in written:
                self.absorb(state, written[key])
            state.save(update_fields=["sync_token", "updated_at"])
        if self.item_errors:
            self.run.error = "; ".join(self.item_errors)[:2000]
        return True

    def tell(self, decided: EmailPlan) -> None:
        """The decisions as actions, for a preview (P1)."""
        filed_category = self.settings.email_filed_category
        for filing in decided.to_file:
            key = ItemKey(remote_id=filing.header.ref.item_id if filing.header.ref else "", subject=filing.header.subject)
            reason = "marked" if has_category(filing.header, self.settings.email_filing_category) else "track all"
            self.ctx.decided(Action(actions.CREATE, key, actions.CRM, reason=reason, rule="E2"))
        for message in [*(f.header for f in decided.to_file), *decided.to_mark]:
            if not has_category(message, filed_category):
                key = ItemKey(remote_id=message.ref.item_id if message.ref else "", subject=message.subject)
                fields = {"categories": (message.categories, [*message.categories, filed_category])}
                self.ctx.decided(Action(actions.UPDATE, key, actions.EXCHANGE, fields, rule="E6"))
        for message, reason in decided.errors:
            self.ctx.decided(Action(actions.SKIP, ItemKey(subject=message.subject), actions.CRM, reason=reason, rule="E3"))
            self.ctx.carried_out(ItemKey(subject=message.subject), {actions.SKIP})  # nothing to write

    def read_changes(self) -> tuple[list[FolderState], list[MailMessage]]:
        """The changes of the Inbox, Sent Items and their sub-folders; sub-folders are listed again
        once a day (and on a full pass), so an idle pass costs one request per folder."""
        states: list[FolderState] = []
        messages: list[MailMessage] = []
        for root in MAIL_FOLDERS:
            state, _ = FolderState.objects.get_or_create(sync_user=self.user, kind=SyncKind.EMAIL, folder_name=root)
            for one in [state, *self.subfolder_states(state)]:
                token = "" if self.ctx.full else one.sync_token
                try:
                    try:
                        page = self.backend.message_changes(self.mailbox, root, token, one.remote_folder_id)
                    except InvalidSyncToken:
                        # The server forgot the token: read the folder again; E5 files nothing twice.
                        page = self.backend.message_changes(self.mailbox, root, "", one.remote_folder_id)
                except ItemNotFound:
                    if not one.remote_folder_id:
                        raise
                    one.delete()  # a sub-folder deleted since it was listed
                    continue
                one.sync_token = page.token
                self.gone.update(page.deleted)
                states.append(one)
                for message in page.messages:
                    message.folder = root
                messages += page.messages
        return states, messages

    def subfolder_states(self, root: FolderState) -> list[FolderState]:
        """The sub-folders' states below one of the two folders, listed again when due."""
        root_name: MailFolder = root.folder_name  # type: ignore[assignment]
        known = {
            s.remote_folder_id: s
            for s in FolderState.objects.filter(sync_user=self.user, kind=SyncKind.EMAIL, folder_name__startswith=f"{root_name}/")
        }  # fmt: skip
        today = timezone.now().date()
        if not (self.ctx.full or root.window_end is None or root.window_end.date() != today):
            return list(known.values())
        listed = dict(self.backend.message_subfolders(self.mailbox, root_name))
        for folder_id, state in list(known.items()):
            if folder_id not in listed:
                state.delete()
                del known[folder_id]
        for folder_id in listed.keys() - known.keys():
            digest = hashlib.sha256(folder_id.encode()).hexdigest()[:32]
            known[folder_id] = FolderState.objects.create(
                sync_user=self.user, kind=SyncKind.EMAIL, folder_name=f"{root_name}/{digest}", remote_folder_id=folder_id
            )
        root.window_end = timezone.now()
        root.save(update_fields=["window_end", "updated_at"])
        return list(known.values())

    def file(self, filings: Sequence[Filing]) -> list[MailMessage]:
        """Read the bodies and make the activities (E3, E5); the messages filed."""
        if not filings:
            return []
        self.ctx.checkpoint()
        read = self.backend.get_messages(self.mailbox, [f.header.ref for f in filings if f.header.ref])
        filed: list[MailMessage] = []
        for filing, message in zip(filings, read, strict=True):
            if isinstance(message, MailboxError):
                self.run.skipped += 1
                self.item_errors.append(f"{filing.header.subject}: {message}")
                if not isinstance(message, ItemNotFound):  # deleted meanwhile: nothing left to file
                    self.unfiled.append((filing.header, unreadable(message)))
                continue
            message.folder = filing.header.folder  # a sub-folder's message is read as the Inbox's
            try:
                activity = activity_for(filing, message, self.user, self.settings)
                with transaction.atomic():
                    activity.save()
            except IntegrityError:
                # Filed meanwhile from another mailbox (E5): this copy only gets the category.
                filed.append(filing.header)
                self._carried(filing.header, actions.CREATE)
                continue
            except (ValueError, TypeError) as exc:
                self.run.skipped += 1
                self.item_errors.append(f"{filing.header.subject}: the message could not be filed ({exc}).")
                self.unfiled.append((filing.header, refused(exc)))
                continue
            self.run.created += 1
            self.run.progress_done += 1
            filed.append(filing.header)
            self._carried(filing.header, actions.CREATE)
        return filed

    def _carried(self, message: MailMessage, kind: str) -> None:
        """This message's decision of ``kind`` was written: done even if the pass fails later (P2)."""
        self.ctx.carried_out(ItemKey(remote_id=message.ref.item_id if message.ref else ""), {kind})

    def mark(self, messages: Sequence[MailMessage]) -> dict[str, set[str]]:
        """The filed category on each filed message, in one batch (E6); the change keys written,
        by folder."""
        category = self.settings.email_filed_category
        changes: list[tuple[RemoteRef, list[str]]] = [
            (m.ref, [*m.categories, category]) for m in messages if m.ref and not has_category(m, category)
        ]
        written: dict[str, set[str]] = {}
        if not changes:
            return written
        self.ctx.checkpoint()
        for (ref, _), result in zip(changes, self.backend.set_message_categories(self.mailbox, changes), strict=True):
            if result.ok and result.ref is not None:
                written.setdefault(ref.folder_id, set()).add(result.ref.change_key)
                self.ctx.carried_out(ItemKey(remote_id=ref.item_id), {actions.UPDATE})
            else:
                log.info("could not mark %s as filed in %s: %s", ref.item_id, self.mailbox, result.error)
        return written

    def absorb(self, state: FolderState, change_keys: set[str]) -> None:
        """Our own category writes are no changes: read the folder once more and keep the newer
        token only if nothing but our writes moved, so the next idle pass costs one request."""
        root: MailFolder = "sentitems" if state.folder_name.startswith("sentitems") else "inbox"
        try:
            page = self.backend.message_changes(self.mailbox, root, state.sync_token, state.remote_folder_id)
        except (InvalidSyncToken, ItemNotFound):
            return
        if all(m.ref is not None and m.ref.change_key in change_keys for m in page.messages):
            state.sync_token = page.token


def note_unfiled(
    user: SyncUser,
    backend: MailboxBackend,
    problems: Sequence[tuple[MailMessage, str]],
    filed: Sequence[MailMessage],
    gone: set[str],
) -> None:
    """Keep "Needs attention"'s list of messages that could not be filed true: this pass's problems
    listed (again, if dismissed before: the message changed and failed anew), and those filed now —
    from any mailbox of the environment (E5) — or deleted from the mailbox taken off."""
    now = timezone.now()
    for message, reason in problems:
        if message.ref is None:
            continue
        sender = message.sender.address if message.sender else ""
        UnfiledMessage.objects.update_or_create(
            sync_user=user,
            remote_id=message.ref.item_id,
            defaults={
                "environment_id": user.environment_id,
                "message_id": message.message_id,
                "folder": message.folder,
                "subject": (message.subject or "")[:SUBJECT_LIMIT],
                "sender": sender[:320],
                "sent_at": when_of(message),
                "reason": reason,
                "web_link": backend.message_web_link(user.mailbox_email, message),
                "last_seen_at": now,
                "dismissed_at": None,
                "dismissed_by": "",
            },
        )
    message_ids = {m.message_id for m in filed if m.message_id}
    remote_ids = {m.ref.item_id for m in filed if m.ref} | gone
    if message_ids:
        UnfiledMessage.objects.filter(environment_id=user.environment_id, message_id__in=message_ids).delete()
    if remote_ids:
        UnfiledMessage.objects.filter(sync_user=user, remote_id__in=remote_ids).delete()


def unfiled_messages(environment_id: int) -> QuerySet[UnfiledMessage]:
    """Messages that could not be filed and were not dismissed ("Needs attention"), newest first."""
    return UnfiledMessage.objects.filter(environment_id=environment_id, dismissed_at=None).select_related("sync_user")


def dismiss_unfiled(unfiled_id: int, dismissed_by: str) -> UnfiledMessage:
    """An administrator dealt with it (filed by hand, or it does not matter): no longer listed."""
    unfiled = UnfiledMessage.objects.get(pk=unfiled_id)
    unfiled.dismissed_at, unfiled.dismissed_by = timezone.now(), dismissed_by
    unfiled.save(update_fields=["dismissed_at", "dismissed_by"])
    return unfiled


def ambiguous_filings(environment_id: int) -> QuerySet[Activity]:
    """Filed e-mails that matched several CRM records and are still without a link (E4, O2)."""
    return (
        Activity.objects.filter(environment_id=environment_id, type=ActivityType.EMAIL, contact=None, company=None)
        .exclude(filing_candidates=[])
        .order_by("-start")
    )


def run_email_pass(user_id: int, ctx: PassContext | None = None, backend: MailboxBackend | None = None) -> SyncRun:
    """One e-mail filing pass for one sync user. Never raises for mailbox trouble: the run says it."""
    ctx = ctx or PassContext()
    user = SyncUser.objects.select_related("environment__settings", "employee").get(pk=user_id)
    if not filing_enabled(user.environment.settings, user) or not user.active:
        raise EmailFilingDisabled(f"{user.mailbox_email} does not file e-mails (inactive or turned off).")
    return execute_pass(user, SyncKind.EMAIL, ctx, backend, lambda run, b: EmailPass(user, b, ctx, run).execute())
