"""The calendar decision table (DESIGN §4) as a plan: what a pass does with one item, decided
from what was read, before anything is written.

``CalendarScope`` is what a pass of one user knows before it decides: who carries an activity
(K3, K7), which moments count (K2, K15) and how each side looks in the normal form
(``events.py``). ``CalendarPlanner`` reads the table: one function per direction —
``foreign`` (Exchange → CRM for an item the CRM does not know), ``linked`` (both ways for a
linked item) and ``new`` (CRM → Exchange for an activity without a link) — returns ``Step``\\ s,
which ``calendar_write.CalendarWriter`` carries out. The planner never writes: no request to
Exchange, no row saved, no link changed in memory. Each ``Step`` gives its plain-data form
(``Step.action()``, ``sync/actions.py``) for a preview.

Where the table's next row depends on what a write answered, the step says so and the writer
asks the planner again for that one item (see ``Step``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any

from django.db.models import Q
from django.db.models.functions import Lower
from django.db.models.lookups import Exact
from django.utils import timezone

from synccore import mapping
from synccore.mailbox.base import Attendee as EventAttendee
from synccore.mailbox.base import CalendarEvent, InvalidItem, RemoteRef, Series
from synccore.models import (
    Activity,
    ActivityType,
    Attendee,
    ConflictChoice,
    ConflictPolicy,
    Employee,
    FieldMapping,
    ItemLink,
    LinkState,
    PersonalDeletionPolicy,
    SyncDirection,
    SyncUser,
)
from synccore.sync import actions, custom_rows
from synccore.sync import events as ev
from synccore.sync.actions import Action, ItemKey
from synccore.sync.custom_rows import CustomRow

CALENDAR_TYPES = (ActivityType.CALL, ActivityType.APPOINTMENT)
FOREVER = datetime.max.replace(tzinfo=UTC)
# Normal-form fields that give a series its shape (Exchange drops exceptions when they change).
SHAPE = {"start", "end", "all_day", "recurrence", "occurrences"}
_MISSING = object()


# The activity rows of the field mapping that may be switched off or turned one way, by CRM
# field, with the normal-form field each decides (subject, start and end are fixed rows).
OPTIONAL_ROWS = {"location": "location", "private": "private", "comment": "comment", "reminder_minutes": None}
NORMAL_FIELDS = ("subject", "location", "all_day", "private", "recurrence", "start", "end", "comment", "attendees", "occurrences")


@dataclass(frozen=True)
class Flow:
    """What the field mapping and the calendar's direction (T5) let a pass do with activities."""

    direction: str = SyncDirection.BOTH
    off: frozenset[str] = frozenset()  # CRM fields of disabled rows: neither written nor compared
    pushed_only: frozenset[str] = frozenset()  # normal-form fields never pulled (CRM → Exchange)
    pulled_only: frozenset[str] = frozenset()  # normal-form fields never pushed (Exchange → CRM)
    # Enabled custom rows (``custom_rows.py``): a record's custom field in the normal form under
    # the Exchange field's name (an extended property, or the location while its row is off).
    custom: tuple[CustomRow, ...] = ()

    @property
    def imports(self) -> bool:
        """Outlook's own events become activities (K6), and Outlook's deletions reach the CRM."""
        return self.direction != SyncDirection.CRM_TO_MAILBOX

    @property
    def exports(self) -> bool:
        """CRM activities are written into mailboxes, and CRM deletions reach them."""
        return self.direction != SyncDirection.MAILBOX_TO_CRM

    def normal_off(self) -> set[str]:
        return {OPTIONAL_ROWS[name] for name in self.off if OPTIONAL_ROWS.get(name)}

    def custom_fields(self) -> set[str]:
        """The normal-form fields custom rows fill."""
        return {row.field for row in self.custom}

    def properties(self) -> list[str]:
        """The extended properties a read of events asks for."""
        return custom_rows.property_names(self.custom)

    def without_properties(self) -> Flow:
        """For a backend whose events carry no extended properties (Domino): those rows left out."""
        return dataclasses.replace(self, custom=tuple(row for row in self.custom if not row.is_property))

    @classmethod
    def of(cls, env_id: int, direction: str) -> Flow:
        off: set[str] = set()
        pushed: set[str] = set()
        pulled: set[str] = set()
        rows = FieldMapping.objects.filter(environment_id=env_id, entity=mapping.ACTIVITY)
        for row in rows:
            if row.crm_field not in OPTIONAL_ROWS:
                continue  # fixed rows: the pass depends on them
            if not row.enabled:
                off.add(row.crm_field)
            elif OPTIONAL_ROWS[row.crm_field] and row.direction == mapping.CRM_TO_EXCHANGE:
                pushed.add(OPTIONAL_ROWS[row.crm_field])
            elif OPTIONAL_ROWS[row.crm_field] and row.direction == mapping.EXCHANGE_TO_CRM:
                pulled.add(OPTIONAL_ROWS[row.crm_field])
        custom = custom_rows.load(env_id, mapping.ACTIVITY)
        for row in custom:
            if row.direction == mapping.CRM_TO_EXCHANGE:
                pushed.add(row.field)
            elif row.direction == mapping.EXCHANGE_TO_CRM:
                pulled.add(row.field)
        every = {*NORMAL_FIELDS, *(row.field for row in custom)}
        if direction == SyncDirection.CRM_TO_MAILBOX:
            pushed, pulled = every, set()
        elif direction == SyncDirection.MAILBOX_TO_CRM:
            pushed, pulled = set(), every
        return cls(direction, frozenset(off), frozenset(pushed), frozenset(pulled), custom)


