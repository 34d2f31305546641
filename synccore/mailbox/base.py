"""The mailbox backend interface, in the sync engine's own terms.

The engine talks to a mailbox only through ``MailboxBackend``: plain dataclasses in, plain
dataclasses out, one error family (``MailboxError``) that says whether a failure is permanent
(bad credentials, no such mailbox, access denied) or transient (throttled, busy, down) with a
suggested wait. Implementations: ``ews/`` (exchangelib) and ``graph/`` (Microsoft Graph). Push
(K14) is part of the interface too: a backend says which style it offers (``push_style``) and
implements that style's operations; the others refuse with ``PushNotSupported``.
Nothing here knows the ORM or the sync rules.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime
from typing import Any, ClassVar, Literal
from zoneinfo import ZoneInfo

from dateutil.rrule import rrule, rrulestr

# The product's own property set: the sync id is written into every item as a named
# extended property of this set, so a lost link can be found again.
PROPERTY_SET_ID = "6a1f1f7e-3c52-4d43-9a55-8f3c5b0d2a11"
SYNC_ID_PROPERTY = "CrmSyncId"
# A contact card's named extended properties of that set (custom CRM fields) are written under
# this prefix in the field names a backend is asked to write: ``property:Region``.
PROPERTY_PREFIX = "property:"


# --- Errors -----------------------------------------------------------------------------------


class MailboxError(Exception):
    """A failure talking to a mailbox. ``permanent`` decides: retry later, or ask a person."""

    permanent: bool = False

    def __init__(self, message: str, *, retry_after: float | None = None, code: str = "") -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.code = code


class PermanentMailboxError(MailboxError):
    permanent = True


class TransientMailboxError(MailboxError):
    permanent = False


class AuthenticationFailed(PermanentMailboxError):
    pass


class MailboxNotFound(PermanentMailboxError):
    pass


class AccessDenied(PermanentMailboxError):
    pass


class Throttled(TransientMailboxError):
    pass


class InvalidSyncToken(MailboxError):
    """The folder sync token is corrupt or expired: reconcile through the link rows."""


class ItemError(MailboxError):
    """One item of a batch failed; the rest of the batch may have succeeded."""


class ItemNotFound(ItemError):
    permanent = True


class StaleChangeKey(ItemError):
    """The item changed since it was read (ErrorIrresolvableConflict / HTTP 412)."""


class InvalidItem(ItemError):
    """The server refused the item's data (too long, malformed): bad input, not a retry."""

    permanent = True


class PushNotSupported(PermanentMailboxError):
    """The backend offers no push of the style asked for (see ``MailboxBackend.push_style``)."""


# --- Values -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteRef:
    """Where an item is and which version of it we know."""

    item_id: str
    change_key: str = ""
    folder_id: str = ""


@dataclass
class ItemResult:
    """The outcome of one item of a batch write, in input order."""

    ref: RemoteRef | None = None
    error: MailboxError | None = None
    # The meeting UID the server gave a created event when it chooses it itself (Graph's
    # iCalUId is read-only); empty when the UID asked for was kept (EWS).
    uid: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class PostalAddress:
    street: str = ""
    city: str = ""
    state: str = ""
    postal_code: str = ""
    country: str = ""  # the ISO 3166 code, as the reference CRM writes it

    def is_empty(self) -> bool:
        return not any((self.street, self.city, self.state, self.postal_code, self.country))


