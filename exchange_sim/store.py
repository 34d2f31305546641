"""The mailbox store: one organisation of mailboxes with Exchange semantics.

Everything a client can observe about Exchange lives here, independent of any wire protocol:
ids and change keys (a new change key per write, a new id on a move), distinguished folders,
bodies kept in the format they were written in, a change journal from which sync states and notifications are cut,
and (see `calendar.py` / `meetings.py`) recurrence and meeting delivery. The EWS front end
(`exchange_sim.ews`) is a thin translation of XML to calls on this class, and a Graph front end
can be put over the same store later.

Property names are the EWS element names (``GivenName``, ``EmailAddresses``, ``Start``...),
because those are Exchange's own names for the MAPI properties. Values are plain Python:
str, bool, int, aware UTC datetimes, lists, and dicts for the indexed fields::

    EmailAddresses   {"EmailAddress1": "ann@example.com"}
    PhoneNumbers     {"BusinessPhone": "+49 30 1234"}
    PhysicalAddresses {"Business": {"Street": "...", "City": "...", "PostalCode": "..."}}
    Body             {"type": "HTML", "content": "<html>..."}
    Organizer        {"Name": "Ann", "EmailAddress": "ann@contoso.example"}
    RequiredAttendees [{"Mailbox": {...}, "ResponseType": "Accept"}]
"""

from __future__ import annotations

import base64
import bisect
import copy
import functools
import hashlib
import html
import itertools
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from exchange_sim.clock import Clock

# The folder tree a new Exchange Online mailbox has (what Get-MailboxFolderStatistics lists):
# (distinguished id or None, parent's distinguished id, display name, folder class). The root's
# display name is "root" and the top of the message tree is "Top of Information Store", as there.
MAILBOX_FOLDERS: tuple[tuple[str | None, str | None, str, str | None], ...] = (
    ("root", None, "root", None),
    ("msgfolderroot", "root", "Top of Information Store", None),
    ("inbox", "msgfolderroot", "Inbox", "IPF.Note"),
    ("calendar", "msgfolderroot", "Calendar", "IPF.Appointment"),
    ("contacts", "msgfolderroot", "Contacts", "IPF.Contact"),
    ("tasks", "msgfolderroot", "Tasks", "IPF.Task"),
    ("deleteditems", "msgfolderroot", "Deleted Items", "IPF.Note"),
    ("drafts", "msgfolderroot", "Drafts", "IPF.Note"),
    ("sentitems", "msgfolderroot", "Sent Items", "IPF.Note"),
    ("outbox", "msgfolderroot", "Outbox", "IPF.Note"),
    ("junkemail", "msgfolderroot", "Junk Email", "IPF.Note"),
    ("notes", "msgfolderroot", "Notes", "IPF.StickyNote"),
    ("journal", "msgfolderroot", "Journal", "IPF.Journal"),
    ("archive", "msgfolderroot", "Archive", "IPF.Note"),
    ("conversationhistory", "msgfolderroot", "Conversation History", None),
    (None, "msgfolderroot", "Conversation Action Settings", "IPF.Configuration"),
    (None, "msgfolderroot", "Quick Step Settings", "IPF.Configuration"),
    (None, "msgfolderroot", "RSS Feeds", "IPF.Note.OutlookHomepage"),
    ("syncissues", "msgfolderroot", "Sync Issues", "IPF.Note"),
    ("conflicts", "syncissues", "Conflicts", None),
    ("localfailures", "syncissues", "Local Failures", None),
    ("serverfailures", "syncissues", "Server Failures", None),
    ("yammerroot", "msgfolderroot", "Yammer Root", "IPF.Note"),
    ("yammerfeeds", "yammerroot", "Feeds", "IPF.Note"),
    ("yammerinbound", "yammerroot", "Inbound", "IPF.Note"),
    ("yammeroutbound", "yammerroot", "Outbound", "IPF.Note"),
    (None, "contacts", "GAL Contacts", "IPF.Contact.GalContacts"),
    (None, "contacts", "Organizational Contacts", "IPF.Contact.OrganizationalContacts"),
    ("recipientcache", "contacts", "Recipient Cache", "IPF.Contact.RecipientCache"),
    ("recoverableitemsroot", "root", "Recoverable Items", None),
    ("recoverableitemsdeletions", "recoverableitemsroot", "Deletions", None),
    ("recoverableitemspurges", "recoverableitemsroot", "Purges", None),
    ("recoverableitemsversions", "recoverableitemsroot", "Versions", None),
    (None, "recoverableitemsroot", "Audits", None),
    (None, "recoverableitemsroot", "Calendar Logging", None),
    ("searchfolders", "root", "Finder", None),
    (None, "root", "Common Views", None),
    (None, "root", "Deferred Action", None),
    (None, "root", "ExchangeSyncData", None),
    (None, "root", "Freebusy Data", None),
    (None, "root", "Location", None),
    (None, "root", "MailboxAssociations", None),
    (None, "root", "Reminders", "Outlook.Reminder"),
    (None, "root", "Schedule", None),
    (None, "root", "Sharing", None),
    (None, "root", "Shortcuts", None),
    (None, "root", "Spooler Queue", None),
    (None, "root", "System", None),
    (None, "root", "Views", None),
)
# The distinguished ones, as (distinguished id, parent's, display name, folder class).
DISTINGUISHED_FOLDERS: tuple[tuple[str, str | None, str, str | None], ...] = tuple(
    (dist, parent, name, folder_class) for dist, parent, name, folder_class in MAILBOX_FOLDERS if dist
)

# MAPI property tags that name an item field: kind, field, entry ([MS-OXPROPS] PidTagBusinessFaxNumber)
TAGGED_FIELDS: dict[int, tuple[str, str, str]] = {0x3A24: ("Contact", "PhoneNumbers", "BusinessFax")}

# Properties Store.find_item_with finds items by without reading a whole mailbox.
INDEXED_PROPS = ("UID", "_TransactionId")

# Length limits of string properties: a longer subject is cut, a longer name part refused on update.
SUBJECT_LIMIT = 255
NAME_LIMIT = 255
NAME_PARTS = ("GivenName", "MiddleName", "Surname")

# The item kinds the store knows, keyed by the EWS element name, with their default item class.
ITEM_CLASSES = {
    "Contact": "IPM.Contact",
    "CalendarItem": "IPM.Appointment",
    "Message": "IPM.Note",
    "Task": "IPM.Task",
    "Item": "IPM",
}