@dataclass
class Target:
    """How one activity is written into this user's mailbox (K3)."""

    invitations: bool  # the user organizes: attendees are written and Exchange sends invitations
    attendees: list[EventAttendee] = field(default_factory=list)
    with_comment: bool = True


def remote_text(event: CalendarEvent, row: CustomRow) -> str:
    """A custom row's field as the event holds it."""
    if row.is_property:
        return (event.properties.get(row.property_name) or "").strip()
    return str(getattr(event, row.field, "") or "").strip()


# Where a pass keeps the attendees it loaded with its activities: plain rows, read only (a model
# instance per attendee, and the related manager's cache, cost more than the pass's decisions).
LOADED_ATTENDEES = "loaded_attendees"
# Columns of filed e-mails and tasks, which no calendar pass reads, left unread: each JSON or
# moment column costs a conversion per activity and pass (read on access, should one be).
NOT_CALENDAR = (
    "direction",
    "message_id",
    "sender",
    "recipients",
    "sent_at",
    "body",
    "attachment_names",
    "filing_candidates",
    "status",
    "due",
    "completed_at",
    "priority",
    "responsible",
)


@dataclass(frozen=True, slots=True)
class AttendeeRow:
    """What the pass reads of an attendee (``Attendee``); writes go to the rows by key."""

    pk: int
    email: str
    name: str
    invite: bool
    meeting_organizer: bool

    @classmethod
    def load(cls, activity_ids: Collection[int]) -> dict[int, list[AttendeeRow]]:
        """The activities' attendees by activity, in the model's order."""
        out: dict[int, list[AttendeeRow]] = {}
        rows = Attendee.objects.filter(activity_id__in=activity_ids).values_list(
            "activity_id", "pk", "email", "name", "invite", "meeting_organizer"
        )
        for activity_id, *row in rows:
            out.setdefault(activity_id, []).append(cls(*row))
        return out


def attendees_of(activity: Activity) -> list[AttendeeRow]:
    """The activity's attendees, as the pass loaded them (read when it did not)."""
    loaded = activity.__dict__.get(LOADED_ATTENDEES)
    return loaded if loaded is not None else AttendeeRow.load([activity.pk]).get(activity.pk, [])


def forget_attendees(activity: Activity) -> None:
    """The activity's attendees changed: read again when next asked."""
    activity.__dict__.pop(LOADED_ATTENDEES, None)


def _attendee_emails(target: Target) -> list[str] | None:
    return sorted({a.email for a in target.attendees}) if target.invitations else None


# --- What a pass knows before it decides --------------------------------------------------------