@dataclass
class ContactCard:
    """A contact as the engine writes it. Field names are the field-mapping vocabulary."""

    MAPPED: ClassVar[tuple[str, ...]] = (
        "given_name",
        "middle_name",
        "surname",
        "company_name",
        "job_title",
        "department",
        "email_address_1",
        "email_address_2",
        "email_address_3",
        "business_phone",
        "business_phone_2",
        "mobile_phone",
        "home_phone",
        "business_fax",
        "business_address",
        "notes",
        "business_homepage",
        "office_location",
        "assistant_name",
    )

    given_name: str = ""
    middle_name: str = ""
    surname: str = ""
    company_name: str = ""
    job_title: str = ""
    department: str = ""
    email_address_1: str = ""
    email_address_2: str = ""
    email_address_3: str = ""
    business_phone: str = ""
    business_phone_2: str = ""
    mobile_phone: str = ""
    home_phone: str = ""
    business_fax: str = ""
    business_address: PostalAddress = field(default_factory=PostalAddress)
    notes: str = ""
    business_homepage: str = ""
    office_location: str = ""
    assistant_name: str = ""
    # Derived, always written: how Outlook shows and sorts the card.
    display_name: str = ""
    file_as: str = ""
    sync_id: str = ""
    ref: RemoteRef | None = None
    # Named extended properties of the product's property set (custom CRM fields): name → text.
    properties: dict[str, str] = field(default_factory=dict)
    # The mapped fields (enabled rows); None: every field of MAPPED. Only these are written and
    # compared: a field no row maps is left to Outlook.
    mapped_fields: tuple[str, ...] | None = None

    def mapped_values(self) -> dict[str, Any]:
        """The values the engine compares and hashes (JSON-friendly)."""
        names = self.MAPPED if self.mapped_fields is None else [n for n in self.MAPPED if n in self.mapped_fields]
        values = {}
        for name in (*names, "display_name", "file_as"):
            value = getattr(self, name)
            values[name] = _plain(value)
        for name in sorted(self.properties):
            values[PROPERTY_PREFIX + name] = self.properties[name]
        return values

    def property_value(self, field_name: str) -> str:
        """The value of ``property:<Name>`` ('' when the card has none: written as cleared)."""
        return self.properties.get(field_name[len(PROPERTY_PREFIX) :], "")


@dataclass(frozen=True)
class Attendee:
    email: str
    name: str = ""
    required: bool = True
    response: str = ""  # Unknown / Organizer / Tentative / Accept / Decline / NoResponseReceived


@dataclass
class Occurrence:
    """A modified occurrence of a series: its original start and what differs.

    ``subject`` / ``location`` None: as the series."""

    original_start: datetime
    start: datetime
    end: datetime
    subject: str | None = None
    location: str | None = None


# Fields of ``update_events`` that write single occurrences of a series rather than the series.
OCCURRENCE_FIELDS = ("deleted_occurrences", "modified_occurrences")
# Series fields whose writing makes Exchange drop every modified and deleted occurrence.
PATTERN_FIELDS = ("recurrence", "start", "end", "is_all_day", "time_zone")


@dataclass(frozen=True)
class Series:
    """A recurrence (RFC 5545 RRULE) anchored at its first start and expanded in the wall-clock
    time of its zone, as Exchange expands a series: a weekly 10:00 Berlin meeting stays at 10:00
    local across DST. ``UNTIL`` counts whole local days (Exchange's end date). Raises ValueError
    for a rule it cannot read and ``ZoneInfoNotFoundError`` for an unknown zone."""

    recurrence: str
    start: datetime
    time_zone: str = "UTC"

    def _rule(self) -> tuple[rrule, ZoneInfo]:
        zone = ZoneInfo(self.time_zone or "UTC")
        local = self.start.astimezone(zone).replace(tzinfo=None)
        parts = []
        for part in self.recurrence.upper().removeprefix("RRULE:").split(";"):
            if part.startswith("UNTIL="):
                part = "UNTIL=" + _local_until(part[6:], zone)
            if part:
                parts.append(part)
        return rrulestr(";".join(parts), dtstart=local), zone

    def starts(self, after: datetime | None = None) -> Iterator[datetime]:
        """Original starts (aware, UTC) in order, from ``after`` on (inclusive)."""
        rule, zone = self._rule()
        floor = after.astimezone(zone).replace(tzinfo=None) if after else None
        for local in rule.xafter(floor, inc=True) if floor else rule:
            yield local.replace(tzinfo=zone).astimezone(UTC)

    def index_of(self, original_start: datetime) -> int | None:
        """The 1-based position of an original start in the pattern (EWS InstanceIndex), or None."""
        rule, zone = self._rule()
        wanted = original_start.astimezone(zone).replace(tzinfo=None)
        for index, local in enumerate(rule, start=1):
            if local == wanted:
                return index
            if local > wanted:
                return None
        return None


def _local_until(value: str, zone: ZoneInfo) -> str:
    """An UNTIL value as a naive local time: a date means the whole of that day."""
    if len(value) == 8:
        return f"{value}T235959"
    if value.endswith("Z"):
        moment = datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).astimezone(zone)
        return moment.strftime("%Y%m%dT%H%M%S")
    return value