class StoreError(Exception):
    """A failure with an Exchange ResponseCode; front ends translate the code to their protocol."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message or code


@dataclass(frozen=True)
class ExtendedKey:
    """Identifies an extended (MAPI) property the way EWS's ExtendedFieldURI does."""

    prop_type: str
    property_set_id: str | None = None  # GUID, lower case
    distinguished_set: str | None = None  # e.g. "PublicStrings"
    name: str | None = None
    prop_id: int | None = None
    tag: int | None = None

    @classmethod
    def create(
        cls,
        prop_type: str,
        *,
        property_set_id: str | None = None,
        distinguished_set: str | None = None,
        name: str | None = None,
        prop_id: int | str | None = None,
        tag: int | str | None = None,
    ) -> ExtendedKey:
        return cls(
            prop_type=prop_type,
            property_set_id=property_set_id.lower() if property_set_id else None,
            distinguished_set=distinguished_set,
            name=name,
            prop_id=_as_int(prop_id),
            tag=_as_int(tag),
        )

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def _as_int(value: int | str | None) -> int | None:
    if value is None or isinstance(value, int):
        return value
    return int(value, 16) if value.lower().startswith("0x") else int(value)


# Values copied as they are: immutable, so a copy is the same value.
_ATOMS = frozenset({str, int, float, bool, type(None), bytes, datetime, date, timedelta})


def plain_copy(value: Any) -> Any:
    """``copy.deepcopy`` for the plain data items hold (dicts, lists, tuples, scalars), several
    times faster (a copy per item read is most of the simulator's CPU); anything else goes
    through ``copy.deepcopy``."""
    kind = type(value)
    if kind in _ATOMS:
        return value
    # the atoms among a container's values (most of them) are taken without a call for each
    if kind is dict:
        return {k: v if type(v) in _ATOMS else plain_copy(v) for k, v in value.items()}
    if kind is list:
        return [v if type(v) in _ATOMS else plain_copy(v) for v in value]
    if kind is tuple:
        return tuple(plain_copy(v) for v in value)
    return copy.deepcopy(value)


class PlainCopy:
    """A store record whose deep copy (every read of the store makes one) copies its attributes
    with ``plain_copy``."""

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        # What copy.copy and setattr would do, without their cost (__reduce_ex__): the records are
        # plain dataclasses whose state is their __dict__.
        new = object.__new__(type(self))
        new.__dict__.update({name: plain_copy(value) for name, value in self.__dict__.items()})
        return new


@dataclass
class Folder(PlainCopy):
    id: str
    changekey: str
    mailbox: str
    parent_id: str | None
    display_name: str
    folder_class: str | None
    distinguished: str | None = None
    system: bool = False  # one of the folders every mailbox has: it cannot be deleted or moved


@dataclass
class Item(PlainCopy):
    id: str
    changekey: str
    mailbox: str
    folder_id: str
    kind: str  # EWS element name: Contact, CalendarItem, Message, Task, Item
    props: dict[str, Any]
    extended: dict[ExtendedKey, Any] = field(default_factory=dict)
    created: datetime | None = None
    modified: datetime | None = None
    created_seq: int = 0

    def get(self, name: str, default: Any = None) -> Any:
        return self.props.get(name, default)

    def extended_value(self, name: str | None = None, *, property_set_id: str | None = None, **kw: Any) -> Any:
        """The value of the extended property matching the given key parts (type not needed)."""
        for key, value in self.extended.items():
            if name is not None and key.name != name:
                continue
            if property_set_id and key.property_set_id != property_set_id.lower():
                continue
            if all(getattr(key, k) == v for k, v in kw.items()):
                return value
        return None

    @property
    def subject(self) -> str | None:
        return self.props.get("Subject")

    @property
    def has_attachments(self) -> bool:
        return bool(self.props.get("Attachments"))

    @property
    def body_html(self) -> str:
        """The body as HTML (a text body is converted, as Exchange does for BodyType HTML)."""
        body = self.props.get("Body") or {}
        if body.get("type") == "Text":
            return text_to_html(body.get("content") or "")
        return body.get("content", "")

    @property
    def body_text(self) -> str:
        """The body as plain text (an HTML body is converted, as for BodyType Text)."""
        body = self.props.get("Body") or {}
        if body.get("type") == "Text":
            return body.get("content") or ""
        return html_to_text(body.get("content") or "")


@dataclass(frozen=True)
class Change:
    """One journal entry. A move is a delete of the old id plus a create of the new one."""

    seq: int
    mailbox: str
    op: str  # created | modified | deleted
    is_folder: bool
    id: str
    folder_id: str | None  # the (parent) folder the change happened in
    moved_from: str | None = None  # for a create caused by a move: the old id
    moved_to: str | None = None  # for the delete half of a move: the new id
    old_folder_id: str | None = None
    when: datetime | None = None
    read_flag: bool = False  # a modification of the read flag alone (SyncFolderItems' ReadFlagChange)


@dataclass
class Mailbox(PlainCopy):
    address: str
    display_name: str
    time_zone: str = "UTC"  # IANA id
    distinguished: dict[str, str] = field(default_factory=dict)


@functools.lru_cache(maxsize=1024)
def text_to_html(text: str) -> str:
    """A plain-text body as Exchange converts it for BodyType HTML. Cached: every Graph answer of an
    event or contact with a text body converts it (a str keeps its hash, so a hit costs no reading of it)."""
    lines = html.escape(text).split("\n")
    inner = "<br>\r\n".join(lines)
    return (
        '<html>\r\n<head>\r\n<meta http-equiv="Content-Type" content="text/html; charset=utf-8">\r\n'
        f'</head>\r\n<body>\r\n<div style="font-family: Calibri, sans-serif">{inner}</div>\r\n</body>\r\n</html>\r\n'
    )


def normalize_html(markup: str) -> str:
    """Exchange rewrites HTML bodies too: a full document with a charset meta element."""
    meta = '<meta http-equiv="Content-Type" content="text/html; charset=utf-8">'
    if "<html" not in markup.lower():
        return f"<html>\r\n<head>\r\n{meta}\r\n</head>\r\n<body>\r\n{markup}\r\n</body>\r\n</html>\r\n"
    if "http-equiv" not in markup.lower():
        if re.search(r"(?i)<head[^>]*>", markup):
            return re.sub(r"(?i)(<head[^>]*>)", lambda mt: f"{mt.group(1)}\r\n{meta}", markup, count=1)
        return re.sub(r"(?i)(<html[^>]*>)", lambda mt: f"{mt.group(1)}\r\n<head>\r\n{meta}\r\n</head>", markup, count=1)
    return markup