class CalendarScope:
    """One user's calendar as a pass sees it: who, when, and both sides in the normal form."""

    def __init__(self, user: SyncUser) -> None:
        self.user = user
        self.env = user.environment
        self.settings = self.env.settings
        self.mailbox = user.mailbox_email
        self.me = user.mailbox_email.lower()
        self.now = timezone.now()
        horizon_day = self.now.astimezone(UTC).date() + timedelta(
            days=self.settings.calendar_horizon_days + 1
        )
        # The horizon moves once a day, so each day's new slice is read once (K15).
        self.horizon_end = datetime.combine(horizon_day, time.min, UTC)
        # Whose calendars are synchronized (K3, K7): addresses only, no row per user every pass.
        self.sync_users = {
            email.lower()
            for email in SyncUser.objects.filter(
                environment=self.env, active=True, calendar_enabled=True
            ).values_list("mailbox_email", flat=True)
        }
        self.domains = self.settings.organisation_domains()
        self.flow = Flow.of(self.env.pk, self.settings.calendar_direction)
        self.full = False  # a full pass (set by the pass): every linked item read and compared
        self._unplaced: set[tuple] | None = None

    # CRM side

    def organizer_of(self, activity: Activity) -> str:
        if activity.organizer_id and activity.organizer and activity.organizer.email:
            return activity.organizer.email.lower()
        if activity.organizer_email:
            return activity.organizer_email.lower()
        for attendee in attendees_of(activity):
            if attendee.meeting_organizer and attendee.email:
                return attendee.email.lower()
        return ""

    def target_for_me(self, activity: Activity) -> Target | None:
        """K3: the organizer's mailbox with invitations, or each invited sync user's own copy."""
        if activity.is_stub or not activity.synchronize or activity.type not in CALENDAR_TYPES:
            return None
        organizer = self.organizer_of(activity)
        invited = [
            a for a in attendees_of(activity) if a.invite and a.email and a.email.lower() != organizer
        ]
        if organizer in self.sync_users:
            if organizer != self.me:
                return None
            attendees = [EventAttendee(email=a.email.lower(), name=a.name) for a in invited]
            external = any(a.email.split("@")[-1] not in self.domains for a in attendees)
            with_comment = not external or self.settings.comment_to_external_attendees
            return Target(invitations=True, attendees=attendees, with_comment=with_comment)
        if any(a.email.lower() == self.me for a in invited):
            return Target(invitations=False)
        return None

    def my_activity_ids(self) -> set[int]:
        """The activities that may be this mailbox's: its address is their organizer's or one of
        their attendees' (``target_for_me`` decides). Matched on lowercased addresses, which
        indexes serve, rather than on every activity of the environment."""
        me = self.me
        addressed = (
            Q(organizer_id__in=Employee.all_objects.filter(Exact(Lower("email"), me)).values("pk"))
            | Q(Exact(Lower("organizer_email"), me))
            | Q(pk__in=Attendee.objects.filter(Exact(Lower("email"), me)).values("activity_id"))
        )
        return set(
            Activity.objects.filter(
                addressed, environment=self.env, type__in=CALENDAR_TYPES, synchronize=True, is_stub=False
            )
            .order_by()
            .values_list("pk", flat=True)
        )

    def my_activities(self, links: list[ItemLink] | None = None) -> dict[int, tuple[Activity, Target]]:
        """This mailbox's activities with how it carries each (K3). With ``links``, their
        activities (tombstones too) are loaded in the same queries and set on them: one instance
        per activity for the whole pass."""
        ids = self.my_activity_ids()
        wanted = ids | {link.activity_id for link in links or ()}
        # The organizer prefetched rather than joined: one instance per employee, not per activity.
        activities = Activity.all_objects.filter(pk__in=wanted).defer(*NOT_CALENDAR).prefetch_related("organizer")
        loaded = {activity.pk: activity for activity in activities}
        attendees = AttendeeRow.load(wanted)
        for pk, activity in loaded.items():
            activity.__dict__[LOADED_ATTENDEES] = attendees.get(pk, [])
        for link in links or ():
            if link.activity_id in loaded:
                link.activity = loaded[link.activity_id]
        out = {}
        for pk, activity in loaded.items():  # newest first, as new ones are created
            target = self.target_for_me(activity) if pk in ids else None
            if target is not None:
                out[pk] = (activity, target)
        return out

    def activity_in_window(self, activity: Activity) -> bool:
        return ev.in_window(
            activity.start, activity.end, activity.recurrence, self.now, self.horizon_end, activity.time_zone
        )

    def activity_over(self, activity: Activity) -> bool:
        """Over, whatever the horizon: a linked item is kept in step until then (K2); the horizon
        only limits which new items are created and imported (K15)."""
        return not ev.in_window(activity.start, activity.end, activity.recurrence, self.now, FOREVER, activity.time_zone)

    def crm_values(self, activity: Activity, target: Target, link: ItemLink | None = None) -> dict[str, Any]:
        series_from = link.series_from if link is not None else None
        values = ev.activity_values(activity, _attendee_emails(target), target.with_comment, series_from)
        return self.with_custom(self.mapped(values), {row.field: row.crm_text(activity) for row in self.flow.custom})

    def mapped(self, values: dict[str, Any]) -> dict[str, Any]:
        """The normal form without the fields of disabled mapping rows (neither written nor compared)."""
        for name in self.flow.normal_off():
            values.pop(name, None)
        return values

    def with_custom(self, values: dict[str, Any], texts: dict[str, str]) -> dict[str, Any]:
        """The normal form with the custom rows' fields (``texts``: normal-form field → text)."""
        values.update(texts)
        return values

    # Exchange side

    def event_in_window(self, event: CalendarEvent) -> bool:
        return ev.in_window(
            event.start, event.end, event.recurrence, self.now, self.horizon_end, event.time_zone
        )

    def event_over(self, event: CalendarEvent) -> bool:
        return not ev.in_window(event.start, event.end, event.recurrence, self.now, FOREVER, event.time_zone)

    def remote_values(self, event: CalendarEvent, target: Target) -> dict[str, Any]:
        values = self.mapped(ev.event_values(event, target.invitations, target.with_comment, self.me))
        return self.with_custom(values, {row.field: remote_text(event, row) for row in self.flow.custom})

    # Comparing with the snapshot

    def differs(self, name: str, old: Any, new: Any, values: dict[str, Any]) -> bool:
        """Whether a field moved from ``old`` (the snapshot) to ``new``; for a series' exceptions
        only the occurrences not yet over count (K2)."""
        if name != "occurrences":
            return old != new
        duration = ev.duration_of(values)
        old = {} if old is _MISSING else old
        return ev.future(old, self.now, duration) != ev.future(new, self.now, duration)

    def changed_fields(self, snapshot: dict[str, Any], values: dict[str, Any]) -> set[str]:
        # A custom field the snapshot does not hold yet (its row is new) was empty: a row added
        # re-writes the items that have a value for it, not every item (C8).
        empty = self.flow.custom_fields()
        return {
            k for k, v in values.items() if self.differs(k, snapshot.get(k, "" if k in empty else _MISSING), v, values)
        }

    def changed_remotely(self, link: ItemLink, event: CalendarEvent) -> bool:
        target = Target(invitations="attendees" in link.snapshot, with_comment="comment" in link.snapshot)
        values = self.remote_values(event, target)
        return any(self.differs(k, v, values.get(k), values) for k, v in link.snapshot.items())

    def lost_in_a_move(self, event: CalendarEvent) -> bool:
        """Whether this event looks like a personal appointment whose link a change of backend
        could not place (H2): never imported a second time while that link waits."""
        if self._unplaced is None:
            links = ItemLink.objects.filter(sync_user=self.user, kind=mapping.ACTIVITY, state=LinkState.NOT_FOUND)
            self._unplaced = {ev.content_key(link.snapshot) for link in links if link.snapshot}
        return bool(self._unplaced) and ev.content_key(ev.event_values(event, False, False, self.me)) in self._unplaced

    # A series that began in the past (K15)

    def began_in_past(self, values: dict[str, Any]) -> bool:
        """Whether the Exchange item these values describe has a first occurrence that is over."""
        try:
            return bool(values.get("end")) and ev.moment(values["end"]) <= self.now
        except (TypeError, ValueError):
            return False

    def first_present_occurrence(self, activity: Activity) -> datetime | None:
        duration = activity.end - activity.start
        if not activity.recurrence.strip():
            return activity.start if activity.end > self.now else None
        try:
            series = Series(activity.recurrence, activity.start, activity.time_zone)
            return next(series.starts(after=self.now - duration + timedelta(seconds=1)), None)
        except (ValueError, TypeError, KeyError):
            return None