def until_date(value: str, time_zone: str) -> date:
    """The local day an UNTIL value ends on (how Exchange stores a series' end)."""
    if len(value) == 8:
        return date(int(value[:4]), int(value[4:6]), int(value[6:8]))
    moment = datetime.strptime(value.rstrip("Z"), "%Y%m%dT%H%M%S")
    if value.endswith("Z"):
        moment = moment.replace(tzinfo=UTC).astimezone(ZoneInfo(time_zone or "UTC"))
    return moment.date()


@dataclass
class CalendarEvent:
    """A calendar item as the engine sees it. Times are aware datetimes (UTC); all-day events
    carry dates in ``start_date`` / ``end_date`` (end exclusive) as well."""

    subject: str = ""
    body: str = ""
    location: str = ""
    start: datetime | None = None
    end: datetime | None = None
    is_all_day: bool = False
    start_date: date | None = None
    end_date: date | None = None
    time_zone: str = "UTC"  # IANA
    is_private: bool = False
    reminder_minutes: int | None = None
    organizer: str = ""
    attendees: list[Attendee] = field(default_factory=list)
    uid: str = ""
    is_meeting: bool = False
    is_cancelled: bool = False
    my_response: str = ""
    recurrence: str = ""  # RFC 5545 RRULE; empty for a single event
    deleted_occurrences: list[datetime] = field(default_factory=list)
    modified_occurrences: list[Occurrence] = field(default_factory=list)
    sync_id: str = ""
    ref: RemoteRef | None = None
    last_modified: datetime | None = None
    # Named extended properties of the product's property set (custom CRM fields): name → text.
    # Written as ``property:<Name>`` fields; read only when ``get_events`` is asked for them.
    properties: dict[str, str] = field(default_factory=dict)


EVENT_FIELDS = (
    "subject",
    "body",
    "location",
    "start",
    "end",
    "is_all_day",
    "time_zone",
    "is_private",
    "reminder_minutes",
    "attendees",
    "recurrence",
)


TaskStatus = Literal["open", "completed"]
TaskImportance = Literal["low", "normal", "high"]


@dataclass
class TaskItem:
    """A task (EWS: the Tasks folder; Graph: the default Microsoft To Do list) as the engine sees it.

    Exchange keeps a task's dates as whole days: ``due``, ``start`` and ``completed_at`` are dates,
    written as midnight UTC of that day and read back as that day, so the engine compares days,
    never instants. Completion is the server's: a task written ``completed`` gets 100 % and today's
    completion day from the server (EWS refuses a completion date from a client), and reopening
    drops it. ``reminder`` is an instant (None: no reminder)."""

    subject: str = ""
    body: str = ""
    status: TaskStatus = "open"
    due: date | None = None
    start: date | None = None
    completed_at: date | None = None
    importance: TaskImportance = "normal"
    reminder: datetime | None = None
    sync_id: str = ""
    ref: RemoteRef | None = None
    last_modified: datetime | None = None
    # As an event's: named extended properties (``property:<Name>``), where the backend has them.
    properties: dict[str, str] = field(default_factory=dict)


# The fields of ``update_tasks`` (``completed_at`` follows ``status``: the server sets it).
TASK_FIELDS = ("subject", "body", "status", "due", "start", "importance", "reminder")


MailFolder = Literal["inbox", "sentitems"]
# The folders e-mail filing reads (E1): received messages in the Inbox, sent ones in Sent Items.
MAIL_FOLDERS: tuple[MailFolder, ...] = ("inbox", "sentitems")


@dataclass
class MailAddress:
    address: str
    name: str = ""


@dataclass
class MailMessage:
    """A message of the Inbox or Sent Items as the engine sees it (e-mail filing, E1–E6).

    ``message_id`` is the Internet message id, the same in the sender's and every recipient's copy.
    ``message_changes`` gives the headers (no ``body``, no ``attachment_names``); ``get_messages``
    adds the body as text and the attachments' names (never their content)."""

    message_id: str = ""
    subject: str = ""
    folder: MailFolder = "inbox"
    sender: MailAddress | None = None
    to: list[MailAddress] = field(default_factory=list)
    cc: list[MailAddress] = field(default_factory=list)
    sent_at: datetime | None = None
    received_at: datetime | None = None
    categories: list[str] = field(default_factory=list)
    is_draft: bool = False
    has_attachments: bool = False
    body: str = ""
    attachment_names: list[str] = field(default_factory=list)
    ref: RemoteRef | None = None
    # The message in Outlook on the web, when the server tells it (Graph's ``webLink``), else "".
    web_link: str = ""