@functools.lru_cache(maxsize=1024)
def html_to_text(markup: str) -> str:
    # Cached: EWS answers an item's TextBody, and BodyType Text its body, with every read of it.
    text = re.sub(r"(?is)<(head|style|script)\b.*?</\1>", "", markup)
    text = re.sub(r"(?i)<br\s*/?>", "\n", text)
    text = re.sub(r"(?i)</(p|div)>", "\n", text)
    text = re.sub(r"<[^>]+>", "", text)
    return html.unescape(text).replace("\r", "").strip("\n")


class Store:
    """Thread-safe in-memory mailbox store. All public methods return copies, never live objects."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or Clock()
        self._lock = threading.RLock()
        self._mailboxes: dict[str, Mailbox] = {}
        self._folders: dict[str, Folder] = {}
        self._children_of: dict[str, dict[str, Folder]] = {}  # parent id -> its child folders
        self._items: dict[str, Item] = {}
        # The same items by folder and by mailbox, in the order of _items: a folder's or a
        # mailbox's items without a scan of the whole store (the benches hold tens of thousands).
        self._by_folder: dict[str, dict[str, Item]] = {}
        self._by_mailbox: dict[str, dict[str, Item]] = {}
        self._journal: list[Change] = []
        self._seq = 0
        self._ck = itertools.count(1)
        self._listeners: list[Callable[[Change], None]] = []
        self._hooks: dict[str, list[Callable[..., None]]] = {}
        self.extensions: dict[str, Any] = {}  # behaviour layered on the store (meetings, subscriptions)
        self.secret = uuid.uuid4().hex  # signs sync states, so a corrupt one is detected
        self.loads = 0  # state files loaded: indexes kept beside the store rebuild after one
        # Items by (mailbox, property, value) for the INDEXED_PROPS (live items, by object id), for
        # find_item_with; built on first use, kept by _record (every write is journalled), checked
        # against the item at each lookup.
        self._by_prop: dict[tuple[str, str, str], dict[int, Item]] | None = None
        self._by_prop_loads = -1

    # ---- ids -----------------------------------------------------------------------------------
    def _new_id(self, prefix: bytes) -> str:
        return base64.b64encode(prefix + uuid.uuid4().bytes).decode()

    def _new_changekey(self) -> str:
        return base64.b64encode(b"CK\x00\x00" + next(self._ck).to_bytes(8, "big")).decode()

    def new_changekey(self) -> str:
        return self._new_changekey()

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _add_item(self, item: Item) -> None:
        self._items[item.id] = item
        self._by_folder.setdefault(item.folder_id, {})[item.id] = item
        self._by_mailbox.setdefault(item.mailbox.lower(), {})[item.id] = item

    def _drop_item(self, item: Item) -> None:
        del self._items[item.id]
        self._by_folder.get(item.folder_id, {}).pop(item.id, None)
        self._by_mailbox.get(item.mailbox.lower(), {}).pop(item.id, None)

    def _reindex(self) -> None:
        self._by_folder, self._by_mailbox = {}, {}
        for item in list(self._items.values()):
            self._add_item(item)

    def _record(self, **kw: Any) -> Change:
        change = Change(seq=self._next_seq(), when=self.clock.now(), **kw)
        self._journal.append(change)
        if self._by_prop is not None and not change.is_folder and change.op != "deleted":
            written = self._items.get(change.id)
            if written is not None:
                self._index_props(written)
        for listener in list(self._listeners):
            listener(change)
        return change

    def add_listener(self, listener: Callable[[Change], None]) -> None:
        """Called (under the store lock) for every journal entry; notifications use it."""
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[Change], None]) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def add_hook(self, name: str, hook: Callable[..., None]) -> None:
        """Extension points for calendar/meeting behaviour: after_create, after_update, before_delete."""
        self._hooks.setdefault(name, []).append(hook)

    def _run_hooks(self, name: str, *args: Any) -> None:
        for hook in self._hooks.get(name, []):
            hook(*args)

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    @property
    def seq(self) -> int:
        return self._seq

    # ---- mailboxes -------------------------------------------------------------------------------
    def add_mailbox(self, address: str, display_name: str | None = None, time_zone: str = "UTC") -> Mailbox:
        with self._lock:
            key = address.lower()
            if key in self._mailboxes:
                return copy.deepcopy(self._mailboxes[key])
            name = display_name or address.split("@")[0].replace(".", " ").title()
            mailbox = Mailbox(address=address, display_name=name, time_zone=time_zone)
            self._mailboxes[key] = mailbox
            for dist, parent, folder_name, folder_class in MAILBOX_FOLDERS:
                parent_id = mailbox.distinguished[parent] if parent else None
                folder = Folder(
                    id=self._new_id(b"FL"),
                    changekey=self._new_changekey(),
                    mailbox=mailbox.address,
                    parent_id=parent_id,
                    display_name=folder_name,
                    folder_class=folder_class,
                    distinguished=dist,
                    system=True,
                )
                self._put_folder(folder)
                if dist:
                    mailbox.distinguished[dist] = folder.id
            return copy.deepcopy(mailbox)

    def has_mailbox(self, address: str) -> bool:
        return address.lower() in self._mailboxes

    def mailbox(self, address: str) -> Mailbox:
        with self._lock:
            return copy.deepcopy(self._mailbox(address))

    def live_mailbox(self, address: str) -> Mailbox:
        """The mailbox without a copy (its folder map makes one costly), for readers that do not change it."""
        with self._lock:
            return self._mailbox(address)

    def mailboxes(self) -> list[Mailbox]:
        with self._lock:
            return [copy.deepcopy(m) for m in self._mailboxes.values()]

    def _mailbox(self, address: str) -> Mailbox:
        try:
            return self._mailboxes[address.lower()]
        except KeyError:
            raise StoreError("ErrorNonExistentMailbox", f"No mailbox with address {address}") from None

    # ---- folders ---------------------------------------------------------------------------------
    def distinguished_folder(self, address: str, name: str) -> Folder:
        with self._lock:
            mailbox = self._mailbox(address)
            try:
                return copy.deepcopy(self._folders[mailbox.distinguished[name]])
            except KeyError:
                raise StoreError("ErrorFolderNotFound", f"No distinguished folder {name}") from None

    def distinguished_folder_id(self, address: str, name: str) -> str:
        """``distinguished_folder(...).id`` without the copy of the folder."""
        with self._lock:
            mailbox = self._mailbox(address)
            try:
                return self._folders[mailbox.distinguished[name]].id
            except KeyError:
                raise StoreError("ErrorFolderNotFound", f"No distinguished folder {name}") from None

    def folder(self, folder_id: str) -> Folder:
        with self._lock:
            return copy.deepcopy(self._folder(folder_id))

    def _folder(self, folder_id: str) -> Folder:
        try:
            return self._folders[folder_id]
        except KeyError:
            _check_well_formed(folder_id)
            raise StoreError("ErrorFolderNotFound", "The specified folder could not be found in the store.") from None

    def resolve_folder(self, address: str, ref: str) -> Folder:
        """A folder by id, distinguished name, or path below msgfolderroot such as ``contacts/CRM``."""
        with self._lock:
            if ref in self._folders:
                return copy.deepcopy(self._folders[ref])
            first, *rest = ref.strip("/").split("/")
            mailbox = self._mailbox(address)
            if first in mailbox.distinguished:
                current = self._folders[mailbox.distinguished[first]]
            else:
                current, rest = self._folders[mailbox.distinguished["msgfolderroot"]], [first, *rest]
            for name in rest:
                match = [f for f in self._children(current.id) if f.display_name.lower() == name.lower()]
                if not match:
                    raise StoreError("ErrorFolderNotFound", f"No folder {ref} in {address}")
                current = match[0]
            return copy.deepcopy(current)

    def _children(self, folder_id: str) -> list[Folder]:
        return list(self._children_of.get(folder_id, {}).values())

    def _put_folder(self, folder: Folder) -> None:
        self._folders[folder.id] = folder
        if folder.parent_id:
            self._children_of.setdefault(folder.parent_id, {})[folder.id] = folder

    def _unput_folder(self, folder: Folder) -> None:
        del self._folders[folder.id]
        if folder.parent_id:
            self._children_of.get(folder.parent_id, {}).pop(folder.id, None)

    def child_folders(self, folder_id: str, deep: bool = False) -> list[Folder]:
        with self._lock:
            self._folder(folder_id)
            result: list[Folder] = []
            stack = [folder_id]
            while stack:
                children = self._children(stack.pop(0))
                result.extend(children)
                if deep:
                    stack.extend(f.id for f in children)
            return copy.deepcopy(result)

    def folder_counts(self, folder_id: str) -> tuple[int, int, int]:
        """(total items, child folders, unread items)."""
        with self._lock:
            items = self._by_folder.get(folder_id, {})
            unread = sum(1 for item in items.values() if item.props.get("IsRead") is False)
            return len(items), len(self._children(folder_id)), unread

    def create_folder(
        self, parent_id: str, display_name: str, folder_class: str | None = None
    ) -> Folder:
        with self._lock:
            parent = self._folder(parent_id)
            if any(f.display_name.lower() == display_name.lower() for f in self._children(parent_id)):
                # Exchange compares folder names case-insensitively
                raise StoreError("ErrorFolderExists", f"Could not create folder '{display_name}'. A folder with that name already exists.")
            folder = Folder(
                id=self._new_id(b"FL"),
                changekey=self._new_changekey(),
                mailbox=parent.mailbox,
                parent_id=parent_id,
                display_name=display_name,
                folder_class=folder_class if folder_class is not None else parent.folder_class,
            )
            self._put_folder(folder)
            self._record(mailbox=folder.mailbox, op="created", is_folder=True, id=folder.id, folder_id=parent_id)
            return copy.deepcopy(folder)

    def rename_folder(self, folder_id: str, display_name: str) -> Folder:
        with self._lock:
            folder = self._folder(folder_id)
            folder.display_name = display_name
            folder.changekey = self._new_changekey()
            self._record(mailbox=folder.mailbox, op="modified", is_folder=True, id=folder.id, folder_id=folder.parent_id)
            return copy.deepcopy(folder)

    def move_folder(self, folder_id: str, to_parent_id: str) -> Folder:
        """A folder moves with its id (unlike an item); its change key moves."""
        with self._lock:
            folder = self._folder(folder_id)
            target = self._folder(to_parent_id)
            if folder.distinguished or folder.system:
                raise StoreError("ErrorMoveDistinguishedFolder", "Distinguished and system folders cannot be moved.")
            if target.mailbox.lower() != folder.mailbox.lower():
                raise StoreError("ErrorInvalidOperation", "Folders cannot be moved between mailboxes here")
            if any(f.display_name.lower() == folder.display_name.lower() for f in self._children(target.id)):
                raise StoreError("ErrorFolderExists", f"A folder named '{folder.display_name}' already exists in the target.")
            old_parent = folder.parent_id
            self._unput_folder(folder)
            folder.parent_id = target.id
            folder.changekey = self._new_changekey()
            self._put_folder(folder)
            self._record(mailbox=folder.mailbox, op="deleted", is_folder=True, id=folder.id, folder_id=old_parent)
            self._record(mailbox=folder.mailbox, op="created", is_folder=True, id=folder.id, folder_id=target.id)
            return copy.deepcopy(folder)

    def empty_folder(self, folder_id: str, mode: str = "HardDelete", delete_subfolders: bool = False) -> None:
        """EmptyFolder: every item goes as DeleteItem would take it; sub-folders only when asked."""
        with self._lock:
            self._folder(folder_id)
            for item in list(self._by_folder.get(folder_id, {}).values()):
                self.delete_item(item.id, mode)
            if delete_subfolders:
                for child in self._children(folder_id):
                    self.delete_folder(child.id)

    def delete_folder(self, folder_id: str) -> None:
        with self._lock:
            folder = self._folder(folder_id)
            if folder.distinguished:
                raise StoreError("ErrorDeleteDistinguishedFolder", "Distinguished folders cannot be deleted")
            if folder.system:
                raise StoreError("ErrorCannotDeleteObject", "The folder is a system folder and cannot be deleted.")
            for child in self._children(folder_id):
                self.delete_folder(child.id)
            for item in list(self._by_folder.get(folder_id, {}).values()):
                self._remove_item(item)
            self._unput_folder(folder)
            self._record(mailbox=folder.mailbox, op="deleted", is_folder=True, id=folder_id, folder_id=folder.parent_id)

    # ---- items -----------------------------------------------------------------------------------
    def item(self, item_id: str) -> Item:
        with self._lock:
            return copy.deepcopy(self._item(item_id))

    def _item(self, item_id: str) -> Item:
        try:
            return self._items[item_id]
        except KeyError:
            _check_well_formed(item_id)
            raise StoreError("ErrorItemNotFound", "The specified object was not found in the store.") from None

    def items(self, folder_id: str, kind: str | None = None) -> list[Item]:
        with self._lock:
            self._folder(folder_id)
            found = [i for i in self._by_folder.get(folder_id, {}).values() if kind is None or i.kind == kind]
            return copy.deepcopy(found)

    def live_item(self, item_id: str) -> Item:
        """``item`` without the copy, for front ends that read under `store.lock` and change nothing."""
        return self._item(item_id)

    def live_items(self, folder_id: str, kind: str | None = None) -> list[Item]:
        """Items without copying, for front ends that read under `store.lock` and copy only what they return."""
        self._folder(folder_id)
        return [i for i in self._by_folder.get(folder_id, {}).values() if kind is None or i.kind == kind]

    def all_items(self, address: str, kind: str | None = None) -> list[Item]:
        with self._lock:
            mailbox = self._mailbox(address)
            found = [i for i in self._mailbox_items(mailbox.address) if kind is None or i.kind == kind]
            return copy.deepcopy(found)

    def find_item(self, address: str, kind: str, predicate: Callable[[Item], bool]) -> Item | None:
        """A copy of the first item of a mailbox that satisfies `predicate` (which sees live items:
        it must not change them), copying nothing else."""
        with self._lock:
            mailbox = self._mailbox(address)
            for item in self._mailbox_items(mailbox.address):
                if item.kind == kind and predicate(item):
                    return copy.deepcopy(item)
            return None

    def find_item_with(
        self, address: str, kind: str, prop: str, value: str, predicate: Callable[[Item], bool] | None = None
    ) -> Item | None:
        """``find_item`` for the first item of a mailbox whose `prop` (one of INDEXED_PROPS) is
        `value` and that satisfies `predicate`, without reading the whole mailbox: meeting delivery
        looks up the invitees' copies by UID, an event create its transaction id, for every event."""
        with self._lock:
            mailbox = self._mailbox(address)
            if value and prop in INDEXED_PROPS:
                found = [
                    item
                    for item in self._prop_index().get((mailbox.address.lower(), prop, value), {}).values()
                    if self._items.get(item.id) is item
                    and item.mailbox == mailbox.address
                    and item.kind == kind
                    and item.props.get(prop) == value
                    and (predicate is None or predicate(item))
                ]
                if len(found) <= 1:
                    return copy.deepcopy(found[0]) if found else None
            # several (the first in the mailbox's order is the answer), or no value: read them all
            return self.find_item(address, kind, lambda i: i.props.get(prop) == value and (predicate is None or predicate(i)))

    def _prop_index(self) -> dict[tuple[str, str, str], dict[int, Item]]:
        if self._by_prop is None or self._by_prop_loads != self.loads:
            self._by_prop, self._by_prop_loads = {}, self.loads
            for item in self._items.values():
                self._index_props(item)
        return self._by_prop

    def _index_props(self, item: Item) -> None:
        if self._by_prop is None:
            return
        for prop in INDEXED_PROPS:
            value = item.props.get(prop)
            if value and isinstance(value, str):
                self._by_prop.setdefault((item.mailbox.lower(), prop, value), {})[id(item)] = item

    def _mailbox_items(self, address: str) -> list[Item]:
        return [i for i in self._by_mailbox.get(address.lower(), {}).values() if i.mailbox == address]

    def create_item(
        self,
        folder_id: str,
        kind: str,
        props: dict[str, Any],
        extended: dict[ExtendedKey, Any] | None = None,
        *,
        context: dict[str, Any] | None = None,
    ) -> Item:
        """Create an item. `context` carries protocol-level intent (e.g. send_meeting_invitations)."""
        with self._lock:
            return copy.deepcopy(self._create_item(folder_id, kind, props, extended, context))

    def add_item(
        self,
        folder_id: str,
        kind: str,
        props: dict[str, Any],
        extended: dict[ExtendedKey, Any] | None = None,
        *,
        context: dict[str, Any] | None = None,
    ) -> str:
        """``create_item`` answering the new item's id only, without the copy of it (meeting delivery
        writes several items per meeting and needs no more)."""
        with self._lock:
            return self._create_item(folder_id, kind, props, extended, context).id

    def _create_item(
        self, folder_id: str, kind: str, props: dict[str, Any], extended: dict[ExtendedKey, Any] | None, context: dict[str, Any] | None
    ) -> Item:
        with self._lock:
            folder = self._folder(folder_id)
            now = self.clock.now()
            item = Item(
                id=self._new_id(b"IT"),
                changekey=self._new_changekey(),
                mailbox=folder.mailbox,
                folder_id=folder.id,
                kind=kind,
                props=self._normalize(kind, dict(props)),
                extended=dict(extended or {}),
                created=now,
                modified=now,
            )
            item.props.setdefault("ItemClass", ITEM_CLASSES.get(kind, "IPM"))
            self._sync_tagged_fields(item, item.extended)
            self._complete_defaults(item, creating=True)
            self._add_item(item)
            change = self._record(mailbox=item.mailbox, op="created", is_folder=False, id=item.id, folder_id=folder.id)
            item.created_seq = change.seq
            self._run_hooks("after_create", item, context or {})
            return item

    def update_item(
        self,
        item_id: str,
        set_props: dict[str, Any] | None = None,
        delete_props: Iterable[str] = (),
        set_extended: dict[ExtendedKey, Any] | None = None,
        delete_extended: Iterable[ExtendedKey] = (),
        *,
        changekey: str | None = None,
        conflict_resolution: str = "AutoResolve",
        context: dict[str, Any] | None = None,
        merge: Callable[[Item], None] | None = None,
    ) -> Item:
        """Write fields; a stale change key fails unless AlwaysOverwrite (EWS ConflictResolution)."""
        with self._lock:
            item = self._item(item_id)
            if changekey and changekey != item.changekey and conflict_resolution != "AlwaysOverwrite":
                raise StoreError(
                    "ErrorIrresolvableConflict",
                    "The send or update operation could not be performed because the change key passed in the "
                    "request does not match the current change key for the item.",
                )
            _check_name_lengths(item.kind, set_props or {})
            before = copy.deepcopy(item)
            for name in delete_props:
                item.props.pop(name, None)
            if set_props:
                item.props.update(self._normalize(item.kind, dict(set_props)))
            if merge:
                merge(item)
            delete_extended = list(delete_extended)
            for key in delete_extended:
                item.extended.pop(key, None)
            item.extended.update(set_extended or {})
            self._sync_tagged_fields(item, [*delete_extended, *(set_extended or {})])
            self._complete_defaults(item)
            changed = {k for k in {*before.props, *item.props} if before.props.get(k) != item.props.get(k)}
            self._touch(item, read_flag=changed == {"IsRead"} and before.extended == item.extended)
            self._run_hooks("after_update", before, item, context or {})
            return copy.deepcopy(item)

    def _touch(self, item: Item, read_flag: bool = False) -> None:
        """Every write moves the change key and the last-modified time, and is journalled."""
        item.changekey = self._new_changekey()
        item.modified = self.clock.now()
        self._record(
            mailbox=item.mailbox, op="modified", is_folder=False, id=item.id, folder_id=item.folder_id, read_flag=read_flag
        )

    def touch_item(self, item_id: str) -> Item:
        """A server-side rewrite without a user edit (Exchange does this; change key moves)."""
        with self._lock:
            item = self._item(item_id)
            self._touch(item)
            return copy.deepcopy(item)

    def delete_item(self, item_id: str, mode: str = "HardDelete", *, context: dict[str, Any] | None = None) -> None:
        """HardDelete removes the item; SoftDelete moves it to Recoverable Items, MoveToDeletedItems to
        Deleted Items (both give it a new id there)."""
        with self._lock:
            item = self._item(item_id)
            self._run_hooks("before_delete", item, context or {})
            target = {"MoveToDeletedItems": "deleteditems", "SoftDelete": "recoverableitemsdeletions"}.get(mode)
            if target:
                folder_id = self._mailbox(item.mailbox).distinguished[target]
                if item.folder_id != folder_id:
                    self._move(item, folder_id)
                    return
            self._remove_item(item)

    def lose_item(self, item_id: str) -> None:
        """The item vanishes and no sync feed says so: a restore from an older backup, a mailbox
        reset (what the synchronizer's drift audit is for)."""
        with self._lock:
            self._drop_item(self._item(item_id))

    def _remove_item(self, item: Item) -> None:
        self._drop_item(item)
        self._record(mailbox=item.mailbox, op="deleted", is_folder=False, id=item.id, folder_id=item.folder_id)

    def move_item(self, item_id: str, to_folder_id: str) -> Item:
        """Moving gives the item a new id in the target folder, as Exchange does."""
        with self._lock:
            item = self._item(item_id)
            target = self._folder(to_folder_id)
            if target.mailbox.lower() != item.mailbox.lower():
                raise StoreError("ErrorInvalidOperation", "Items cannot be moved between mailboxes here")
            return copy.deepcopy(self._move(item, target.id))

    def _move(self, item: Item, to_folder_id: str) -> Item:
        old_id, old_folder = item.id, item.folder_id
        new_id = self._new_id(b"IT")
        self._drop_item(item)
        self._record(mailbox=item.mailbox, op="deleted", is_folder=False, id=old_id, folder_id=old_folder, moved_to=new_id)
        item.id = new_id
        item.folder_id = to_folder_id
        item.changekey = self._new_changekey()
        self._add_item(item)
        change = self._record(
            mailbox=item.mailbox,
            op="created",
            is_folder=False,
            id=item.id,
            folder_id=to_folder_id,
            moved_from=old_id,
            old_folder_id=old_folder,
        )
        item.created_seq = change.seq
        return item

    def copy_item(self, item_id: str, to_folder_id: str) -> Item:
        with self._lock:
            source = self._item(item_id)
            return self.create_item(to_folder_id, source.kind, copy.deepcopy(source.props), dict(source.extended))

    # ---- Exchange's own rewrites -----------------------------------------------------------------
    def _normalize(self, kind: str, props: dict[str, Any]) -> dict[str, Any]:
        props = {k: plain(v) for k, v in props.items()}
        if isinstance(props.get("Subject"), str):
            props["Subject"] = props["Subject"][:SUBJECT_LIMIT]  # Exchange cuts a subject, it does not refuse it
        body = props.get("Body")
        if isinstance(body, str):
            body = {"type": "Text", "content": body}
        # A body keeps the format it was written in (EWS's BodyType Best answers it as stored);
        # HTML is rewritten into a full document.
        if isinstance(body, dict) and body.get("type", "Text") != "HTML":
            body = {"type": "Text", "content": body.get("content") or ""}
        elif isinstance(body, dict):
            body = {"type": "HTML", "content": normalize_html(body.get("content") or "")}
        if body is not None:
            props["Body"] = body
        for name in ("EmailAddresses", "PhoneNumbers", "ImAddresses", "PhysicalAddresses"):
            if name in props and not props[name]:
                del props[name]
        if "Attachments" in props:
            props["Attachments"] = [self._keyed_attachment(a) for a in props["Attachments"] or []] or None
            if props["Attachments"] is None:
                del props["Attachments"]
        return props

    def _keyed_attachment(self, attachment: dict[str, Any]) -> dict[str, Any]:
        """An attachment as stored: a key of its own (its id is the item's id and this key), size, time."""
        attachment = dict(attachment)
        attachment.setdefault("key", uuid.uuid4().hex)
        attachment.setdefault("LastModifiedTime", self.clock.now())
        if attachment.get("type") == "File":
            attachment["Size"] = len(base64.b64decode(attachment.get("Content") or ""))
        else:
            attachment["Size"] = 512 + len(str((attachment.get("Item") or {}).get("props")))
        return attachment

    # ---- attachments -------------------------------------------------------------------------------
    def add_attachments(self, item_id: str, attachments: list[dict[str, Any]]) -> tuple[Item, list[str]]:
        """CreateAttachment: the item's change key moves; returns the item and the new attachments' keys."""
        with self._lock:
            item = self._item(item_id)
            added = [self._keyed_attachment(a) for a in attachments]
            item.props["Attachments"] = [*(item.props.get("Attachments") or []), *added]
            self._touch(item)
            return copy.deepcopy(item), [a["key"] for a in added]

    def attachment(self, item_id: str, key: str) -> tuple[Item, dict[str, Any]]:
        with self._lock:
            item = self._item(item_id)
            for attachment in item.props.get("Attachments") or []:
                if attachment.get("key") == key:
                    return copy.deepcopy(item), copy.deepcopy(attachment)
            raise StoreError("ErrorItemNotFound", "The attachment was not found.")

    def remove_attachment(self, item_id: str, key: str) -> Item:
        """DeleteAttachment: the item's change key moves."""
        with self._lock:
            item = self._item(item_id)
            kept = [a for a in item.props.get("Attachments") or [] if a.get("key") != key]
            if len(kept) == len(item.props.get("Attachments") or []):
                raise StoreError("ErrorItemNotFound", "The attachment was not found.")
            if kept:
                item.props["Attachments"] = kept
            else:
                item.props.pop("Attachments", None)
            self._touch(item)
            return copy.deepcopy(item)

    def _sync_tagged_fields(self, item: Item, written: Iterable[ExtendedKey]) -> None:
        """A MAPI tag that is an item field ([MS-OXPROPS]): EWS's PhoneNumbers/BusinessFax and
        PidTagBusinessFaxNumber (0x3A24, how Graph reaches it) are one property. A write through the
        tag lands in the field (empty clears it); the tag always reads as the field."""
        written_tags = {key.tag for key in written if key.tag is not None}
        for tag, (kind, prop, entry) in TAGGED_FIELDS.items():
            if item.kind != kind:
                continue
            tagged = [key for key in item.extended if key.tag == tag]
            values = [item.extended.pop(key) for key in tagged]
            if tag in written_tags:
                entries = dict(item.props.get(prop) or {})
                if values and values[-1] not in (None, ""):
                    entries[entry] = values[-1]
                else:
                    entries.pop(entry, None)
                if entries:
                    item.props[prop] = entries
                else:
                    item.props.pop(prop, None)
            value = (item.props.get(prop) or {}).get(entry)
            if value:
                item.extended[ExtendedKey.create("String", tag=tag)] = value

    def _complete_defaults(self, item: Item, creating: bool = False) -> None:
        props = item.props
        if item.kind == "Contact":
            given, surname = props.get("GivenName"), props.get("Surname")
            full = " ".join(p for p in (given, props.get("MiddleName"), surname) if p)
            if not props.get("DisplayName") and (full or props.get("CompanyName")):
                props["DisplayName"] = full or props["CompanyName"]
            if not props.get("FileAs"):
                file_as = ", ".join(p for p in (surname, given) if p) or props.get("CompanyName")
                if file_as:
                    props["FileAs"] = file_as
            if creating and props.get("DisplayName") and not props.get("Subject"):
                # only a new contact takes its display name as subject: a subject cleared later stays empty
                props["Subject"] = props["DisplayName"]
        self._run_hooks("complete_defaults", item)

    # ---- sync states -----------------------------------------------------------------------------
    def encode_sync_state(self, folder_id: str, seq: int) -> str:
        payload = json.dumps({"f": folder_id, "s": seq}, separators=(",", ":"))
        sig = hashlib.sha256((self.secret + payload).encode()).hexdigest()[:16]
        return base64.b64encode(f"{payload}|{sig}".encode()).decode()

    def decode_sync_state(self, folder_id: str, state: str | None) -> int:
        if not state:
            return 0
        try:
            raw = base64.b64decode(state, validate=True).decode()
            payload, sig = raw.rsplit("|", 1)
            data = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            raise StoreError("ErrorInvalidSyncStateData", "Synchronization state data is corrupt or otherwise invalid.") from None
        valid_sig = hashlib.sha256((self.secret + payload).encode()).hexdigest()[:16]
        if sig != valid_sig or data.get("f") != folder_id or not isinstance(data.get("s"), int):
            raise StoreError("ErrorInvalidSyncStateData", "Synchronization state data is corrupt or otherwise invalid.")
        return data["s"]

    def sync_folder_items(
        self, folder_id: str, state: str | None, max_changes: int, ignore: Iterable[str] = ()
    ) -> tuple[list[tuple[str, Item | str]], str, bool]:
        """Changes in a folder since a sync state, oldest first.

        Returns ([(op, item_or_id)], new_state, includes_last) with op Create / Update / ReadFlagChange
        (only the read flag changed since the state) / Delete; a Delete carries the id. Changes are ordered by their first journal entry after the state, and the new
        state stops there, so a later page can repeat an Update but never misses a Create.
        """
        with self._lock:
            self._folder(folder_id)
            since = self.decode_sync_state(folder_id, state)
            ignored = set(ignore)
            first_seen: dict[str, int] = {}
            created_after: set[str] = set()
            content_changed: set[str] = set()  # more than the read flag changed
            for change in self._journal_after(since):
                if change.is_folder or change.folder_id != folder_id:
                    continue
                first_seen.setdefault(change.id, change.seq)
                if change.op == "created":
                    created_after.add(change.id)
                if not change.read_flag:
                    content_changed.add(change.id)
            ordered = sorted(first_seen.items(), key=lambda pair: pair[1])
            result: list[tuple[str, Item | str]] = []
            new_seq = self._seq
            includes_last = True
            for index, (item_id, first_seq) in enumerate(ordered):
                op = self._net_change(item_id, since, folder_id, item_id in created_after)
                if op is None or item_id in ignored:
                    continue
                if op == "Update" and item_id not in content_changed:
                    op = "ReadFlagChange"
                result.append((op, copy.deepcopy(self._items[item_id]) if op != "Delete" else item_id))
                if len(result) >= max_changes and index + 1 < len(ordered):
                    new_seq, includes_last = first_seq, False
                    break
            return result, self.encode_sync_state(folder_id, new_seq), includes_last

    def _net_change(self, item_id: str, since: int, folder_id: str, created_after: bool) -> str | None:
        live = self._items.get(item_id)
        if live is None or live.folder_id != folder_id:
            # created after the state and gone again: the client never saw it
            return None if created_after else "Delete"
        return "Create" if live.created_seq > since else "Update"

    def sync_folder_hierarchy(self, root_id: str, state: str | None) -> tuple[list[tuple[str, Folder | str]], str]:
        """Folder changes below a folder since a state (Create / Update / Delete), all in one page."""
        with self._lock:
            root = self._folder(root_id)
            key = f"hierarchy:{root.id}"
            since = self.decode_sync_state(key, state)
            below = {f.id for f in self.child_folders(root.id, deep=True)}
            if not state:  # a first sync: every folder below (a state may hold sequence 0 too)
                changes: list[tuple[str, Folder | str]] = [("Create", self.folder(f)) for f in sorted(below)]
                return changes, self.encode_sync_state(key, self._seq)
            known = below | {root.id}
            ops: dict[str, tuple[str, int]] = {}
            for change in self._journal_after(since):
                if not change.is_folder:
                    continue
                if change.folder_id in known or change.id in known:
                    known.add(change.id)
                    first = ops.get(change.id, (change.op, change.seq))
                    ops[change.id] = (first[0], change.seq) if change.op != "deleted" else ("deleted", change.seq)
            result: list[tuple[str, Folder | str]] = []
            created_after = {c.id for c in self._journal_after(since) if c.is_folder and c.op == "created"}
            for folder_id, (op, _) in sorted(ops.items(), key=lambda pair: pair[1][1]):
                if op == "deleted" or folder_id not in self._folders:
                    if folder_id not in created_after:  # the client never saw a folder that came and went
                        result.append(("Delete", folder_id))
                else:
                    result.append(("Create" if op == "created" else "Update", self.folder(folder_id)))
            return result, self.encode_sync_state(key, self._seq)

    def journal(self, since: int = 0) -> list[Change]:
        with self._lock:
            return self._journal_after(since)

    def _journal_after(self, since: int) -> list[Change]:
        # The journal is in sequence order: find where `since` ends instead of reading it all.
        return self._journal[bisect.bisect_right(self._journal, since, key=lambda c: c.seq) :]

    # ---- snapshots -------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "secret": self.secret,
                "seq": self._seq,
                "mailboxes": [m.__dict__ for m in self._mailboxes.values()],
                "folders": [f.__dict__ for f in self._folders.values()],
                "items": [_item_to_json(i) for i in self._items.values()],
                "journal": [{**c.__dict__, "when": c.when.isoformat() if c.when else None} for c in self._journal],
            }

    def load_json(self, data: dict[str, Any]) -> None:
        with self._lock:
            self.secret = data["secret"]
            self._seq = data["seq"]
            self._mailboxes = {m["address"].lower(): Mailbox(**m) for m in data["mailboxes"]}
            self._folders, self._children_of = {}, {}
            for raw in data["folders"]:
                self._put_folder(Folder(**raw))
            self._items = {i["id"]: _item_from_json(i) for i in data["items"]}
            self._reindex()
            self.loads += 1
            self._journal = [
                Change(**{**c, "when": datetime.fromisoformat(c["when"]) if c["when"] else None})
                for c in data["journal"]
            ]
            self._ck = itertools.count(self._seq + 10_000_000)

    def save(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self.to_json(), fh)

    def load(self, path: str) -> None:
        with open(path, encoding="utf-8") as fh:
            self.load_json(json.load(fh))

    def iter_items(self) -> Iterator[Item]:
        with self._lock:
            yield from copy.deepcopy(list(self._items.values()))