# --- Steps ------------------------------------------------------------------------------------

_SIDES = {
    actions.CREATE: actions.EXCHANGE,
    actions.UPDATE: actions.EXCHANGE,
    actions.CANCEL: actions.EXCHANGE,
    actions.SPLIT: actions.EXCHANGE,
    actions.END_SERIES: actions.EXCHANGE,
}


@dataclass
class Step:
    """One row of the decision table for one item, with what the writer needs to carry it out.

    Where the next decision depends on what a write did, the writer asks the planner again for
    that one item: ``then`` is that question, asked once the step is written.
    - ``END_SERIES`` (a split's old series still to end): once it is ended, the item goes through
      the table again (``CalendarPlanner.linked``); when it cannot be ended yet, the item waits.
    - ``RESTORE`` (an edit in Exchange beats the CRM's deletion): once restored, the activity is
      compared as a linked one (``CalendarPlanner.compare``).
    - ``PULL`` with ``first``: attendees changed in Outlook only are taken before the rest is
      compared, since who is invited decides how the rest is written (K3, K12); once pulled,
      the rest is compared for whom the activity now invites (``CalendarPlanner.compare_fields``).
    - ``PULL`` with ``retarget``: attendees pulled with other fields; the writer asks who is
      invited again and writes the ``UPDATE`` that follows for them.
    - ``UPDATE`` carries its own follow-ups, as the write answers: an item gone meanwhile
      (ItemNotFound) is created again; a series-wide change to a series that began in the past
      becomes a split (K15), decided when the item's current state is in hand.
    """

    kind: str
    rule: str
    reason: str
    link: ItemLink | None = None
    activity: Activity | None = None
    event: CalendarEvent | None = None
    target: Target | None = None
    names: set[str] = field(default_factory=set)
    values: dict[str, Any] = field(default_factory=dict)  # the agreed normal form (AGREE)
    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # before → after
    side: str = ""  # "exchange" | "crm"; by kind when not given
    ref: RemoteRef | None = None
    occurrences: dict[str, Any] | None = None  # PULL: the exceptions to keep (merged, K10)
    choice: str = ""  # CONFLICT: the side the policy chose
    first: bool = False  # PULL: attendees before the rest (see above)
    retarget: bool = False  # PULL: who is invited changes with it (see above)
    whole_series: bool = False  # PULL: the CRM takes the Exchange series' shape whole (K15)
    recreate: bool = False  # CREATE: written again (an edit beat a delete, K9)
    change_key_only: bool = False  # AGREE: a change key moved without a real edit
    # What the planner decides next for this item once this step is written (see above).
    then: Callable[[], list[Step]] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.side:
            self.side = _SIDES.get(self.kind, actions.CRM)

    def action(self) -> Action:
        """The plain-data form (``sync/actions.py``)."""
        activity = self.activity or (self.link.activity if self.link is not None else None)
        remote_id = self.event.ref.item_id if self.event is not None else ""
        if not remote_id and self.link is not None:
            remote_id = self.link.remote_id
        subject = activity.subject if activity is not None else self.event.subject if self.event else ""
        item = ItemKey(activity.pk if activity is not None else None, remote_id, subject)
        return Action(self.kind, item, self.side, dict(self.fields), self.reason, self.rule)