@dataclass
class MessagePage:
    """Messages of one folder created or changed since a token (headers), ids of removed ones, the
    token to pass next time."""

    messages: list[MailMessage] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    token: str = ""


def _plain(value: Any) -> Any:
    if isinstance(value, PostalAddress):
        return {f.name: getattr(value, f.name) for f in fields(value)}
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


@dataclass
class ChangePage:
    """What changed in a folder since a token. ``changed`` holds refs of created or updated items,
    ``deleted`` the ids of removed ones; ``token`` is the state to pass next time."""

    changed: list[RemoteRef] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    token: str = ""


@dataclass
class ConnectionConfig:
    """Everything a backend needs, taken from the environment's settings by the engine."""

    backend: str  # "ews" | "graph" | "domino"
    ews_url: str = ""
    autodiscover_email: str = ""
    auth_type: str = "basic"  # ntlm | basic | oauth2
    username: str = ""
    password: str = ""
    tenant_id: str = ""
    client_id: str = ""
    client_secret: str = ""
    graph_endpoint: str = ""
    authority_url: str = ""
    domino_url: str = ""  # the Domino REST API base (``/v1/auth`` and ``/pim-v1/…`` hang from it)
    ca_bundle: str = ""
    impersonation: bool = True
    batch_size: int = 100
    max_wait_s: float = 120.0  # longest retry wait; stays under the task timeout
    timeout_s: float = 60.0
    # HTTP connections to one EWS endpoint and account in this process (exchangelib's pool): a
    # worker running several passes at once needs one each, within EWS's 27 per service account.
    max_connections: int = 4
    calendar_horizon_days: int = 90  # the calendar window ahead (Graph's calendarView is bounded)


# How a backend tells of changes as they happen (K14): "stream", the caller holds a connection
# and reads it (``stream_changes``); "webhook", the server calls a URL of the product
# for each subscription (``create_subscription`` and its kin); "", no push: the caller polls.
PushStyle = Literal["stream", "webhook", ""]
# What a stream watches in a mailbox: the calendar, the task folder, the mail folders (e-mail filing).
StreamKind = Literal["calendar", "tasks", "email"]


@dataclass(frozen=True)
class Subscription:
    """A change-notification subscription as the server answered it (webhook push)."""

    id: str
    expires_at: datetime


# --- The interface ----------------------------------------------------------------------------