def _check_name_lengths(kind: str, props: dict[str, Any]) -> None:
    """An update that makes a contact's name part longer than Exchange keeps fails (a subject is cut instead)."""
    if kind != "Contact":
        return
    for name in NAME_PARTS:
        value = props.get(name)
        if isinstance(value, str) and len(value) > NAME_LIMIT:
            raise StoreError("ErrorPropertyUpdate", f"An object within a change description contains one or more invalid property values ({name}).")


def _check_well_formed(object_id: str) -> None:
    """Exchange tells a malformed id (ErrorInvalidIdMalformed) from one that no longer exists."""
    try:
        base64.b64decode(object_id, validate=True)
    except ValueError:
        raise StoreError("ErrorInvalidIdMalformed", "Id is malformed.") from None
    if len(object_id) < 8:
        raise StoreError("ErrorInvalidIdMalformed", "Id is malformed.")


_PLAIN_ATOMS = frozenset({str, int, float, bool, type(None), bytes})


def plain(value: Any) -> Any:
    """Datetimes as plain aware UTC datetimes (callers may pass subclasses such as exchangelib's)."""
    kind = type(value)
    if kind in _PLAIN_ATOMS:  # most values: answered before the isinstance checks below
        return value
    if kind is datetime and value.tzinfo is UTC and not value.fold:  # already what the code below makes
        return value
    # plain dicts and lists (what the front ends write) as the isinstance checks below take them, their
    # atoms without a call for each
    if kind is dict:
        return {k: v if type(v) in _PLAIN_ATOMS else plain(v) for k, v in value.items()}
    if kind is list:
        return [v if type(v) in _PLAIN_ATOMS else plain(v) for v in value]
    if isinstance(value, datetime):
        offset = value.utcoffset() or timedelta(0)
        naive = datetime(value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond)
        return (naive - offset).replace(tzinfo=UTC)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, timedelta):
        return {"$td": value.total_seconds()}
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$dt"}:
            return datetime.fromisoformat(value["$dt"])
        if set(value) == {"$td"}:
            return timedelta(seconds=value["$td"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _item_to_json(item: Item) -> dict[str, Any]:
    data = {k: v for k, v in item.__dict__.items() if k not in {"props", "extended"}}
    data["props"] = _encode(item.props)
    data["extended"] = [[k.as_dict(), _encode(v)] for k, v in item.extended.items()]
    data["created"] = _encode(item.created)
    data["modified"] = _encode(item.modified)
    return data


def _item_from_json(data: dict[str, Any]) -> Item:
    data = dict(data)
    data["props"] = _decode(data["props"])
    data["extended"] = {ExtendedKey(**k): _decode(v) for k, v in data["extended"]}
    data["created"] = _decode(data["created"])
    data["modified"] = _decode(data["modified"])
    return Item(**data)
