"""EWS operations: each turns one request body element into calls on the store and one response element.

Per-item failures become Error response messages carrying the store's ResponseCode, as Exchange does;
request-wide failures raise `SoapFault`.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from exchange_sim import mail
from exchange_sim.ews import codec
from exchange_sim.ews.codec import (
    FieldPath,
    Shape,
    parse_item,
    parse_path,
    parse_shape,
    render_folder,
    render_item,
)
from exchange_sim.ews.restriction import apply_sort, compile_restriction, sort_key_funcs
from exchange_sim.ews.xmlutil import NSMAP, Element, local, m, sub, t
from exchange_sim.store import ExtendedKey, Folder, Item, Store, StoreError

DEFAULT_FOLDER_FOR_KIND = {"Contact": "contacts", "CalendarItem": "calendar", "Task": "tasks", "Message": "drafts"}


class SoapFault(Exception):
    """A request-wide failure answered as a SOAP Fault (HTTP 500), e.g. ErrorServerBusy."""

    def __init__(self, code: str, message: str, back_off_ms: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.back_off_ms = back_off_ms


@dataclass
class RequestContext:
    store: Store
    target: str  # the mailbox the request acts on (impersonated, anchored or own)
    user: str | None  # the authenticated account, None without auth
    is_service_account: bool
    version: str = "Exchange2016"
    simulator: Any = None  # the Simulator, for features beyond the store (subscriptions, id conversion)
    extras: dict[str, Any] = field(default_factory=dict)
    headers: Any = None  # the HTTP request headers (affinity headers and cookies for notifications)
    response_headers: dict[str, str] = field(default_factory=dict)  # extra HTTP headers of the answer

    def check_mailbox(self, address: str) -> str:
        if not self.store.has_mailbox(address):
            raise StoreError("ErrorNonExistentMailbox", f"The SMTP address has no mailbox associated with it: {address}")
        if self.user and not self.is_service_account and address.lower() != self.user.lower():
            raise StoreError("ErrorAccessDenied", f"Access is denied. Check credentials and try again ({address}).")
        return address

    def folder(self, ref: Element) -> Folder:
        """Resolve a t:FolderId or t:DistinguishedFolderId (optionally with a Mailbox)."""
        if local(ref) == "DistinguishedFolderId":
            address = ref.findtext(f"{t('Mailbox')}/{t('EmailAddress')}") or self.target
            self.check_mailbox(address)
            return self.store.distinguished_folder(address, ref.get("Id", ""))
        folder = self.store.folder(ref.get("Id", ""))
        self.check_mailbox(folder.mailbox)
        return folder

    def item(self, item_id: str, *, live: bool = False) -> Item:
        """`live`: the stored item, not a copy, for an operation that only answers it (handlers run
        under the store lock)."""
        item = self.store.live_item(item_id) if live else self.store.item(item_id)
        self.check_mailbox(item.mailbox)
        return item


class Responder:
    """Builds m:<Op>Response with one m:<Op>ResponseMessage per item."""

    def __init__(self, operation: str) -> None:
        self.operation = operation
        self.root = etree.Element(m(f"{operation}Response"), nsmap={"m": NSMAP["m"], "t": NSMAP["t"]})
        self.messages = sub(self.root, m("ResponseMessages"))

    def success(self) -> Element:
        msg = sub(self.messages, m(f"{self.operation}ResponseMessage"), ResponseClass="Success")
        sub(msg, m("ResponseCode"), "NoError")
        return msg

    def error(self, err: StoreError, *containers: str) -> Element:
        msg = sub(self.messages, m(f"{self.operation}ResponseMessage"), ResponseClass="Error")
        sub(msg, m("MessageText"), err.message)
        sub(msg, m("ResponseCode"), err.code)
        sub(msg, m("DescriptiveLinkKey"), "0")
        for name in containers:
            sub(msg, m(name))
        return msg


Handler = Callable[[RequestContext, Element], Element]
OPERATIONS: dict[str, Handler] = {}
# CreateItem children that are response objects (AcceptItem, CancelCalendarItem...), not new items.
RESPONSE_OBJECTS: dict[str, Callable[[RequestContext, Element, dict[str, Any]], Item | None]] = {}
# Kind-specific computed values for rendering (calendar adds CalendarItemType, IsRecurring...).
COMPUTED: dict[str, Callable[[Store, Item], dict[str, Any]]] = {
    "Contact": lambda store, item: {"CompleteName": codec.complete_name(item)},
}


def operation(name: str) -> Callable[[Handler], Handler]:
    def register(func: Handler) -> Handler:
        OPERATIONS[name] = func
        return func

    return register


def computed_for(store: Store, item: Item) -> dict[str, Any]:
    func = COMPUTED.get(item.kind)
    return func(store, item) if func else {}


def render(parent: Element, ctx: RequestContext, item: Item, shape: Shape) -> Element:
    return render_item(parent, item, shape, computed_for(ctx.store, item))


# ---- folders ---------------------------------------------------------------------------------------
@operation("GetFolder")
def get_folder(ctx: RequestContext, req: Element) -> Element:
    out = Responder("GetFolder")
    shape = _folder_shape(req)
    for ref in req.find(m("FolderIds")):
        try:
            folder = ctx.folder(ref)
            msg = out.success()
            render_folder(sub(msg, m("Folders")), folder, ctx.store.folder_counts(folder.id), shape=shape)
        except StoreError as err:
            out.error(err)
    return out.root


def _folder_shape(req: Element) -> Shape | None:
    elem = req.find(m("FolderShape"))
    return parse_shape(elem) if elem is not None else None


@operation("FindFolder")
def find_folder(ctx: RequestContext, req: Element) -> Element:
    out = Responder("FindFolder")
    shape = _folder_shape(req)
    deep = req.get("Traversal", "Shallow") == "Deep"
    restriction = req.find(m("Restriction"))
    predicate = compile_restriction(restriction) if restriction is not None else None
    view = req.find(m("IndexedPageFolderView"))
    for ref in req.find(m("ParentFolderIds")):
        try:
            parent = ctx.folder(ref)
            folders = [f for f in ctx.store.child_folders(parent.id, deep=deep) if predicate is None or predicate(f)]
            page, offset, last = _page(folders, view)
            msg = out.success()
            root = sub(msg, m("RootFolder"), TotalItemsInView=str(len(folders)), IncludesLastItemInRange=_bool(last))
            if offset is not None:
                root.set("IndexedPagingOffset", str(offset))
            container = sub(root, t("Folders"))
            for folder in page:
                render_folder(container, folder, ctx.store.folder_counts(folder.id), shape=shape)
        except StoreError as err:
            out.error(err)
    return out.root


@operation("CreateFolder")
def create_folder(ctx: RequestContext, req: Element) -> Element:
    out = Responder("CreateFolder")
    try:
        parent = ctx.folder(req.find(m("ParentFolderId"))[0])
    except StoreError as err:
        for _ in req.find(m("Folders")):
            out.error(err)
        return out.root
    for elem in req.find(m("Folders")):
        try:
            name = elem.findtext(t("DisplayName")) or ""
            folder_class = elem.findtext(t("FolderClass")) or _class_for_tag(local(elem), parent)
            folder = ctx.store.create_folder(parent.id, name, folder_class)
            render_folder(sub(out.success(), m("Folders")), folder, (0, 0), full=False)
        except StoreError as err:
            out.error(err)
    return out.root


def _class_for_tag(tag: str, parent: Folder) -> str | None:
    """A ContactsFolder / CalendarFolder / TasksFolder has its class; a plain Folder sent without a
    FolderClass has none (Exchange leaves it unset; "" keeps the store from taking the parent's)."""
    inverse = {v: k for k, v in codec.FOLDER_TAGS.items()}
    return inverse.get(tag, parent.folder_class if tag != "Folder" else "")


@operation("DeleteFolder")
def delete_folder(ctx: RequestContext, req: Element) -> Element:
    out = Responder("DeleteFolder")
    for ref in req.find(m("FolderIds")):
        try:
            ctx.store.delete_folder(ctx.folder(ref).id)
            out.success()
        except StoreError as err:
            out.error(err)
    return out.root


@operation("UpdateFolder")
def update_folder(ctx: RequestContext, req: Element) -> Element:
    out = Responder("UpdateFolder")
    for change in req.find(m("FolderChanges")):
        try:
            try:
                folder = ctx.folder(change[0])
            except StoreError as err:
                if err.code != "ErrorFolderNotFound":
                    raise
                # UpdateFolder names a folder that is gone ErrorItemNotFound (GetFolder: ErrorFolderNotFound)
                raise StoreError("ErrorItemNotFound", "The specified object was not found in the store.") from None
            for update in change.find(t("Updates")):
                new_class = update.find(f".//{t('FolderClass')}")
                if new_class is not None and (new_class.text or "") != (folder.folder_class or ""):
                    raise StoreError("ErrorObjectTypeChanged", "The folder class of a folder cannot be changed.")
                name = update.find(f".//{t('DisplayName')}")
                if name is not None:
                    folder = ctx.store.rename_folder(folder.id, name.text or "")
            render_folder(sub(out.success(), m("Folders")), folder, (0, 0), full=False)
        except StoreError as err:
            out.error(err)
    return out.root


@operation("MoveFolder")
def move_folder(ctx: RequestContext, req: Element) -> Element:
    out = Responder("MoveFolder")
    try:
        target = ctx.folder(req.find(m("ToFolderId"))[0])
    except StoreError as err:
        for _ in req.find(m("FolderIds")):
            out.error(err, "Folders")
        return out.root
    for ref in req.find(m("FolderIds")):
        try:
            moved = ctx.store.move_folder(ctx.folder(ref).id, target.id)
            render_folder(sub(out.success(), m("Folders")), moved, (0, 0), full=False)
        except StoreError as err:
            out.error(err, "Folders")
    return out.root


@operation("EmptyFolder")
def empty_folder(ctx: RequestContext, req: Element) -> Element:
    out = Responder("EmptyFolder")
    mode = req.get("DeleteType", "HardDelete")
    subfolders = req.get("DeleteSubFolders", "false").lower() in {"true", "1"}
    for ref in req.find(m("FolderIds")):
        try:
            ctx.store.empty_folder(ctx.folder(ref).id, mode, subfolders)
            out.success()
        except StoreError as err:
            out.error(err)
    return out.root


# ---- items -----------------------------------------------------------------------------------------
def _context_flags(req: Element) -> dict[str, Any]:
    return {
        "send_invitations": req.get("SendMeetingInvitations")
        or req.get("SendMeetingInvitationsOrCancellations")
        or req.get("SendMeetingCancellations")
        or "SendToNone",
        "disposition": req.get("MessageDisposition"),
    }


@operation("CreateItem")
def create_item(ctx: RequestContext, req: Element) -> Element:
    out = Responder("CreateItem")
    flags = _context_flags(req)
    saved = req.find(m("SavedItemFolderId"))
    for elem in req.find(m("Items")):
        try:
            if local(elem) in RESPONSE_OBJECTS:
                result = RESPONSE_OBJECTS[local(elem)](ctx, elem, flags)
                items = sub(out.success(), m("Items"))
                if result is not None:
                    codec.item_ref(items, result)
                continue
            kind, props, extended = parse_item(elem)
            sending = kind == "Message" and flags["disposition"] in {"SendOnly", "SendAndSaveCopy"}
            if saved is not None and not sending:
                folder = ctx.folder(saved[0])
            else:
                ctx.check_mailbox(ctx.target)
                folder = ctx.store.distinguished_folder(ctx.target, DEFAULT_FOLDER_FOR_KIND.get(kind, "drafts"))
            # the stored item, not a copy: only its id and change key are answered (under the store lock)
            item = ctx.store.live_item(ctx.store.add_item(folder.id, kind, props, extended, context=flags))
            if sending:
                # sent at once: Exchange answers no item (the sent copy has an id of its own)
                copy_to = ctx.folder(saved[0]).id if saved is not None else None
                mail.send(ctx.store, item.id, flags["disposition"] == "SendAndSaveCopy", copy_to)
                sub(out.success(), m("Items"))
                continue
            codec.item_ref(sub(out.success(), m("Items")), item)
        except StoreError as err:
            out.error(err, "Items")
    return out.root


@operation("SendItem")
def send_item(ctx: RequestContext, req: Element) -> Element:
    out = Responder("SendItem")
    save_copy = req.get("SaveItemToFolder", "true").lower() in {"true", "1"}
    saved = req.find(m("SavedItemFolderId"))
    for ref in req.find(m("ItemIds")):
        try:
            item, changekey = resolve_item_ref(ctx, ref)
            check_changekey(changekey)
            if changekey and changekey != item.changekey:
                raise StoreError(
                    "ErrorStaleObject", "The change key passed in the request does not match the current change key for the item."
                )
            mail.send(ctx.store, item.id, save_copy, ctx.folder(saved[0]).id if saved is not None else None)
            out.success()
        except StoreError as err:
            out.error(err)
    return out.root


def resolve_item_ref(ctx: RequestContext, ref: Element, *, live: bool = False) -> tuple[Item, str | None]:
    """An ItemId, OccurrenceItemId or RecurringMasterItemId into (item, the change key sent); `live`:
    a stored item as it is (see RequestContext.item)."""
    name = local(ref)
    resolver = ctx.extras.get("resolve_item_ref")
    if name in {"OccurrenceItemId", "RecurringMasterItemId"} and resolver:
        return resolver(ctx, ref)
    if name != "ItemId":
        raise StoreError("ErrorInvalidOperation", f"{name} is not supported here")
    item_id = ref.get("Id", "")
    occurrence = ctx.extras.get("occurrence_by_id")
    if occurrence:
        found = occurrence(ctx, item_id)
        if found is not None:
            return found, ref.get("ChangeKey")
    return ctx.item(item_id, live=live), ref.get("ChangeKey")


def check_changekey(changekey: str | None) -> None:
    """A change key that is not base64 at all is refused (ErrorInvalidChangeKey), as Exchange does."""
    if not changekey:
        return
    try:
        if base64.b64decode(changekey, validate=True):
            return
    except ValueError:
        pass
    raise StoreError("ErrorInvalidChangeKey", "The change key is invalid.")


@operation("GetItem")
def get_item(ctx: RequestContext, req: Element) -> Element:
    out = Responder("GetItem")
    shape = parse_shape(req.find(m("ItemShape")))
    for ref in req.find(m("ItemIds")):
        try:
            item, _ = resolve_item_ref(ctx, ref, live=True)  # only rendered
            render(sub(out.success(), m("Items")), ctx, item, shape)
        except StoreError as err:
            out.error(err, "Items")
    return out.root


def collect_updates(item: Item, updates: Element) -> dict[str, Any]:
    """Translate t:Updates into store.update_item keyword arguments."""
    set_props: dict[str, Any] = {}
    delete_props: list[str] = []
    set_ext: dict[ExtendedKey, Any] = {}
    delete_ext: list[ExtendedKey] = []
    merges: list[Callable[[Item], None]] = []
    for update in updates:
        action = local(update)
        path = parse_path(update[0])
        value_elem = update[1] if len(update) > 1 else None
        if path.extended is not None:
            if action == "DeleteItemField":
                delete_ext.append(path.extended)
            elif value_elem is not None:
                key, value = codec.parse_extended_property(value_elem.find(t("ExtendedProperty")))
                set_ext[key] = value
            continue
        if path.index is not None:
            new = None
            if action != "DeleteItemField" and value_elem is not None:
                _, props, _ = parse_item(value_elem)
                new = props.get(path.element) or {}
            merges.append(lambda it, p=path, n=new: codec.merge_indexed(it.props, p, n))
            continue
        if action == "DeleteItemField":
            delete_props.append(path.element or "")
            continue
        _, props, _ = parse_item(value_elem)
        value = props.get(path.element or "")
        if action == "AppendToItemField":
            merges.append(lambda it, p=path, v=value: _append(it, p, v))
        else:
            set_props[path.element or ""] = value
    merge = (lambda it: [f(it) for f in merges]) if merges else None
    return {
        "set_props": set_props,
        "delete_props": delete_props,
        "set_extended": set_ext,
        "delete_extended": delete_ext,
        "merge": merge,
    }


def _append(item: Item, path: FieldPath, value: Any) -> None:
    current = item.props.get(path.element or "")
    if isinstance(current, list) and isinstance(value, list):
        item.props[path.element or ""] = current + value
    elif isinstance(current, dict) and isinstance(value, dict) and "content" in current:
        item.props[path.element or ""] = {**current, "content": current["content"] + value.get("content", "")}
    else:
        item.props[path.element or ""] = value


@operation("UpdateItem")
def update_item(ctx: RequestContext, req: Element) -> Element:
    out = Responder("UpdateItem")
    flags = _context_flags(req)
    resolution = req.get("ConflictResolution", "AutoResolve")
    for change in req.find(m("ItemChanges")):
        try:
            item, changekey = resolve_item_ref(ctx, change[0])
            check_changekey(changekey)
            kwargs = collect_updates(item, change.find(t("Updates")))
            updater = ctx.extras.get("update_occurrence")
            if updater and item.props.get("_occurrence_of"):
                updated = updater(ctx, item, changekey, resolution, kwargs, flags)
            else:
                # "written": the properties the request sets (a rewritten Recurrence drops exceptions).
                written = {**flags, "written": frozenset(kwargs["set_props"])}
                updated = ctx.store.update_item(
                    item.id, changekey=changekey, conflict_resolution=resolution, context=written, **kwargs
                )
            msg = out.success()
            codec.item_ref(sub(msg, m("Items")), updated)
            sub(sub(msg, m("ConflictResults")), t("Count"), "0")
        except StoreError as err:
            out.error(err, "Items")
    return out.root


# ---- attachments -------------------------------------------------------------------------------------
@operation("CreateAttachment")
def create_attachment(ctx: RequestContext, req: Element) -> Element:
    out = Responder("CreateAttachment")
    elems = list(req.find(m("Attachments")))
    try:
        parent = ctx.item(req.find(m("ParentItemId")).get("Id", ""))
        item, keys = ctx.store.add_attachments(parent.id, [codec.parse_attachment(a) for a in elems])
    except StoreError as err:
        for _ in elems:
            out.error(err, "Attachments")
        return out.root
    for elem, key in zip(elems, keys, strict=True):
        container = sub(out.success(), m("Attachments"))
        codec.render_attachment_id(sub(container, t(local(elem))), item, key)
    return out.root


@operation("GetAttachment")
def get_attachment(ctx: RequestContext, req: Element) -> Element:
    out = Responder("GetAttachment")
    for ref in req.find(m("AttachmentIds")):
        try:
            item_id, key = codec.split_attachment_id(ref.get("Id", ""))
            ctx.item(item_id)
            item, attachment = ctx.store.attachment(item_id, key)
            container = sub(out.success(), m("Attachments"))
            codec.render_attachment(container, item, attachment, full=True, computed=lambda i: computed_for(ctx.store, i))
        except StoreError as err:
            out.error(err, "Attachments")
    return out.root


@operation("DeleteAttachment")
def delete_attachment(ctx: RequestContext, req: Element) -> Element:
    out = Responder("DeleteAttachment")
    for ref in req.find(m("AttachmentIds")):
        try:
            item_id, key = codec.split_attachment_id(ref.get("Id", ""))
            ctx.item(item_id)
            item = ctx.store.remove_attachment(item_id, key)
            sub(out.success(), m("RootItemId"), RootItemId=item.id, RootItemChangeKey=item.changekey)
        except StoreError as err:
            out.error(err)
    return out.root


@operation("DeleteItem")
def delete_item(ctx: RequestContext, req: Element) -> Element:
    out = Responder("DeleteItem")
    flags = _context_flags(req)
    mode = req.get("DeleteType", "HardDelete")
    for ref in req.find(m("ItemIds")):
        try:
            item, changekey = resolve_item_ref(ctx, ref)
            # Exchange ignores a well-formed but stale change key on delete; a malformed one fails
            check_changekey(changekey)
            deleter = ctx.extras.get("delete_occurrence")
            if deleter and item.props.get("_occurrence_of"):
                deleter(ctx, item, flags)
            else:
                ctx.store.delete_item(item.id, mode, context=flags)
            out.success()
        except StoreError as err:
            out.error(err)
    return out.root


def _move_or_copy(ctx: RequestContext, req: Element, op: str) -> Element:
    out = Responder(op)
    try:
        target = ctx.folder(req.find(m("ToFolderId"))[0])
    except StoreError as err:
        for _ in req.find(m("ItemIds")):
            out.error(err, "Items")
        return out.root
    for ref in req.find(m("ItemIds")):
        try:
            item, _ = resolve_item_ref(ctx, ref)
            moved = ctx.store.move_item(item.id, target.id) if op == "MoveItem" else ctx.store.copy_item(item.id, target.id)
            codec.item_ref(sub(out.success(), m("Items")), moved)
        except StoreError as err:
            out.error(err, "Items")
    return out.root


@operation("MoveItem")
def move_item(ctx: RequestContext, req: Element) -> Element:
    return _move_or_copy(ctx, req, "MoveItem")


@operation("CopyItem")
def copy_item(ctx: RequestContext, req: Element) -> Element:
    return _move_or_copy(ctx, req, "CopyItem")


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _page(objs: list[Any], view: Element | None) -> tuple[list[Any], int | None, bool]:
    """Apply an IndexedPage*View: (page, next offset or None, includes last)."""
    if view is None:
        return objs, None, True
    # Exchange's default throttling policy (EWSFindCountLimit) caps a page at 1000 entries
    size = min(int(view.get("MaxEntriesReturned") or 1000), 1000)
    offset = int(view.get("Offset", "0"))
    if view.get("BasePoint", "Beginning") == "End":
        start = max(len(objs) - offset - size, 0)
        page = objs[start : len(objs) - offset]
        return page, offset + len(page), start == 0
    page = objs[offset : offset + size]
    next_offset = offset + len(page)
    return page, next_offset, next_offset >= len(objs)


def _candidate_items(ctx: RequestContext, folder: Folder, calendar_view: Element | None) -> list[Item]:
    """A folder's items, or with a CalendarView its occurrences in the window (already in start order)."""
    if calendar_view is None:
        return sorted(ctx.store.live_items(folder.id), key=lambda i: i.created_seq)  # under the store lock
    expand = ctx.extras.get("calendar_view")
    if expand is None:
        raise StoreError("ErrorInvalidOperation", "CalendarView is not available")
    return expand(ctx, folder, calendar_view)


def _calendar_page(items: list[Item], calendar_view: Element) -> tuple[list[Item], int | None, bool]:
    limit = calendar_view.get("MaxEntriesReturned")
    page = items[: int(limit)] if limit else items
    return page, None, len(page) == len(items)


@operation("FindItem")
def find_item(ctx: RequestContext, req: Element) -> Element:
    out = Responder("FindItem")
    shape = parse_shape(req.find(m("ItemShape")))
    restriction = req.find(m("Restriction"))

    def extra(obj: Item) -> dict[str, Any]:
        return computed_for(ctx.store, obj)

    predicate = compile_restriction(restriction, extra) if restriction is not None else None
    orders = sort_key_funcs(req.find(m("SortOrder")))
    calendar_view = req.find(m("CalendarView"))
    for ref in req.find(m("ParentFolderIds")):
        try:
            if calendar_view is not None and restriction is not None:
                # Exchange expands a calendar view without filtering it
                raise StoreError("ErrorInvalidOperation", "Restrictions may not be specified with a CalendarView.")
            items = _candidate_items(ctx, ctx.folder(ref), calendar_view)
            if predicate is not None:
                items = [i for i in items if predicate(i)]
            if orders:
                items = apply_sort(items, orders, extra)
            if calendar_view is not None:
                page, offset, last = _calendar_page(items, calendar_view)
            else:
                page, offset, last = _page(items, req.find(m("IndexedPageItemView")))
            msg = out.success()
            root = sub(msg, m("RootFolder"), TotalItemsInView=str(len(items)), IncludesLastItemInRange=_bool(last))
            if offset is not None:
                root.set("IndexedPagingOffset", str(offset))
            container = sub(root, t("Items"))
            for item in page:
                render(container, ctx, item, shape)
        except StoreError as err:
            out.error(err)
    return out.root


@operation("SyncFolderItems")
def sync_folder_items(ctx: RequestContext, req: Element) -> Element:
    out = Responder("SyncFolderItems")
    shape = parse_shape(req.find(m("ItemShape")))
    try:
        folder = ctx.folder(req.find(m("SyncFolderId"))[0])
        fault = ctx.extras.get("fault_invalid_sync_state")
        if fault:
            raise StoreError("ErrorInvalidSyncStateData", "Synchronization state data is corrupt or otherwise invalid.")
        ignore_elem = req.find(m("Ignore"))
        ignore = [ref.get("Id", "") for ref in ignore_elem] if ignore_elem is not None else []
        max_changes = int(req.findtext(m("MaxChangesReturned")) or "100")
        changes, state, last = ctx.store.sync_folder_items(folder.id, req.findtext(m("SyncState")), max_changes, ignore)
        msg = out.success()
        sub(msg, m("SyncState"), state)
        sub(msg, m("IncludesLastItemInRange"), _bool(last))
        container = sub(msg, m("Changes"))
        for op, obj in changes:
            change = sub(container, t(op))
            if isinstance(obj, str):
                sub(change, t("ItemId"), Id=obj, ChangeKey="AAAAAA==")
            elif op == "ReadFlagChange":
                sub(change, t("ItemId"), Id=obj.id, ChangeKey=obj.changekey)
                sub(change, t("IsRead"), _bool(bool(obj.props.get("IsRead"))))
            else:
                render(change, ctx, obj, shape)
    except StoreError as err:
        # Exchange still sends an (empty) SyncState and IncludesLastItemInRange with the error
        msg = out.error(err, "SyncState")
        sub(msg, m("IncludesLastItemInRange"), "true")
    return out.root


@operation("SyncFolderHierarchy")
def sync_folder_hierarchy(ctx: RequestContext, req: Element) -> Element:
    out = Responder("SyncFolderHierarchy")
    try:
        sync_folder = req.find(m("SyncFolderId"))
        if sync_folder is not None:
            root = ctx.folder(sync_folder[0])
        else:
            ctx.check_mailbox(ctx.target)
            root = ctx.store.distinguished_folder(ctx.target, "root")
        changes, state = ctx.store.sync_folder_hierarchy(root.id, req.findtext(m("SyncState")))
        msg = out.success()
        sub(msg, m("SyncState"), state)
        sub(msg, m("IncludesLastFolderInRange"), "true")
        container = sub(msg, m("Changes"))
        for op, obj in changes:
            change = sub(container, t(op))
            if isinstance(obj, str):
                sub(change, t("FolderId"), Id=obj, ChangeKey="AAAAAA==")
            else:
                render_folder(change, obj, ctx.store.folder_counts(obj.id))
    except StoreError as err:
        msg = out.error(err, "SyncState")
        sub(msg, m("IncludesLastFolderInRange"), "true")
    return out.root