class MailboxBackend(abc.ABC):
    """One connection to an Exchange organisation, used for one or more mailboxes."""

    #: Requests sent so far by this backend (for run records and request-count tests).
    requests: int = 0
    #: The push this backend offers; the operations of the other style refuse.
    push_style: ClassVar[PushStyle] = ""
    #: The kinds whose items carry named extended properties of the product's set (custom CRM
    #: fields mapped to ``property:<Name>``): "contact", "activity", "task".
    PROPERTY_KINDS: ClassVar[frozenset[str]] = frozenset({"contact", "activity", "task"})

    @abc.abstractmethod
    def check(self, mailbox: str) -> list[str]:
        """Reach the mailbox; return what was tried. Raises MailboxError when it cannot."""

    @abc.abstractmethod
    def ensure_contact_folder(self, mailbox: str, name: str) -> str:
        """The id of the contact folder ``name`` (created if missing); '' names the default one."""

    @abc.abstractmethod
    def contact_changes(self, mailbox: str, folder_id: str, token: str) -> ChangePage:
        """Every change in the folder since ``token`` ('' = from the start), all pages.

        Raises InvalidSyncToken when the token is not accepted."""

    @abc.abstractmethod
    def list_synced_items(self, mailbox: str, folder_id: str) -> dict[str, RemoteRef]:
        """Every item in the folder that carries a sync id of ours: sync id → ref."""

    @abc.abstractmethod
    def find_by_sync_ids(
        self, mailbox: str, folder_ids: Sequence[str], sync_ids: Sequence[str]
    ) -> dict[str, RemoteRef]:
        """Items carrying these sync ids (a create whose link was lost): sync id → ref."""

    @abc.abstractmethod
    def create_contacts(self, mailbox: str, folder_id: str, cards: Sequence[ContactCard]) -> list[ItemResult]:
        """Create the cards (with their sync ids) in batches; one result per card, in order."""

    @abc.abstractmethod
    def update_contacts(
        self, mailbox: str, updates: Sequence[tuple[RemoteRef, ContactCard, Iterable[str]]]
    ) -> list[ItemResult]:
        """Write only the named fields of each card onto the referenced item."""

    @abc.abstractmethod
    def move_items(
        self, mailbox: str, refs: Sequence[RemoteRef], folder_id: str, properties: Sequence[str] = ()
    ) -> list[ItemResult]:
        """Move items to a folder; the results carry the new refs (a move changes the id).
        ``properties``: the named extended properties of the product's set the items may carry
        (custom CRM fields), which a backend that moves by copying must copy too."""

    @abc.abstractmethod
    def delete_items(self, mailbox: str, refs: Sequence[RemoteRef]) -> list[ItemResult]:
        """Delete items; an item that is already gone counts as deleted."""

    # Calendar ---------------------------------------------------------------------------------

    @abc.abstractmethod
    def ensure_calendar_folder(self, mailbox: str) -> str:
        """The id of the mailbox's default calendar."""

    @abc.abstractmethod
    def calendar_changes(
        self, mailbox: str, folder_id: str, token: str, known: Mapping[str, str] | None = None
    ) -> ChangePage:
        """Every calendar item (single or series master) changed since ``token``, all pages.
        ``known``: the items the engine has linked, with the change keys it recorded (its own
        writes among them); a backend may leave out, unread, what it finds still at that key."""

    @abc.abstractmethod
    def calendar_slice(self, mailbox: str, folder_id: str, start: datetime, end: datetime) -> list[RemoteRef]:
        """Items (singles and series masters) starting in [start, end): the slice of the horizon
        that came into the window since the last pass (K15)."""

    @abc.abstractmethod
    def calendar_present(self, mailbox: str, folder_id: str, item_ids: Sequence[str]) -> dict[str, str]:
        """Which of these items (singles or series masters) are in the folder, with their change
        keys; one deleted (gone, or in Deleted Items) or moved elsewhere is left out."""

    @abc.abstractmethod
    def get_events(
        self, mailbox: str, refs: Sequence[RemoteRef], properties: Sequence[str] = ()
    ) -> list[CalendarEvent | MailboxError]:
        """Read events whole, in input order; an item that is gone gives ItemNotFound.
        ``properties``: the named extended properties of the product's set to read with them
        (``CalendarEvent.properties``; a backend without them, ``PROPERTY_KINDS``, reads none)."""

    @abc.abstractmethod
    def create_events(
        self, mailbox: str, folder_id: str, events: Sequence[CalendarEvent], *, send_invitations: bool
    ) -> list[ItemResult]:
        """Create events (with their sync ids); invitations go out only when asked (K3)."""

    @abc.abstractmethod
    def update_events(
        self,
        mailbox: str,
        updates: Sequence[tuple[RemoteRef, CalendarEvent, Iterable[str]]],
        *,
        send_updates: bool,
    ) -> list[ItemResult]:
        """Write only the named fields; meeting updates go out only when asked.

        Two names write single occurrences of a series instead of the series (K10):
        ``deleted_occurrences`` deletes each occurrence listed in ``event.deleted_occurrences``
        (by original start; one already deleted counts as deleted), and ``modified_occurrences``
        gives each occurrence listed in ``event.modified_occurrences`` its start, end, subject
        and location (None: the series' own). Occurrences not listed are left as they are. The
        series' own fields are written first: writing ``recurrence`` (or the series' times) makes
        Exchange drop every exception, so an update that rewrites the pattern lists again the
        exceptions to keep — that is also the only way to bring a deleted occurrence back.
        ``event.recurrence``, ``start`` and ``time_zone`` must describe the series as it is
        written (they locate the occurrences). The result's change key is empty when the last
        write was to an occurrence (the series' key moved; the next read tells the new one)."""

    @abc.abstractmethod
    def delete_events(
        self, mailbox: str, refs: Sequence[RemoteRef], *, send_cancellations: bool
    ) -> list[ItemResult]:
        """Delete (the organizer's copy: cancel) events; already gone counts as deleted."""

    # Tasks (T1–T6) ----------------------------------------------------------------------------

    @abc.abstractmethod
    def ensure_task_folder(self, mailbox: str) -> str:
        """The id of the mailbox's default task folder (EWS: Tasks; Graph: the default To Do list)."""

    @abc.abstractmethod
    def task_changes(self, mailbox: str, folder_id: str, token: str) -> ChangePage:
        """Every task changed or removed since ``token`` ('' = from the start), all pages.

        Raises InvalidSyncToken when the token is not accepted."""

    @abc.abstractmethod
    def get_tasks(
        self, mailbox: str, refs: Sequence[RemoteRef], properties: Sequence[str] = ()
    ) -> list[TaskItem | MailboxError]:
        """Read tasks whole, in input order; a task that is gone gives ItemNotFound.
        ``properties``: as for ``get_events``."""

    @abc.abstractmethod
    def find_tasks_by_sync_ids(
        self, mailbox: str, folder_id: str, sync_ids: Sequence[str]
    ) -> dict[str, RemoteRef]:
        """Tasks carrying these sync ids (a create whose link was lost): sync id → ref."""

    @abc.abstractmethod
    def create_tasks(self, mailbox: str, folder_id: str, tasks: Sequence[TaskItem]) -> list[ItemResult]:
        """Create tasks (with their sync ids) in batches; one result per task, in order."""

    @abc.abstractmethod
    def update_tasks(
        self, mailbox: str, updates: Sequence[tuple[RemoteRef, TaskItem, Iterable[str]]]
    ) -> list[ItemResult]:
        """Write only the named fields (``TASK_FIELDS``) of each task onto the referenced item
        (the engine has merged both sides first, as for events: the write overwrites)."""

    def complete_tasks(self, mailbox: str, refs: Sequence[RemoteRef]) -> list[ItemResult]:
        """Complete tasks: the server sets 100 % and the completion day (T2)."""
        done = TaskItem(status="completed")
        return self.update_tasks(mailbox, [(ref, done, ("status",)) for ref in refs])

    @abc.abstractmethod
    def delete_tasks(self, mailbox: str, refs: Sequence[RemoteRef]) -> list[ItemResult]:
        """Delete tasks; one already gone counts as deleted."""

    # E-mail filing (E1–E6) ----------------------------------------------------------------------

    @abc.abstractmethod
    def message_changes(self, mailbox: str, folder: MailFolder, token: str, folder_id: str = "") -> MessagePage:
        """Messages of the Inbox or Sent Items (or, with ``folder_id``, of one of their sub-folders,
        its messages given as ``folder``'s) created or changed since ``token`` ("" for all), with
        their headers: one request per page (an idle folder: one request). Raises InvalidSyncToken
        when the server no longer knows the token, ItemNotFound when the sub-folder is gone."""

    @abc.abstractmethod
    def message_subfolders(self, mailbox: str, folder: MailFolder) -> list[tuple[str, str]]:
        """Every mail folder below the Inbox or Sent Items, at any depth: (id, display name)."""

    @abc.abstractmethod
    def get_messages(self, mailbox: str, refs: Sequence[RemoteRef]) -> list[MailMessage | MailboxError]:
        """Messages with their text body and attachment names, in batches; one result per ref."""

    def message_web_link(self, mailbox: str, message: MailMessage) -> str:
        """Where a person opens the message in Outlook on the web; "" when the backend cannot tell."""
        return message.web_link

    @abc.abstractmethod
    def set_message_categories(
        self, mailbox: str, changes: Sequence[tuple[RemoteRef, Sequence[str]]]
    ) -> list[ItemResult]:
        """Write each message's whole list of categories, in batches; one result per change."""

    # Push (K14) -------------------------------------------------------------------------------
    # A backend offers at most one style; the caller reads ``push_style`` and calls only that
    # style's operations. These defaults refuse, so a backend without push implements nothing.

    def stream_changes(
        self,
        watches: Mapping[str, Collection[StreamKind]],
        *,
        on_subscribed: Callable[[], None] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        connection_timeout_minutes: int = 1,
        on_unreachable: Callable[[str, MailboxError], None] | None = None,
    ) -> Iterator[tuple[str, StreamKind]]:
        """Stream push: yield (mailbox, kind) for each change of a kind the mailbox is watched
        for (``watches``: mailbox → its kinds), for as long as the stream lives. A burst of changes
        read at once yields each (mailbox, kind) once.

        The stream has connections of its own, never this backend's pool (it holds one for
        minutes), and releases them when it ends. ``on_subscribed`` is called once the server
        watches every mailbox it could: what happened before is not replayed, so the caller
        catches up then. A mailbox that cannot be watched for a reason of its own (no such
        mailbox, no rights on it) is told to ``on_unreachable`` and left out; the others stream on
        (O3). Raises MailboxError when the stream breaks, or when no mailbox could be watched; the
        caller backs off and calls again.
        """
        raise self._push_not_supported("stream")

    def stream_calendar_changes(
        self,
        mailboxes: Sequence[str],
        *,
        on_subscribed: Callable[[], None] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        connection_timeout_minutes: int = 1,
        on_unreachable: Callable[[str, MailboxError], None] | None = None,
    ) -> Iterator[str]:
        """``stream_changes`` of the calendars alone: yield the address of each mailbox whose
        calendar changed."""
        changes = self.stream_changes(
            dict.fromkeys(mailboxes, ("calendar",)),
            on_subscribed=on_subscribed,
            should_stop=should_stop,
            connection_timeout_minutes=connection_timeout_minutes,
            on_unreachable=on_unreachable,
        )
        return (mailbox for mailbox, _ in changes)

    @classmethod
    def events_resource(cls, mailbox: str) -> str:
        """Webhook push: what a subscription to the mailbox's calendar events watches (a pure
        function of the address: no request)."""
        raise cls._push_not_supported("webhook")

    @classmethod
    def messages_resource(cls, mailbox: str) -> str:
        """Webhook push: what a subscription to the mailbox's messages (every mail folder: e-mail
        filing, E1) watches (a pure function of the address: no request)."""
        raise cls._push_not_supported("webhook")

    @classmethod
    def tasks_resource(cls, mailbox: str, list_id: str) -> str:
        """Webhook push: what a subscription to the tasks of the mailbox's task list (the id
        ``ensure_task_folder`` gives) watches (a pure function: no request)."""
        raise cls._push_not_supported("webhook")

    def create_subscription(
        self,
        mailbox: str,
        resource: str,
        *,
        notification_url: str,
        lifecycle_url: str,
        client_state: str,
        expires_at: datetime,
    ) -> Subscription:
        """Webhook push: subscribe to created / updated / deleted items of ``resource``; the
        server calls ``notification_url`` (lifecycle events: ``lifecycle_url``) with
        ``client_state``. Raises MailboxError (an unreachable notification URL: InvalidItem)."""
        raise self._push_not_supported("webhook")

    def renew_subscription(self, mailbox: str, subscription_id: str, expires_at: datetime) -> Subscription:
        """Webhook push: move a subscription's expiry; ItemNotFound when the server no longer
        has it. The answer's expiry is the one that counts (the server may shorten it)."""
        raise self._push_not_supported("webhook")

    def reauthorize_subscription(self, mailbox: str, subscription_id: str) -> None:
        """Webhook push: answer the server's request to reauthorize a subscription."""
        raise self._push_not_supported("webhook")

    def delete_subscription(self, mailbox: str, subscription_id: str) -> None:
        """Webhook push: remove a subscription; one the server no longer has counts as removed."""
        raise self._push_not_supported("webhook")

    @classmethod
    def _push_not_supported(cls, style: str) -> PushNotSupported:
        offered = f"it offers {cls.push_style} push" if cls.push_style else "it offers no push"
        return PushNotSupported(f"{cls.__name__} has no {style} push ({offered}).", code="PushNotSupported")

    def find_events(
        self, mailbox: str, folder_id: str, sync_ids: Sequence[str], uids: Sequence[str]
    ) -> tuple[dict[str, RemoteRef], dict[str, RemoteRef]]:
        """Events (singles or series masters) of the calendar found again by the sync id written
        into them and by meeting UID: (sync id → ref, UID → ref). A mailbox moved to another
        backend finds its links so (H2); an invitee's copy carries the UID alone.

        This generic way reads the whole calendar once; a backend may ask the server instead."""
        by_sync = self.find_by_sync_ids(mailbox, [folder_id], sync_ids) if sync_ids else {}
        wanted_sync = set(sync_ids) - by_sync.keys()
        wanted_uids = set(uids)
        by_uid: dict[str, RemoteRef] = {}
        if not (wanted_sync or wanted_uids):
            return by_sync, by_uid
        refs = self.calendar_changes(mailbox, folder_id, "").changed
        for start in range(0, len(refs), 100):
            batch = refs[start : start + 100]
            for ref, event in zip(batch, self.get_events(mailbox, batch), strict=True):
                if isinstance(event, MailboxError):
                    continue
                if event.sync_id in wanted_sync:
                    by_sync.setdefault(event.sync_id, ref)
                if event.uid in wanted_uids:
                    by_uid.setdefault(event.uid, ref)
        return by_sync, by_uid

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