# --- The decision table -----------------------------------------------------------------------


class CalendarPlanner:
    """DESIGN §4's table, one function per direction; reads only, returns ``Step``\\ s."""

    def __init__(self, scope: CalendarScope) -> None:
        self.scope = scope

    # Exchange → CRM: an item the CRM has no link for (K6, K7, K16) ---------------------------

    def foreign(self, event: CalendarEvent, pending_by_sync_id: dict[str, ItemLink]) -> Step | None:
        s = self.scope
        link = pending_by_sync_id.get(event.sync_id) if event.sync_id else None
        if link is not None:
            return Step(actions.ADOPT, "", "A create whose link was lost in a crash.", link=link, event=event)
        if not s.event_in_window(event):
            return None
        organizer = event.organizer.lower()
        if event.is_cancelled:
            if organizer and organizer not in s.sync_users:
                reason = "The outside organizer cancelled the meeting."
                return Step(actions.CANCEL, "K7", reason, event=event, side=actions.CRM)
            return None
        if not organizer or organizer == s.me or not event.is_meeting:
            if event.is_meeting and event.uid and Activity.objects.filter(environment=s.env, meeting_uid=event.uid).exists():
                # Not unknown after all (a copy of a meeting the CRM has): never a second activity.
                reason = f"“{event.subject}” is a copy of a meeting the CRM already has."
                return Step(actions.SKIP, "K6", reason, event=event)
            if not s.flow.imports:
                reason = "Made in Outlook; the calendar flows CRM → mailbox only (T5)."
                return Step(actions.SKIP, "T5", reason, event=event)
            if not event.is_meeting and s.lost_in_a_move(event):
                reason = f"“{event.subject}” may be an appointment a change of backend could not tell apart (H2)."
                return Step(actions.SKIP, "H2", reason, event=event)
            return Step(actions.IMPORT, "K6", "Made in Outlook, unknown to the CRM.", event=event)
        if organizer in s.sync_users:
            # K7: the organizer's copy is the one synced; K4: this attendee now has it.
            return Step(actions.IGNORE, "K7", "An invitee's copy of a sync user's meeting.", event=event)
        if not s.flow.imports:
            return None  # an outside organizer's meeting comes into the CRM only (T5)
        return Step(actions.STUB, "K7", "A meeting an outside organizer invited to.", event=event)

    # CRM → Exchange: an activity of mine without a link (K3) -------------------------------------

    def new(self, activity: Activity, target: Target) -> Step | None:
        if not self.scope.activity_in_window(activity) or not self.scope.flow.exports:
            return None
        return self.create("K3", "New in the CRM.", activity, target)

    def create(
        self,
        rule: str,
        reason: str,
        activity: Activity,
        target: Target,
        link: ItemLink | None = None,
        *,
        recreate: bool = False,
    ) -> Step:
        """A create in Exchange, with the fields it writes (nothing before → the CRM's values), as
        an update step carries its own: so a preview and Explain show what is created."""
        try:
            values = self.scope.crm_values(activity, target, link)
        except InvalidItem:
            values = {}  # the writer meets the same bad input and records it on the item (K10)
        return Step(
            actions.CREATE,
            rule,
            reason,
            link=link,
            activity=activity,
            target=target,
            fields=actions.field_changes(set(values), {}, values),
            recreate=recreate,
        )

    # Both ways: a linked item ------------------------------------------------------------------

    def linked(
        self, link: ItemLink, entry: tuple[Activity, Target] | None, event: CalendarEvent | None, gone: bool
    ) -> list[Step]:
        """One linked item: ``entry`` is the activity with how this mailbox carries it, or None
        when it no longer does; ``event`` the Exchange item when it changed, ``gone`` when it
        was deleted."""
        s = self.scope
        activity = link.activity
        if link.retired_remote_id:
            reason = "A split's old series still to end at its past."
            return [
                Step(
                    actions.END_SERIES,
                    "K15",
                    reason,
                    link=link,
                    then=lambda: self.linked(link, entry, event, gone),
                )
            ]
        if link.state == LinkState.NOT_FOUND:
            return []  # lost in a change of backend (H2): left alone until an administrator retries
        if activity.is_stub:
            return self.stub_copy(link, event, gone)
        if link.state == LinkState.DELETED_REMOTE:
            return []  # kept under the deletion policy; not re-created (K16)
        if not link.remote_id:
            if entry and s.activity_in_window(activity) and s.flow.exports:
                return [self.create("K3", "Not yet in Exchange.", activity, entry[1], link)]
            return []
        if entry is None or activity.is_tombstone:
            return self.gone_from_crm(link, activity, event, gone)
        target = entry[1]
        if s.activity_over(activity) and (event is None or s.event_over(event)):
            return []  # K2
        if gone:
            return self.deleted_in_exchange(link, activity, target)
        return self.compare(link, activity, target, event)

    def gone_from_crm(
        self, link: ItemLink, activity: Activity, event: CalendarEvent | None, gone: bool
    ) -> list[Step]:
        """Deleted in the CRM, un-synchronized, or no longer this mailbox's (K1, K3, K9)."""
        if not self.scope.flow.exports:
            return []  # the mailbox is the source (T5): a CRM deletion leaves its event alone
        if self.scope.activity_over(activity):
            if activity.is_tombstone:
                # K2: its event is over and stays; the tombstone may be purged
                return [Step(actions.DROP_LINK, "K2", "Over: the event stays as it was.", link=link)]
            return []  # K2: the past is never touched
        if (
            event is not None
            and activity.is_tombstone
            and self.scope.target_for_me(activity) is not None  # not also un-synchronized (K1)
            and self.scope.changed_remotely(link, event)
        ):
            reason = "Edited in Exchange after its deletion in the CRM: an edit beats a delete."

            def compare_restored() -> list[Step]:
                target = self.scope.target_for_me(activity)
                return self.compare(link, activity, target, event) if target is not None else []

            return [
                Step(
                    actions.RESTORE,
                    "K9",
                    reason,
                    link=link,
                    activity=activity,
                    event=event,
                    then=compare_restored,
                )
            ]
        if gone:
            return [Step(actions.DROP_LINK, "K9", "Deleted on both sides.", link=link)]
        if link.snapshot.get("attendees"):
            return [Step(actions.CANCEL, "K9", "The organizer's meeting is gone from the CRM.", link=link)]
        return [Step(actions.DELETE, "K9", "Gone from the CRM.", link=link, side=actions.EXCHANGE)]

    def deleted_in_exchange(self, link: ItemLink, activity: Activity, target: Target) -> list[Step]:
        """K9: a meeting deleted in Exchange deletes the activity; a personal one follows the policy.
        An edit beats a delete: a CRM change since the last agreement re-creates the event."""
        crm = self.scope.crm_values(activity, target, link)
        if not self.scope.flow.imports:
            reason = "Deleted in Exchange; the calendar flows CRM → mailbox only: written again (T5)."
            return [self.create("T5", reason, activity, target, link, recreate=True)]
        if self.scope.changed_fields(link.snapshot, crm):
            reason = "Deleted in Exchange, changed in the CRM: an edit beats a delete."
            return [self.create("K9", reason, activity, target, link, recreate=True)]
        if link.snapshot.get("attendees"):
            reason = "The meeting was deleted in Exchange."
            return [Step(actions.DELETE, "K9", reason, link=link, activity=activity)]
        if self.scope.settings.personal_deletion_policy == PersonalDeletionPolicy.DELETE:
            reason = "Deleted in Exchange; the policy deletes personal appointments."
            return [Step(actions.DELETE, "K9", reason, link=link, activity=activity)]
        reason = "Deleted in Exchange; the policy keeps personal appointments."
        return [Step(actions.KEEP, "K9", reason, link=link, activity=activity)]

    def stub_copy(self, link: ItemLink, event: CalendarEvent | None, gone: bool) -> list[Step]:
        """This invitee's copy of an outside organizer's meeting: Exchange is its only source."""
        if gone:
            # an invitee's deletion of its copy; the stub stays (K16)
            return [Step(actions.DROP_LINK, "K16", "The invitee deleted its copy.", link=link)]
        if event is None:
            return []
        if event.is_cancelled:
            reason = "The outside organizer cancelled the meeting."
            return [Step(actions.CANCEL, "K7", reason, event=event, side=actions.CRM)]
        target = Target(invitations=False)
        values = self.scope.remote_values(event, target)
        empty = self.scope.flow.custom_fields()  # a custom row added since: it was empty (C8)
        changed = {k for k, v in values.items() if link.snapshot.get(k, "" if k in empty else _MISSING) != v}
        agree = Step(actions.AGREE, "K8", "Agreed.", link=link, event=event, values=values, ref=event.ref)
        if not changed:
            return [agree]
        pull = Step(
            actions.PULL,
            "K7",
            "The organizer changed the meeting.",
            link=link,
            activity=link.activity,
            event=event,
            target=target,
            names=changed,
            fields=actions.field_changes(changed, link.snapshot, values),
        )
        return [pull, agree]

    # The three-way compare (K8, K10, K12, K15) --------------------------------------------------

    def compare(
        self, link: ItemLink, activity: Activity, target: Target, event: CalendarEvent | None
    ) -> list[Step]:
        if self.attendees_first(link, activity, target, event):
            assert event is not None
            ours = self.scope.crm_values(activity, target, link)
            theirs = self.scope.remote_values(event, target)
            step = Step(
                actions.PULL,
                "K3",
                "Attendees changed in Outlook only: taken before the rest is compared.",
                link=link,
                activity=activity,
                event=event,
                target=target,
                names={"attendees"},
                fields=actions.field_changes({"attendees"}, ours, theirs),
                first=True,
                then=lambda: self.compare_fields(
                    link, activity, self.scope.target_for_me(activity) or target, event
                ),
            )
            return [step]
        return self.compare_fields(link, activity, target, event)

    def attendees_first(
        self, link: ItemLink, activity: Activity, target: Target, event: CalendarEvent | None
    ) -> bool:
        """Who is invited decides how the rest is written (K3, K12: the comment stays out of the
        body while outside attendees are invited): attendees changed in Outlook only are taken
        first, and the rest is decided with the attendee list that results."""
        snapshot = link.snapshot or {}
        if event is None or not target.invitations or "attendees" not in snapshot:
            return False
        if "attendees" in self.scope.flow.pushed_only:
            return False
        theirs = self.scope.remote_values(event, target).get("attendees")
        ours = self.scope.crm_values(activity, target, link).get("attendees")
        return not (theirs == snapshot["attendees"] or ours != snapshot["attendees"])

    def compare_fields(
        self, link: ItemLink, activity: Activity, target: Target, event: CalendarEvent | None
    ) -> list[Step]:
        """Each side against the snapshot: push what changed in the CRM, pull what changed in
        Exchange, and let the policy choose where both changed (a conflict is recorded)."""
        s = self.scope
        flow = s.flow
        crm = s.crm_values(activity, target, link)
        snapshot = link.snapshot or {}
        for name in flow.pulled_only & crm.keys() & snapshot.keys():
            crm[name] = snapshot[name]  # Exchange → CRM: a CRM edit is not carried (T5)
        crm_changed = s.changed_fields(snapshot, crm)
        # K12: a comment written before outside attendees joined must leave the body now.
        withdraw = "comment" not in crm and "comment" in snapshot and "comment" not in flow.off
        full = s.full
        if event is None and not crm_changed and not withdraw:
            return []  # nothing moved on either side
        ex = s.remote_values(event, target) if event is not None else {}
        ex_changed = {k for k in s.changed_fields(snapshot, ex) if k in crm}
        if snapshot and "comment" not in snapshot:
            # The comment was kept out of Exchange (K12): its body is no source for it.
            ex_changed.discard("comment")
        # CRM → Exchange: an Outlook edit is written over with the CRM's value (as contacts, C6).
        overwrite = {k for k in ex_changed & flow.pushed_only if s.differs(k, ex[k], crm[k], crm)}
        ex_changed -= flow.pushed_only
        if full and event is not None:
            # A full pass repairs drift the tokens missed: what still differs is written again.
            overwrite |= {
                k
                for k in crm.keys() & ex.keys()
                if k not in crm_changed | ex_changed and k not in flow.pulled_only and s.differs(k, ex[k], crm[k], crm)
            }
        if event is not None and not ex_changed and not crm_changed and not withdraw and not overwrite:
            reason = "A change key moved without a real edit."
            return [
                Step(actions.AGREE, "K8", reason, link=link, values=crm, ref=event.ref, change_key_only=True)
            ]
        steps: list[Step] = []
        push = set(crm_changed - ex_changed) | overwrite | ({"comment"} if withdraw else set())
        pull = set(ex_changed - crm_changed)
        occurrences = ex.get("occurrences")
        for name in crm_changed & ex_changed:
            if name == "occurrences":
                assert event is not None
                occurrences, conflicts = self.merge_occurrences(link, activity, target, event, snapshot, crm, ex)
                steps += conflicts
                if s.differs(name, crm[name], occurrences, crm):
                    pull.add(name)
                if s.differs(name, ex[name], occurrences, ex):
                    push.add(name)
                continue
            if crm[name] == ex[name]:
                continue
            choice = self.resolve(activity, event)
            (push if choice == ConflictChoice.CRM else pull).add(name)
            steps.append(self.conflict(link, name, crm[name], ex[name], choice))
        whole_series = bool(link.series_from and pull & SHAPE)
        if whole_series:
            # The CRM takes the Exchange series' shape whole: it no longer holds only a part of it.
            pull |= SHAPE & set(ex)
            push -= pull
        if pull:
            assert event is not None
            wanted = {**ex, "occurrences": occurrences} if "occurrences" in ex else ex
            steps.append(
                Step(
                    actions.PULL,
                    "K8",
                    "Changed in Exchange.",
                    link=link,
                    activity=activity,
                    event=event,
                    target=target,
                    names=pull,
                    fields=actions.field_changes(pull, crm, wanted),
                    occurrences=occurrences,
                    retarget="attendees" in pull,
                    whole_series=whole_series,
                )
            )
        if push:
            held = ex if event is not None else snapshot
            steps.append(
                Step(
                    actions.UPDATE,
                    "K12" if push == {"comment"} and withdraw else "K8",
                    "Changed in the CRM.",
                    link=link,
                    activity=activity,
                    event=event,
                    target=target,
                    names=push,
                    fields=actions.field_changes(push, held, crm),
                )
            )
        else:
            merged = {k: ex[k] if k in pull else crm[k] for k in crm}
            ref = event.ref if event else RemoteRef(link.remote_id, link.remote_change_key, link.remote_folder_id)
            steps.append(Step(actions.AGREE, "K8", "Both sides agree.", link=link, values=merged, ref=ref))
        return steps

    def conflict(self, link: ItemLink, name: str, crm_value: Any, exchange_value: Any, choice: str) -> Step:
        side = "CRM" if choice == ConflictChoice.CRM else "Exchange"
        return Step(
            actions.CONFLICT,
            "K8",
            f"Changed on both sides; the conflict policy chose the {side}'s.",
            link=link,
            fields={name: (crm_value, exchange_value)},
            choice=choice,
        )

    def merge_occurrences(
        self,
        link: ItemLink,
        activity: Activity,
        target: Target,
        event: CalendarEvent,
        snapshot: dict[str, Any],
        crm: dict[str, Any],
        ex: dict[str, Any],
    ) -> tuple[dict[str, Any], list[Step]]:
        """Both sides changed a series' exceptions: merged occurrence by occurrence (K8, K10). An
        occurrence changed on both sides follows the conflict policy, except that an edit beats a
        delete — unless the delete is the organizer's cancellation of a meeting occurrence."""
        now = self.scope.now
        duration = ev.duration_of(crm)
        old = ev.future(snapshot.get("occurrences") or {}, now, duration)
        ours = ev.future(crm["occurrences"], now, duration)
        theirs = ev.future(ex["occurrences"], now, duration)
        organizer_meeting = target.invitations and bool(target.attendees)
        merged: dict[str, Any] = {}
        conflicts: list[Step] = []
        for key in sorted({*old, *ours, *theirs}):
            before, mine, other = old.get(key), ours.get(key), theirs.get(key)
            if mine in (before, other):
                value = other
            elif other == before:
                value = mine
            else:
                if ev.DELETED in (mine, other) and None not in (mine, other):
                    cancelled = other == ev.DELETED and organizer_meeting
                    value = ev.DELETED if cancelled else (mine if other == ev.DELETED else other)
                    choice = ConflictChoice.EXCHANGE if value == other else ConflictChoice.CRM
                else:
                    choice = self.resolve(activity, event)
                    value = mine if choice == ConflictChoice.CRM else other
                conflicts.append(self.conflict(link, f"occurrences {key}", mine, other, choice))
            if value is not None:
                merged[key] = value
        return merged, conflicts

    def resolve(self, activity: Activity, event: CalendarEvent | None) -> str:
        policy = self.scope.settings.conflict_policy
        if policy == ConflictPolicy.CRM_WINS:
            return ConflictChoice.CRM
        if policy == ConflictPolicy.EXCHANGE_WINS:
            return ConflictChoice.EXCHANGE
        remote_time = (event.last_modified if event is not None else None) or self.scope.now
        return ConflictChoice.CRM if activity.updated_at >= remote_time else ConflictChoice.EXCHANGE
